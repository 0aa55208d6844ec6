#!/usr/bin/env bash
# The grids of issue 11, recorded with every series the output-policy candidates need:
#   calibration: 8 CBSD432 images x sigma 5,15,25,35,50,75 (choose the rule and its lam here)
#   bench:       12 CBSD68 images x sigma 15,25,50 (judge the chosen rule here)
# CPU protocol (128 x 128 crops, width 64, T = 3000, S = 500), two single-thread runs at a time
# (local Ray). Resumable: runs are stored as they finish, an unfinished one resumes from its
# checkpoint in the work folder, and `snapshot` copies the stores into results/ for a commit.
#
#   nohup bash studies/averaged_grids.sh > /tmp/grids.log 2>&1 &   # run or resume
#   bash studies/averaged_grids.sh snapshot                           # copy into results/
#
# WORK (default /tmp/dipstop-grids) holds the live stores and checkpoints; a new session
# starts from the committed results/calibration2.sqlite and results/bench2.sqlite.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${WORK:-/tmp/dipstop-grids}
py=${PYTHON:-.venv/bin/python}
data=${DIPSTOP_DATA:-../shared/data}
mkdir -p "$work"

. studies/grid_stores.sh

if [ "${1:-}" = snapshot ]; then
  snapshot calibration2 bench2
  exit 0
fi
resume calibration2 bench2
"$py" -m dipstop.cli calibrate --data "$data/cbsd432_jpg" --n-images 8 \
  --sigmas 5,15,25,35,50,75 --protocol cpu --store "$work/calibration2.sqlite" --ray \
  --threads 1
snapshot calibration2 bench2
"$py" -m dipstop.cli bench --data "$data/cbsd68" --n-images 12 --sigmas 15,25,50 \
  --protocol cpu --store "$work/bench2.sqlite" --ray --threads 1
snapshot calibration2 bench2
