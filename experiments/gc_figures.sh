#!/usr/bin/env bash
# Every GC and SC figure of the README, in order, from the shipped models (nice 19, one torch thread each).
# Training and packing (see pretrained/gc-utkface.md for the runs that made the shipped models):
#   invcomp train gc --data ../shared/data/utkface --out runs/gc-c8 --channels 8 --batch-size 4 --adv-warmup 1000 --lr 2e-4 --threads 1 --minutes 50 --steps 100000 --device cpu
#   python experiments/gc_pack.py gc --run runs/gc-c8 --name gc-utkface-c8     (and -c2)
#   python experiments/sc_semantic_maps.py --data ../shared/data/utkface --limit 3000 --out runs/sc/maps_train3000.npz
#   invcomp train sc --gc gc-utkface-c8 --data ../shared/data/utkface --maps runs/sc/maps_train3000.npz --out runs/sc-c8 --threads 1 --steps 20000 --minutes 14 --device cpu
#   python experiments/gc_pack.py sc --run runs/sc-c8 --name sc-utkface-c8
set -eu
DATA=${DATA:-../shared/data}
export OMP_NUM_THREADS=1
run() { nice -n 19 python "$@"; }
run experiments/gc_bench.py --set faces --data "$DATA/utkface" --limit "${FACES:-32}" &
run experiments/gc_bench.py --set kodak --data "$DATA/kodak" --limit "${KODAK:-12}" &
run experiments/gc_downscaled.py --set faces --data "$DATA/utkface" --limit "${FACES:-32}" --scales 1,0.75,0.5,0.35,0.25,0.18 &
run experiments/gc_downscaled.py --set kodak --data "$DATA/kodak" --limit "${KODAK:-12}" --scales 1,0.75,0.5,0.35,0.25,0.18 &
run experiments/gc_speed.py --kodak "$DATA/kodak" --model gc-utkface-c8 --images 3 &
run experiments/gc_grid.py --faces "$DATA/utkface" --kodak "$DATA/kodak" &
run experiments/sc_savings.py --data "$DATA/utkface" --limit "${SC_FACES:-24}" --halos 0,1,6 &
run experiments/sc_photos.py &
wait
# faces from other distributions
run experiments/ood_faces.py --data "$DATA/utkface" --limit 24 --out /tmp/ood
run experiments/lfw_faces.py --out /tmp/lfw100
for d in /tmp/ood/reframed /tmp/ood/relit /tmp/lfw100 experiments/data/portraits; do
  run experiments/gc_bench.py --set ood --data "$d" --name "$(basename "$d")" &
done
wait
