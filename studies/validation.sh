#!/usr/bin/env bash
# The whole-photo validation of the quality presets beside the peers (docs/quality_time.md,
# "Whole photos"): 12 CBSD68 photos fixed before any result, identical noisy inputs, rows in
# results/peers.sqlite. Each worker runs its stages in order; every stage skips the rows
# already stored and resumes a photo from the fits kept in results/peers/*.partial/, so the
# same command, started again after an interruption, goes on where the work stopped.
#
#   bash studies/validation.sh 0 &   # worker 0: photos 1, 3, 5, ... (--shard 0/2)
#   bash studies/validation.sh 1 &   # worker 1: photos 2, 4, 6, ...
#   bash studies/validation.sh former &   # the former default on the same photos
#
# Stages (each worker), most needed first: one warm fit a tile, S = 200, the filter, sigma
# estimated by the wavelet MAD (WARM200, the default until 2026-12-07) at sigma 25 and 50
# with the peers (BM3D known and estimated, NL-means); the same fits with BM3D's basic
# estimate in the filter's pilot (HYBRID200, read back from the kept fits); `fast` (S = 50;
# before the default, as its fits are cheap and answer whether the default's S can fall);
# sigma 15 with the peers and the default (the width-16 table's sigma-15 scale, x 1.4, is
# the best of 0.7, 1 and 1.4 for one fit a tile on all 6 tile-study photos); the PCA
# estimator, a burn-in of 100 and the basic estimate at 25 and 50 (DEFAULT, the default
# since 2026-12-07, HYBRID200 but for the estimator and the burn-in; the same fits with the former
# filter, DEFAULT0; the PCA estimator without the burn-in, the default for an afternoon,
# has rows for a few photos); zero-shot Noise2Noise (about 25 CPU-min a photo); `best` (four cold fits, S = 700) at 25; then the
# former candidates: S = 500 (WARM500), two cold fits at S = 700 with the filter (the
# default of 2026-12-06) and without it (read back from the kept fits: seconds). The
# settings are spelt out, warm starts and the estimator included, so a later change of a
# preset does not change what a stored row means. One thread a worker: two single-thread
# workers on 2 cores get more done than one on two.
set -eu
cd "$(dirname "$0")/.."
who=${1:?"worker: 0, 1 or former"}
export OMP_NUM_THREADS=1
W='"sigma_estimator":"wavelet"'  # the estimator of the rows before the PCA one became the default
COLD='"warm_start":false'
B0='"burn_in":0'  # spelt where a stage has none: unspelt, the default's (100 since 2026-12-07)
P0='"basic":0'  # the filter's pilot the fits' image alone (the filter until 2026-12-07)
BASIC='"basic":0.7'  # and BM3D's basic estimate at 0.7 (the filter since; its first stage in
# BM3D's bior1.5 wavelet since 2026-12-07: rows of the DCT's were dropped and filtered again)
DEFAULT='{"width":16,"patience":200,"ensemble":1,"warm_start":true,"wiener":true,"sigma_estimator":"pca","burn_in":100,'$BASIC'}'
DEFAULT0='{"width":16,"patience":200,"ensemble":1,"warm_start":true,"wiener":true,"sigma_estimator":"pca","burn_in":100,'$P0'}'
FAST='{"width":16,"patience":50,"ensemble":1,"warm_start":true,"wiener":true,"sigma_estimator":"pca",'$B0','$BASIC'}'
BEST='{"width":16,"patience":700,"ensemble":4,'$COLD',"wiener":true,"sigma_estimator":"pca",'$B0','$BASIC'}'
WARM200='{"width":16,"patience":200,"ensemble":1,"warm_start":true,"wiener":true,'$W','$B0','$P0'}'
HYBRID200='{"width":16,"patience":200,"ensemble":1,"warm_start":true,"wiener":true,'$W','$B0','$BASIC'}'
WARM500='{"width":16,"patience":500,"ensemble":1,"warm_start":true,"wiener":true,'$W','$B0','$P0'}'
TWO='{"width":16,"patience":700,"ensemble":2,'$COLD',"wiener":true,'$W','$B0','$P0'}'
PLAIN='{"width":16,"patience":700,"ensemble":2,'$COLD',"wiener":false,'$W','$B0'}'
FORMER='{"width":64,"patience":500,"ensemble":1,'$COLD',"wiener":false,'$W','$B0'}'
NOT_FIRST=106024,134035,148026,16077,175032,196073,216081,229036,253027,291000
peers() { python -m benchmarks.peers --photos 12 "$@"; }

if [ "$who" = former ]; then
  peers --sigmas 25 --methods dipstop --dipstop-options "$FORMER"
  peers --sigmas 50 --methods dipstop --dipstop-options "$FORMER"
  exit 0
fi
shard="--shard $who/2"
peers $shard --sigmas 25,50 --methods bm3d-known,bm3d-est,nlmeans,dipstop --dipstop-options "$WARM200"
# the basic estimate in the pilot, on WARM200's kept fits (seconds a photo; 101085 and 119082
# last: their kept fits may be the PCA estimator's, and then they are fitted again)
peers $shard --sigmas 25,50 --methods dipstop --dipstop-options "$HYBRID200" --only "$NOT_FIRST"
peers $shard --sigmas 25,50 --methods dipstop --dipstop-options "$FAST"
peers $shard --sigmas 15 --methods bm3d-known,bm3d-est,nlmeans,dipstop --dipstop-options "$DEFAULT"
peers $shard --sigmas 25,50 --methods dipstop --dipstop-options "$DEFAULT"
peers $shard --sigmas 25,50 --methods dipstop --dipstop-options "$DEFAULT0"
peers $shard --sigmas 25,50 --methods zsn2n
peers $shard --sigmas 25 --methods dipstop --dipstop-options "$BEST"
peers $shard --sigmas 50,25 --methods dipstop --dipstop-options "$WARM500"
peers $shard --sigmas 25,50 --methods dipstop --dipstop-options "$TWO"
peers $shard --sigmas 25,50 --methods dipstop --dipstop-options "$PLAIN"
peers $shard --sigmas 25,50 --methods dipstop --dipstop-options "$HYBRID200"
