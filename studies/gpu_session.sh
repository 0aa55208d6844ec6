#!/usr/bin/env bash
# What ran on the lent GPU machine (the `device` tool; a bare image with CUDA PyTorch and no
# network), kept so every GPU number in the README can be traced to a command.
#
#   bash studies/gpu_session.sh PHASE SECONDS
#
# The carried, git-ignored folder .dev holds what that machine lacks: site.tar.xz
# (opencv-contrib-python-headless 5.0.0.93 and PyWavelets 1.10.0 wheels, unpacked), models/
# (a copy of ../shared/models) and cbsd68/ (CBSD68 files; the spec key hashes their bytes,
# so runs match the ones recorded on the CPU). Results go to $OUT (fetched back).
# The carry limit is 64 MiB in all: with site.tar.xz (48 MB) and the tree (~10 MB), keep
# cbsd68/ to a few images; for `verify`, the 4 of .dev/paper_order (one file name a line).
# On 2026-11-25 the GPU machine ran `bench 560` with channels_last/bf16 variants and 12 grid workers, no CUDA graphs
# (no grid run finished); then `bench 555` (graph capture failed); then `final 530`.
# PHASE: bench (GPU tests, engine benchmarks, then the CPU-protocol CBSD68 grid until
# SECONDS have passed), grid (only the grid), paper (the paper protocol on a few images),
# verify (what was built or changed without a GPU since: the CUDA tests, the overlapped
# host scoring and the criteria cost, then the paper slice of .dev/paper_order, alone),
# tiles (a photo's tiles fitted as one batch against one by one, at the default's width 16
# and the former default's 64: K = 40 is a 481 x 321 photo's fits under the default).
# To rebuild .dev/site.tar.xz: pip download --no-deps --only-binary=:all: --python-version
# 3.X opencv-contrib-python-headless==5.0.0.93 PyWavelets==1.10.0, unzip the wheels into one
# folder, tar -cJf (3.X: the device image's Python, printed by its first call).
set -u
phase=${1:?phase}
budget=${2:?seconds}
start=$(date +%s)
left() { echo $((budget - ($(date +%s) - start))); }
mkdir -p /tmp/site && tar -xJf .dev/site.tar.xz -C /tmp/site
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 DIPSTOP_MODELS=$PWD/.dev/models
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
dipstop() { python3 -c 'import sys; from dipstop.cli import main; sys.exit(main())' "$@"; }
python3 -c "import cv2, torch; cv2.quality.QualityBRISQUE_create; \
print('cv2', cv2.__version__, 'torch', torch.__version__, torch.cuda.get_device_name(0))"
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader

grid() {  # one `dipstop bench` per image, $1 at a time, in the order of file $5
  local workers=$1 sigmas=$2 protocol=$3 store=$4 order=${5:-.dev/grid_order}
  if [ "$(left)" -lt 30 ]; then echo "$protocol grid: no time left"; return; fi
  # continue what is committed (a schema-1 store, migrated on open; its runs recorded one
  # running average, today's bench records four, so their cells are run again, not skipped)
  local seed_store=results/$(basename "$store")
  [ -f "$store" ] || [ ! -f "$seed_store" ] || cp "$seed_store" "$store"
  timeout "$(left)" xargs -P "$workers" -I{} sh -c "python3 -c 'import sys; \
from dipstop.cli import main; sys.exit(main())' bench --data .dev/cbsd68 --images {} \
--sigmas $sigmas --protocol $protocol --store $store --device cuda --threads 1 \
>> $OUT/grid_$protocol.log 2>&1" < "$order"
  echo "$protocol grid: $(grep -c "peak" "$OUT/grid_$protocol.log") runs stored"
}

case $phase in
  bench)
    python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tail -3
    python3 -m benchmarks.iteration_speed --device cuda --sizes 128x128,256x256,481x321,768x512 \
      --widths 64,128 --iters 30 --repeats 3 --variants fp32,no_graph
    python3 -m benchmarks.criteria_cost --sizes 128x128,481x321 --width 64 --iters 300 \
      --device cuda
    cp results/benchmarks/*cuda*.json "$OUT"/
    grid 4 15,25,50 cpu "$OUT/bench.sqlite"
    ;;
  grid)
    grid 4 15,25,50 cpu "$OUT/bench.sqlite"
    ;;
  paper)
    grid 4 25 paper "$OUT/bench_paper.sqlite"
    ;;
  verify)
    python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tail -3
    python3 -m benchmarks.overlap --device cuda --data .dev/cbsd68 --crops 128,full \
      --every 10 --iters 300 --repeats 3
    python3 -m benchmarks.criteria_cost --sizes 128x128,481x321 --width 64 --iters 300 \
      --device cuda 2>&1 | grep -v "it/s"
    python3 -m benchmarks.batched_fit --device cuda --sides 128,256 --n 2,4 --iters 20
    cp results/benchmarks/*cuda*.json "$OUT"/
    # outside the tree and $OUT: a run cut off by the call's time limit leaves its checkpoint
    # (<store>.partial/) on the still-warm machine, and the next call resumes it
    mkdir -p /tmp/dipstop_paper
    grid 1 25 paper /tmp/dipstop_paper/bench_paper.sqlite .dev/paper_order
    cp /tmp/dipstop_paper/bench_paper.sqlite "$OUT"/
    ;;
  tiles)
    python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_batched.py 2>&1 | tail -3
    python3 -m benchmarks.batched_tiles --device cuda --k 2,8,20,40 --width 16 --side 128 \
      --loop 20 --tag w16
    python3 -m benchmarks.batched_tiles --device cuda --k 8,20,40 --width 64 --side 128 \
      --loop 20 --tag w64
    cp results/benchmarks/*cuda*.json "$OUT"/
    ;;
  final)  # the last call: graphs against eager, then the grid, a paper slice and the tests at once
    python3 -m benchmarks.iteration_speed --device cuda --sizes 128x128,481x321,768x512 \
      --widths 64,128 --iters 20 --repeats 3 --variants fp32,no_graph
    python3 -m benchmarks.criteria_cost --sizes 128x128,481x321 --width 64 --iters 300 \
      --device cuda 2>&1 | grep -v "it/s"
    cp results/benchmarks/*cuda*.json "$OUT"/
    head -2 .dev/grid_order > .dev/paper_order
    grid 2 25 paper "$OUT/bench_paper.sqlite" .dev/paper_order &
    grid 4 15,25,50 cpu "$OUT/bench.sqlite" &
    python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tail -3
    wait
    ;;
esac
echo "phase $phase done after $(($(date +%s) - start)) s"
