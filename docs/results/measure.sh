#!/usr/bin/env bash
# The side-by-side measurement of docs/results/README.md, from scratch (repository root, after
# scripts/bootstrap.sh). Steps whose output exists are skipped, so a rerun continues.
# EPOCHS and CHANNELS as in the table; the trainings run one after the other, nothing in parallel.
set -euo pipefail
cd "$(dirname "$0")/../.."
EPOCHS=${EPOCHS:-6}
CHANNELS=${CHANNELS:-16,32,64}
CL=.venv/bin/chemlatent
R=docs/results
mkdir -p runs
[ -d data/train60k ] || $CL generate data/train60k --stars 60000 --seed 1
[ -d data/eval60k ] || $CL generate data/eval60k --stars 60000 --seed 424242

score() {  # score NAME MODEL_ARGS... : encode (prints spectra/s) then evaluate on the same latents
  local name=$1 out=$2; shift 2
  [ -f "data/eval60k/latents/$name.parquet" ] || $CL encode data/eval60k "$@" | tee "runs/$name-encode.log"
  [ -f "$R/$out" ] || $CL evaluate data/eval60k "$@" --json > "$R/$out"
}

[ -f runs/default60k/weights.safetensors ] || $CL train data/train60k --out runs/default60k --epochs "$EPOCHS" \
    --decoder mlp --adversary reverse --prior star --refine-encoder 0 --no-latent-range
score default60k default-eval60k.json --model runs/default60k
score chemvae-v1 chemvae-v1-eval60k.json
[ -f runs/signor60k/weights.safetensors ] || $CL train data/train60k --out runs/signor60k --epochs "$EPOCHS" \
    --recipe signor2025 --channels "$CHANNELS"
score signor60k signor2025-eval60k.json --model runs/signor60k
[ -f runs/newdef60k/weights.safetensors ] || $CL train data/train60k --out runs/newdef60k --epochs "$EPOCHS"
score newdef60k train-defaults-eval60k.json --model runs/newdef60k
