#!/usr/bin/env bash
# The `fast` protocol of docs/results/music.md on Nottingham, MuseData and Piano-midi.de, cut to
# EPOCHS epochs (default 20; the protocol's own 60 do not fit a 2-core CPU session on data sets
# 5 to 18 times JSB's size): the authors' model at their parameter-matched hidden sizes (LSTM 200,
# bBLSTM(5G+p) 148), 2 layers, locked dropout, kl_lambda 0.001 (the authors' value for these
# data sets), trained on windows of 30 transitions in minibatches of 8 at Adam 1e-2 with the
# authors' learning-rate rule, the output bias at the key log-odds, best validation checkpoint,
# seeds SEEDS (default 1000), one CPU thread per run; validation and test on whole sequences. A
# run that was stopped resumes from its last epoch. Usage: bash docs/results/run_music_fast.sh
# DATA_DIR (DATASETS, VARIANTS, SEEDS and EPOCHS choose the runs; tabulate with
# docs/results/music_table.py).
set -euo pipefail
data_dir=${1:?usage: run_music_fast.sh DATA_DIR}
epochs=${EPOCHS:-20}
for seed in ${SEEDS:-1000}; do
  for dataset in ${DATASETS:-nottingham piano musedata}; do
    for variant in ${VARIANTS:-lstm bblstm5gp}; do
      out=runs/music/$dataset-$variant-fast$epochs-seed$seed
      if [ -f "$out/results.json" ]; then continue; fi
      resume=""
      if [ -f "$out/last.pt" ]; then resume="--resume"; fi
      python examples/polyphonic_music.py --dataset "$dataset" --data-dir "$data_dir" \
        --variant "$variant" --protocol fast --num-epochs "$epochs" --seed "$seed" \
        --threads 1 --no-progress --no-plots --out-dir "$out" $resume
    done
  done
done
