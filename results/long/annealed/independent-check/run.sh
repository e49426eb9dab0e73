#!/usr/bin/env bash
# The annealed study's ratios checked on other latents (noise seed 2; validation used 1, test 0) and in the
# features of a second classifier (data/fmnist-classifier-wide: other widths, other seed), beside the study's own
# classifier on the same images. Run from the repository root; the samples (.npz) stay in runs/independent-check.
set -euo pipefail
ect() { node bin/ect.js "$@"; }
samples=runs/independent-check
table=results/long/annealed/independent-check/scores.csv
mkdir -p "$samples"
draw() {  # name, checkpoint, then sampler flags
  local name=$1 checkpoint=$2; shift 2
  [ -f "$samples/$name.npz" ] || ect sample --checkpoint "$checkpoint" --n 10000 --seed 2 --format npz --out "$samples/$name.npz" --no-progress "$@"
}
draw teacher-heun data/teachers/fmnist-edm-base --steps heun
for s in 0 1; do
  run=results/long/annealed/seed$s
  # the choices of ect select (selection/selection.json), and the last checkpoint as the run left it at t_mid 0.821
  one=$(node -e "console.log(require('./$run/selection/selection.json').chosen['1step'].checkpoint)")
  two=$(node -e "console.log(require('./$run/selection/selection.json').chosen['2step'].checkpoint)")
  mid=$(node -e "console.log(require('./$run/selection/selection.json').chosen['2step'].mid_t)")
  draw seed$s-chosen-1step "$run/$one" --steps 1
  draw seed$s-chosen-2step "$run/$two" --steps 2 --mid-t "$mid"
  draw seed$s-last-1step "$run/checkpoints/ckpt-000002500.ckpt" --steps 1
  draw seed$s-last-2step "$run/checkpoints/ckpt-000002500.ckpt" --steps 2 --mid-t 0.821
done
[ -f data/fmnist-classifier-wide/classifier.json ] || { echo "data/fmnist-classifier-wide: train it first (see results/long/annealed/README.md)" >&2; exit 1; }
for classifier in data/fmnist-classifier data/fmnist-classifier-wide; do
  for npz in "$samples"/*.npz; do
    ect fd "$npz" --classifier "$classifier" --table "$table" --no-progress
  done
done
