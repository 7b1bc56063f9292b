"""The ImageNet run's bookkeeping across device leases (docs/gpu.md#the-imagenet-run-across-leases),
for gpu-runs/imagenet_run.sh (on the GPU machine: python3's standard library only) and, at home,
its own `commit` command (what a lease brought back, checked into STATE).

The run's state (STATE, committed, e.g. models/imagenet-run): imagenet32-{d,g}.safetensors (float16)
with their .json records, losses.csv (every lease), and run.json: the leases so far, their totals
and the checkpoint state the next lease resumes from.

    lease.py check-shard STATE SHARD_JSON   the carried shard is the one this lease trains on
    lease.py seed STATE RUN                 RUN/checkpoints/ resumes the committed state (none: new)
    lease.py record STATE RUN OUT SHARD_JSON DEVICE_NAME
                                            OUT/run.json (this lease appended, totals) and the
                                            totals in OUT's D and G records
    lease.py samples RUN DEST N             at most N of RUN/samples, evenly spaced, the last kept
    lease.py commit FROM STATE              what a lease brought back (FROM) into STATE, checked
"""

import datetime
import hashlib
import json
import os
import shutil
import sys
import tarfile

NETWORKS = ("imagenet32-d.safetensors", "imagenet32-g.safetensors")


def fail(message):
    sys.exit(f"lease.py: {message}")


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        fail(f"{path}: unreadable ({e})")


def write_json(path, value):
    with open(path + ".tmp", "w") as f:
        json.dump(value, f, indent=2)
        f.write("\n")
    os.replace(path + ".tmp", path)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def leases_of(state):
    """The committed leases (none when STATE holds no run yet)."""
    path = os.path.join(state, "run.json")
    return read_json(path)["leases"] if os.path.exists(path) else []


def check_networks(folder):
    """Each network file matches the sha256 its record gives."""
    for name in NETWORKS:
        path = os.path.join(folder, name)
        record = read_json(path + ".json")
        if not os.path.exists(path) or sha256(path) != record.get("sha256"):
            fail(f"{path}: missing or not the file its record describes (sha256)")


def check_shard(state, shard_json):
    shard = read_json(shard_json)
    expected = len(leases_of(state)) % shard["shards"]
    if shard["shard"] != expected:
        fail(f"{shard_json}: shard {shard['shard']} of {shard['shards']}, but this lease trains on shard "
             f"{expected} (run gpu-runs/prepare_carry.sh again)")
    print(f"shard {shard['shard']} of {shard['shards']}: {shard['images']} images (lease {len(leases_of(state)) + 1})")


def seed(state, run):
    """Lays the committed state out as RUN's newest checkpoint, without Adam's moments (train then
    restarts them): the float16 weights load into train's float32 ones."""
    if not os.path.exists(os.path.join(state, "run.json")):
        print(f"no run in {state}: a new run")
        return
    check_networks(state)
    checkpoint = read_json(os.path.join(state, "run.json"))["checkpoint"]
    name = f"step-{checkpoint['step']:08d}"
    folder = os.path.join(run, "checkpoints", name)
    os.makedirs(folder, exist_ok=True)
    # The folder holds the exported float16 weights, not the files the run's state.json recorded:
    # train checks a checkpoint's files against its "files" before resuming, so record these.
    checkpoint = dict(checkpoint)
    checkpoint["files"] = {}
    # Each lease trains on its own shard on purpose: without the input record train resumes on it
    # (it refuses a checkpoint recorded on other data).
    checkpoint.pop("input", None)
    for source, dest in zip(NETWORKS, ("d.safetensors", "g.safetensors")):
        shutil.copyfile(os.path.join(state, source), os.path.join(folder, dest))
        with open(os.path.join(folder, dest), "rb") as f:
            content = f.read()
        checkpoint["files"][dest] = {"bytes": len(content), "sha256": hashlib.sha256(content).hexdigest()}
    write_json(os.path.join(folder, "state.json"), checkpoint)
    with open(os.path.join(run, "checkpoints", "latest"), "w") as f:
        f.write(name)
    if os.path.exists(os.path.join(state, "losses.csv")):
        shutil.copyfile(os.path.join(state, "losses.csv"), os.path.join(run, "losses.csv"))
    print(f"resuming {state} at step {checkpoint['step']} (lease {len(leases_of(state)) + 1})")


def totals(leases, batch, source_images):
    steps = leases[-1]["end_step"]
    images = steps * batch
    return {
        "leases": len(leases),
        "steps": steps,
        "images_seen": images,
        "epochs": round(images / source_images, 3),
        "epochs_are": f"images seen / the {source_images} photos of all shards",
        "train_wall_s": round(sum(lease["train_wall_s"] for lease in leases), 1),
    }


def record(state, run, out, shard_json, device_name):
    shard = read_json(shard_json)
    latest = open(os.path.join(run, "checkpoints", "latest")).read().strip()
    checkpoint = read_json(os.path.join(run, "checkpoints", latest, "state.json"))
    batch = read_json(os.path.join(out, NETWORKS[0] + ".json"))["train_config"]["batch"]
    before = leases_of(state)
    start = before[-1]["end_step"] if before else 0
    wall_before = 0.0
    if before:
        wall_before = read_json(os.path.join(state, "run.json"))["checkpoint"].get("train_wall_s") or 0.0
    wall = (checkpoint.get("train_wall_s") or 0) - wall_before
    lease = {
        "lease": len(before) + 1,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "device": device_name,
        "shard": f"{shard['shard']} of {shard['shards']}",
        "shard_images": shard["images"],
        "start_step": start,
        "end_step": checkpoint["step"],
        "images": (checkpoint["step"] - start) * batch,
        "train_wall_s": round(wall, 1),
        "images_per_s": round((checkpoint["step"] - start) * batch / wall, 1) if wall > 0 else None,
    }
    leases = before + [lease]
    total = totals(leases, batch, shard["source_images"])
    write_json(os.path.join(out, "run.json"), {"checkpoint": checkpoint, "total": total, "leases": leases})
    for name in NETWORKS:
        path = os.path.join(out, name + ".json")
        network_record = read_json(path)
        network_record["run"] = total
        write_json(path, network_record)
    print(f"lease {lease['lease']}: steps {start}..{checkpoint['step']}, {lease['images']} images; over all "
          f"{total['leases']} leases: {total['images_seen']} images, {total['epochs']} epochs")


def samples(run, dest, n):
    names = sorted(os.listdir(os.path.join(run, "samples")))
    if len(names) > n:
        names = [names[round(i * (len(names) - 1) / (n - 1))] for i in range(n)]
    os.makedirs(dest, exist_ok=True)
    for name in names:
        shutil.copyfile(os.path.join(run, "samples", name), os.path.join(dest, name))


def commit(source, state):
    """Copies a lease's D, G, records and run.json, and losses.csv from its run.tar, into STATE."""
    check_networks(source)
    run = read_json(os.path.join(source, "run.json"))
    before = leases_of(state)
    if run["leases"][:-1] != before:
        fail(f"{source}/run.json does not continue {state} ({len(before)} leases committed there)")
    if run["leases"][-1]["images"] <= 0:
        fail(f"{source}: lease {len(run['leases'])} trained nothing (see its log.txt); not committed")
    os.makedirs(state, exist_ok=True)
    with tarfile.open(os.path.join(source, "run.tar")) as tar:
        losses = tar.extractfile("./losses.csv").read()
    with open(os.path.join(state, "losses.csv.tmp"), "wb") as f:
        f.write(losses)
    os.replace(os.path.join(state, "losses.csv.tmp"), os.path.join(state, "losses.csv"))
    for name in [n for network in NETWORKS for n in (network, network + ".json")]:
        shutil.copyfile(os.path.join(source, name), os.path.join(state, name + ".tmp"))
        os.replace(os.path.join(state, name + ".tmp"), os.path.join(state, name))
    write_json(os.path.join(state, "run.json"), run)  # last: a cut-short commit leaves the old lease count
    print(f"{state}: lease {len(run['leases'])} committed ({run['total']['images_seen']} images, "
          f"{run['total']['epochs']} epochs in all)")


def main():
    commands = {
        "check-shard": (check_shard, 2),
        "seed": (seed, 2),
        "record": (record, 5),
        "samples": (lambda run, dest, n: samples(run, dest, int(n)), 3),
        "commit": (commit, 2),
    }
    if len(sys.argv) < 2 or sys.argv[1] not in commands or len(sys.argv) - 2 != commands[sys.argv[1]][1]:
        sys.exit(__doc__)
    commands[sys.argv[1]][0](*sys.argv[2:])


if __name__ == "__main__":
    main()
