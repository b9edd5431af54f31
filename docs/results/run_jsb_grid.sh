#!/usr/bin/env bash
# The JSB Chorales grid of docs/results/music.md: the paper protocol (authors' hidden sizes and
# dropout, Adam 2e-3, up to 100 epochs, lr / 1.2 on plateau after epoch 10, best validation
# checkpoint) with minibatches of 16, clipping at 5 and early stopping after 20 epochs without
# improvement, one CPU thread per run. Usage: bash docs/results/run_jsb_grid.sh DATA_DIR [SEEDS...]
set -euo pipefail
data_dir=${1:?usage: run_jsb_grid.sh DATA_DIR [SEEDS...]}
shift
seeds=${*:-1000 1001 1002}
variants=${VARIANTS:-"lstm bblstm5gp cifg g2lstm blstm bblstm bblstm5g"}
for seed in $seeds; do
  for variant in $variants; do
    out=runs/music/jsb-$variant-seed$seed
    if [ -f "$out/results.json" ]; then continue; fi
    resume=""
    if [ -f "$out/last.pt" ]; then resume="--resume"; fi
    python examples/polyphonic_music.py --dataset jsb --data-dir "$data_dir" --variant "$variant" \
      --protocol paper --seed "$seed" --early-stopping 20 --threads 1 --no-progress --no-plots \
      --out-dir "$out" $resume
  done
done
