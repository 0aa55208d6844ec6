#!/usr/bin/env bash
# The grids of issue 12: lam across image sizes, and the default validated on whole photos.
# CPU protocol settings (width 64, T = 3000, S = 500) at other sizes, two single-thread runs at
# a time (local Ray), resumable, every run recording the averaged series of issue 11:
#
#   calibration (CBSD432, choose here): 4 of the 8 calibration images (every other one:
#     100007, 16068, 24063, 384022) x sigma 15, 25, 50 at 192 x 192 and 288 x 288 centre
#     crops and at the whole image (481 x 321); the 128 x 128 runs are in calibration2.sqlite.
#   validation (CBSD68, judge here): 6 whole images fixed before any result (every other of
#     the 12 of the crop bench: 101085, 119082, 148026, 175032, 216081, 253027) x sigma
#     15, 25, 50: first denoised as `denoise` does by default, which tiles a 481 x 321
#     photo, one tile per core in process (benchmarks/tiling.py --tiled-only, no --ray:
#     its times are the default's; results/fullsize_tiled/), then fitted whole
#     and recorded by `bench` with every criterion (the paper's Table 1 at full size, and
#     the lam for --tile 0).
#
# Order: 192, the tiled validation at sigma 50 and 25 (the default as users get it: its lam
# is the 128 entry, so it needs nothing of the whole images), the whole-image validation at
# the same sigmas (its raw Peak and average's peak are what the default is judged against),
# then both at sigma 15 (the slowest: tiles and whole fits run most of T there), the whole
# calibration images (they serve `--tile 0` only: the default tiles photos, design.md),
# the whole calibration photos tiled at sigma 50 and 25 (is a whole fit better at high noise?
# chosen on CBSD432, not on the judging photos; added 2026-12-05), 768 x 512
# tiled against whole (its whole fit is kept once done, its tiles as they finish), then 288
# (a point between 192 and the whole image).
# (Reordered 2026-11-28, so that whole sigma rows of the validation come first.)
# Whole images ran 1.26 s an iteration on one thread beside another fit, about 63 minutes a
# run; a tiled 481 x 321 photo about 8 (sigma 50), 15 (25) and 70 minutes (15:
# many 128 x 128 tiles run all of T there) on both cores. Cost estimates on this 2-core
# machine, stage by stage: about 2 h (done), 2 h, 6.3 h, 6.5 h, 3.2 h, 4.2 h (8 runs left),
# 2 h, 3 h and 3.5 h. A GPU does each run in about a minute.
#
# Precision: the 192 crops were recorded in fp32 (begun before the precision option existed);
# the whole images, the validation and 288 in what `denoise` runs here by default
# (precision "auto": bf16 on a CPU with AMX, fp32 elsewhere; PRECISION=fp32|bf16 overrides).
# bf16 and fp32 fits score alike (docs/benchmarks.md), and a run's key records its precision.
# On 2026-11-28 the project moved to an AMD EPYC without AMX: "auto" is fp32
# there (bf16 12x slower) and the times above do not hold (a sigma-25 tiled photo took about
# 40 minutes). The 4 whole calibration runs in are bf16: `calibrate full fp32` would fit all
# 12 again under other keys; on such a machine give it the 8 left by hand, or accept both.
# On 2026-12-04 it was an Intel CPU with AMX again: whole runs 1.05 s an
# iteration on one core beside the other (about 55 min a run), sigma-25 tiled photos 12-24 min.
#
#   nohup bash studies/size_grids.sh > /tmp/size_grids.log 2>&1 &   # run or resume
#   bash studies/size_grids.sh snapshot                               # copy into results/
#
# To free the cores for a while, kill the script and its `dipstop.cli calibrate` (or bench)
# process and start it again later: each run resumes from its last checkpoint. Do not
# SIGSTOP the Ray workers: Ray took stopped workers for dead after ~6 minutes and retried
# their tasks (2026-11-27).
set -euo pipefail
cd "$(dirname "$0")/.."
work=${WORK:-/tmp/dipstop-grids}
py=${PYTHON:-.venv/bin/python}
data=${DIPSTOP_DATA:-../shared/data}
stores="size_calibration fullsize_bench"
tiled="fullsize_tiled tiling_768 tiled_cbsd432"  # benchmarks/tiling.py outputs
fixed6=101085.png,119082.png,148026.png,175032.png,216081.png,253027.png
# a whole-image run's checkpoint holds its running averages (the mean of the last S + 1 is a
# ring of 501 outputs: about 0.9 GB at 481 x 321): write one every 10 minutes, not every one
export DIPSTOP_CHECKPOINT_SECONDS=${DIPSTOP_CHECKPOINT_SECONDS:-600}
mkdir -p "$work"

. studies/grid_stores.sh

snapshot_all() {
  snapshot $stores
  for name in $tiled; do
    if [ -f "$work/$name/$name.json" ]; then
      mkdir -p "results/$name"
      cp "$work/$name"/*.json "$work/$name"/*.png "results/$name/"
      # the finished tiles of the photo in progress (a few MB), so that a new machine
      # resumes it; a finished photo's folder is gone from the work dir, and so from here
      rm -rf "results/$name"/*.tiles
      for tiles in "$work/$name"/*.tiles; do
        [ -d "$tiles" ] && cp -r "$tiles" "results/$name/"
      done
      echo "results/$name: $(ls "results/$name"/*.png | wc -l) images"
    fi
  done
}
if [ "${1:-}" = snapshot ]; then
  snapshot_all
  exit 0
fi
resume $stores
for name in $tiled; do
  if [ ! -f "$work/$name/$name.json" ] && [ -d "results/$name" ]; then
    mkdir -p "$work/$name" && cp -r "results/$name"/* "$work/$name/"
  fi
done
precision=${PRECISION:-$("$py" -c "from dipstop.fitting import resolve_device as d, resolve_precision as p; print(p('auto', d(None)))")}
calibrate() {
  "$py" -m dipstop.cli calibrate --data "$data/cbsd432_jpg" \
    --images 100007.jpg,16068.jpg,24063.jpg,384022.jpg --sigmas 15,25,50 --protocol cpu \
    --crop "$1" --precision "$2" --store "$work/size_calibration.sqlite" --ray --threads 1
  snapshot_all
}
calibrate 192 fp32
tiled() {
  "$py" -m benchmarks.tiling --data "$data/cbsd68" --names "$fixed6" --sizes 481x321 \
    --sigmas "$1" --tiled-only --precision "$precision" \
    --out "$work/fullsize_tiled" --name fullsize_tiled
  snapshot_all
}
bench() {
  "$py" -m dipstop.cli bench --data "$data/cbsd68" --sigmas "$1" --protocol cpu --crop full \
    --images "$fixed6" --precision "$precision" --store "$work/fullsize_bench.sqlite" \
    --ray --threads 1
  snapshot_all
}
tiled 50,25
bench 50,25
tiled 15
bench 15
calibrate full "$precision"
# the 4 whole calibration photos tiled as `denoise` does by default, the same noise as their
# whole runs in size_calibration (sigma 50, then 25): tiled against whole on CBSD432
"$py" -m benchmarks.tiling --data "$data/cbsd432_jpg" --names 100007.jpg,16068.jpg,24063.jpg,384022.jpg \
  --sizes 481x321 --sigmas 50,25 --tiled-only --precision "$precision" \
  --out "$work/tiled_cbsd432" --name tiled_cbsd432
snapshot_all
# issue 12's other size for tiled against whole: 768 x 512 (CBSD68 101085, a portrait photo,
# upscaled to 512 x 768; whole and tiled, sigma 25, default settings; about 3 h). The row gets
# whichever fit it lacks: on 2026-12-05 its earlier whole fit was lost with
# /tmp, so the tiles were fitted first (--tiled-only, 40 min) and this adds the whole fit
"$py" -m benchmarks.tiling --data "$data/cbsd68" --names 101085.png --sizes 768x512 --sigmas 25 \
  --precision "$precision" --ray --out "$work/tiling_768" --name tiling_768
snapshot_all
calibrate 288 "$precision"
