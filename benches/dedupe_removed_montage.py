"""A picture of a dedupe run's removals: random removed images beside the image kept for each.

    python benches/dedupe_removed_montage.py OUT PNG COUNT [SEED] [FOUND_BY]

OUT is a dedupe output folder (manifest.jsonl, crops/). Pairs are drawn at random (seeded) from
the removed images and laid out 8 to a row, keeper left, removed image right, sorted by code
distance; one line per pair (index, removed, keeper, code distance, pHash distance) is printed so
that a person can mark the false ones. FOUND_BY (`code` or `windows`) keeps only the removals that
route found (manifest `found_by`; `windows`: the crop route's cropped and bordered copies). Needs
numpy only (the project venv has it).
"""
import json, sys, zlib, struct, random, numpy as np
out, dest, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows=[json.loads(l) for l in open(out+'/manifest.jsonl')]
import glob
parts=sorted(glob.glob(out+'/crops/images-*.npy'))
arr=np.concatenate([np.load(p) for p in parts])
crow=[json.loads(l) for l in open(out+'/crops/manifest.jsonl')]
idx={r['source']:r['index'] for r in crow if r.get('index') is not None}
rem=[r for r in rows if r['status']=='skipped']
if len(sys.argv)>5:
    rem=[r for r in rem if r.get('found_by')==sys.argv[5]]
random.seed(int(sys.argv[4]) if len(sys.argv)>4 else 0)
pick=random.sample(rem,min(n,len(rem)))
pick.sort(key=lambda r:r['distance'])
S=arr.shape[1]; pad=4; per=8
cols=per; rws=(len(pick)+cols-1)//cols
W=cols*(2*S+3*pad); H=rws*(S+2*pad)
img=np.full((H,W,3),255,np.uint8)
for k,r in enumerate(pick):
    y=(k//cols)*(S+2*pad)+pad; x=(k%cols)*(2*S+3*pad)+pad
    a=arr[idx[r['duplicate_of']]]; b=arr[idx[r['source']]]
    img[y:y+S,x:x+S]=a; img[y:y+S,x+S+pad//2:x+2*S+pad//2]=b
    print(k, r['source'], r['duplicate_of'], r['distance'], r.get('phash_distance'), r.get('window_phash_distance'), r.get('correlation'))
def png(path,a):
    h,w,_=a.shape
    # PNG filter 2 ("up"): each row as its difference from the row above, which compresses the
    # repeated pixels of the 2x thumbnails several times better than raw rows.
    up=np.diff(a.astype(np.int16),axis=0,prepend=0).astype(np.uint8)
    raw=b''.join(b'\x02'+up[y].tobytes() for y in range(h))
    def chunk(t,d): return struct.pack('>I',len(d))+t+d+struct.pack('>I',zlib.crc32(t+d)&0xffffffff)
    open(path,'wb').write(b'\x89PNG\r\n\x1a\n'+chunk(b'IHDR',struct.pack('>IIBBBBB',w,h,8,2,0,0,0))+chunk(b'IDAT',zlib.compress(raw,9))+chunk(b'IEND',b''))
scale=2
png(dest,img.repeat(scale,0).repeat(scale,1))
