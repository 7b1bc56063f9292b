"""One shard of a class-folder tarball (train/<class>/<name>_<i>.JPEG, Tiny ImageNet's layout): the
images under train/ whose number i is K modulo N (each class split evenly; a name without a number goes by its
CRC-32), in the same layout, gzip-compressed, and DEST.json saying which shard it is (read by lease.py). The source is only read.

    python3 shard.py SOURCE.tar.gz K N DEST.tar.gz

Why: the whole Tiny ImageNet tarball (32 MiB) and the run's state (D and G, 21.6 MiB) do not
travel together within the device tool's 64 MiB (docs/gpu.md#what-travels); a lease takes one shard.
"""

import json
import os
import re
import sys
import tarfile
import zlib


def number(name):
    """The image's number: the digits at the end of its stem, else the name's CRC-32."""
    stem = os.path.splitext(os.path.basename(name))[0]
    match = re.search(r"(\d+)$", stem)
    return int(match.group(1)) if match else zlib.crc32(name.encode())


def main():
    if len(sys.argv) != 5:
        sys.exit("usage: shard.py SOURCE.tar.gz K N DEST.tar.gz")
    source, k, n, dest = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    if not 0 <= k < n:
        sys.exit(f"shard.py: shard {k} of {n}: K must be in 0..{n - 1}")
    tmp = dest + ".tmp"
    kept = total = 0
    try:
        with tarfile.open(source, "r:*") as src, tarfile.open(tmp, "w:gz", compresslevel=9) as out:
            for member in src:
                # Images only: the tarball's words.txt (2.6 MB) and wnids.txt are not trained on.
                if not member.isfile() or "/train/" not in "/" + member.name:
                    continue
                total += 1
                if number(member.name) % n == k:
                    out.addfile(member, src.extractfile(member))
                    kept += 1
    except (OSError, tarfile.TarError, EOFError) as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        sys.exit(f"shard.py: {source}: {e}")
    if kept == 0:
        os.remove(tmp)
        sys.exit(f"shard.py: {source}: no images in shard {k} of {n} ({total} files)")
    os.replace(tmp, dest)
    info = {"shard": k, "shards": n, "images": kept, "source": os.path.basename(source), "source_images": total}
    with open(dest + ".json.tmp", "w") as f:
        json.dump(info, f, indent=2)
    os.replace(dest + ".json.tmp", dest + ".json")
    print(f"shard {k} of {n}: {kept} of {total} images -> {dest} ({os.path.getsize(dest)} bytes)")


if __name__ == "__main__":
    main()
