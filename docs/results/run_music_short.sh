#!/usr/bin/env bash
# The shorter protocol of docs/results/music.md for Nottingham, MuseData and Piano-midi.de (the
# paper protocol, 100 epochs at the authors' hidden sizes, does not fit a 2-core CPU session):
# LSTM and bBLSTM(5G+p), hidden 64, 2 layers, 5 epochs, Adam 2e-3, clipping 5, kl_lambda 0.001
# (the authors' value for these data sets), best validation checkpoint, seed 1000, one CPU thread
# per run; training on windows of 100 transitions (state not carried across windows) in
# minibatches of 32, so that the long pieces give enough updates; validation and test on whole
# sequences. Usage: bash docs/results/run_music_short.sh DATA_DIR
set -euo pipefail
data_dir=${1:?usage: run_music_short.sh DATA_DIR}
for dataset in ${DATASETS:-piano nottingham musedata}; do
  for variant in ${VARIANTS:-lstm bblstm5gp}; do
    out=runs/music/$dataset-$variant-short-seed1000
    if [ -f "$out/results.json" ]; then continue; fi
    resume=""
    if [ -f "$out/last.pt" ]; then resume="--resume"; fi
    python examples/polyphonic_music.py --dataset "$dataset" --data-dir "$data_dir" \
      --variant "$variant" --hidden 64 --batch-size 32 --num-epochs 5 --train-chunk 100 --lr 2e-3 \
      --seed 1000 \
      --threads 1 --no-progress --no-plots --out-dir "$out" $resume
  done
done
