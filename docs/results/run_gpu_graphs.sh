#!/usr/bin/env bash
# Issue 11 on a GPU: the recurrence replayed from CUDA graphs (pyro_betalstm.nn.cuda_graphs)
# against the eager loop and cuDNN, in nine parts in one device call. Results go to OUT as
# each part ends, so a part cut short does not cost the others.
#   1. the step-time benchmark on CUDA, the eager variants and their *_cuda_graph ones (graphs
#      of the eager step), alone on the GPU (B=64, H=256, T=100): step_time_cuda.json, whose
#      ratio library_bivariate_svi_cuda_graph/torch_lstm is the issue's target (<= 4);
#   2. the GPU tests (pytest -m gpu): graphs equal to the eager loop, Gamma-distributed draws,
#      training and predictive evaluation from graphs;
#   3. where a step's time goes, eager and graphed (kernel launches per step, device time);
#   4. permuted pixel-level MNIST (T = 784), bBLSTM(5G+p), the eager loop then the graphs, one
#      after the other under the same fixed budget: epochs per minute before and after;
#   5. the torch.compile candidate: one bivariate layer's forward and backward with its step's
#      elementwise work compiled (default and reduce-overhead modes) against eager;
#   6. the step-time benchmark of the compiled step (*_compiled_cell), alone and inside the
#      graphs, in its own run and file (step_time_cuda_compiled.json), so that a compilation
#      failure cannot cost part 1's numbers;
#   7. what Pyro's validation costs a step in waits for the device (benchmarks/validation_cost.py:
#      the eager SVI step with validation on and off, interleaved);
#   8. evaluation read shortest first against file order (benchmarks/eval_order.py) on MuseData
#      and JSB: whether 32 sequences per minibatch, chosen on the CPU, costs the GPU time.
#   9. posterior-predictive draws folded into the batch against one draw a pass
#      (benchmarks/predictive_fold.py) on JSB: what S = 10 draws in one pass save the GPU.
# Parts 5 and 6 run on CUDA only; on another DEVICE part 1 times the eager variants only and
# part 3 profiles the eager step only.
#
# Before the device call, on the CPU machine:
#   bash ../shared/device/stage.sh && bash docs/results/stage_gpu_mnist.sh
# then ONE device call (15 minutes of device time per session, the machine's start included;
# a command may run 10 minutes) with carry [".device"], timeout_s 570 and
#   BUDGET_S=480 LIMIT_MIN=0.5 bash .device/env.sh bash docs/results/run_gpu_graphs.sh
# PARTS picks the parts, in the order given (default "1 2 4 6 3 7 5 8 9": what the issue's "done
# when" needs first). Every part's timeout is cut to what is left of BUDGET_S seconds (default
# 480), so the summary and the archive are always written before the tool's limit.
# At most 8 files come back from the device's $OUT: at the end everything is packed into
# gpu_graphs.tgz, and only summary.md, the step-time JSONs and the GPU tests' log stay beside it.
# Environment: OUT (default $OUT of the device tool, else runs/gpu-graphs), DEVICE (cuda),
# LIMIT_MIN (MNIST budget per run, default 1), STEP_ARGS (more benchmark arguments),
# AFTER (the recurrence of the second MNIST run, default cuda_graph; "auto" for a CPU dry run),
# MNIST (default .device/data/mnist/mnist.pkl.gz), EXTRA (more arguments for both MNIST runs),
# BUDGET_S (above).
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-runs/gpu-graphs}
device=${DEVICE:-cuda}
limit=${LIMIT_MIN:-1}
after=${AFTER:-cuda_graph}
mnist=${MNIST:-.device/data/mnist/mnist.pkl.gz}
read -r -a step_args <<< "${STEP_ARGS:-}"
read -r -a extra <<< "${EXTRA:-}"
mkdir -p "$out/logs"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
# the device tool kills the call at its limit: stop starting work BUDGET_S after the start
deadline=$((SECONDS + ${BUDGET_S:-480}))
cap() {  # cap SECONDS: the part's timeout, cut to the time left (1 s: too little left, the part is cut at once; `timeout 0` would mean no limit)
  local left=$((deadline - SECONDS - 20))
  if [ "$left" -lt 30 ]; then echo 1; elif [ "$1" -lt "$left" ]; then echo "$1"; else echo "$left"; fi
}
{ nvidia-smi || true; } > "$out/nvidia-smi.txt" 2>&1
# preflight, a few seconds: the versions and the card on stdout (which always comes back), and
# no budget spent on parts that would all fail without CUDA or the staged packages
python - "$device" <<'PY' || { echo "preflight failed: nothing run"; exit 1; }
import sys, torch, pyro, pyro_betalstm
device = sys.argv[1]
name = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"
print(f"preflight: torch {torch.__version__}, pyro {pyro.__version__}, {name}")
if device.startswith("cuda") and not torch.cuda.is_available():
    sys.exit(f"DEVICE={device} but torch sees no CUDA device")
PY

ran() {  # ran NAME STATUS LOG: the part's exit status, and its log's end when it failed
  echo "$1 exit $2"
  if [ "$2" -eq 124 ]; then echo "    stopped at its timeout (what was left of BUDGET_S)"; fi
  if [ "$2" -ne 0 ]; then tail -n 15 "$3" | sed 's/^/    /'; fi
}

step_time() {  # step_time NAME VARIANTS: one benchmark run, then its numbers
  timeout "$(cap 300)" python benchmarks/step_time.py --device "$device" --threads 1 --repeats 10 \
    --warmup 3 --variants "$2" --out "$out/step_time_$1.json" "${step_args[@]}" \
    > "$out/logs/step_time_$1.log" 2>&1
  ran "step_time $1" $? "$out/logs/step_time_$1.log"
  python - "$out/step_time_$1.json" <<'PY' || true
import json, sys
r = json.load(open(sys.argv[1]))
print(r["environment"]["device_name"], {k: round(v, 2) for k, v in r["ms"].items()})
print({k: round(v, 2) for k, v in r["ratios"].items() if v is not None})
PY
}

part_1() {
  echo "== 1. step time on $device: the eager loop and its graphs"
  # pyro_per_step_sites and the previous Gamma path are CPU questions: left out to save time
  local eager=torch_lstm,torch_lstm_strict_fp32,eager_sigmoid_loop,library_sigmoid
  eager+=,library_bivariate_svi
  eager+=,library_bivariate5_svi,handwritten_bivariate_elbo
  local graphs=library_sigmoid_cuda_graph,library_bivariate_svi_cuda_graph
  graphs+=,library_bivariate5_svi_cuda_graph
  if [ "$device" = cuda ]; then step_time cuda "$eager,$graphs"; else step_time "$device" "$eager"; fi
}

part_2() {
  echo "== 2. GPU tests"
  timeout "$(cap 300)" python -m pytest -m gpu -q -p no:cacheprovider -rfE --tb=short > "$out/pytest_gpu.log" 2>&1
  echo "pytest exit $?"; grep -E "^(FAILED|ERROR) |^E  " "$out/pytest_gpu.log" | head -n 40; tail -n 3 "$out/pytest_gpu.log"
}

part_3() {
  echo "== 3. profiles"
  local variant
  for variant in library_bivariate_svi library_bivariate_svi_cuda_graph; do
    [ "$device" = cuda ] || [ "$variant" = library_bivariate_svi ] || continue
    timeout "$(cap 90)" python benchmarks/profile_step.py --device "$device" --variant "$variant" \
      --batch 64 --hidden 256 --steps-per-sequence 100 --input-size 32 --steps 3 --threads 1 \
      --out "$out/profile_$variant.json" > "$out/logs/profile_$variant.log" 2>&1
    ran "profile $variant" $? "$out/logs/profile_$variant.log"
  done
}

part_4() {
  echo "== 4. permuted pixel MNIST, bBLSTM(5G+p), $limit min each: eager, then $after"
  # the budget, the epoch that ends past it and the final evaluation
  local run_timeout recurrence name
  run_timeout=$(awk -v m="$limit" 'BEGIN { printf "%d", 60 * m + 240 }')
  for recurrence in eager "$after"; do
    name=pmnist-pixel-bblstm5gp-$recurrence
    timeout "$(cap "$run_timeout")" python examples/sequential_mnist.py --variant bblstm5gp \
      --view pixel --permuted --hidden 128 --batch-size 128 --lr 2e-3 --train-subset 2560 \
      --valid-subset 512 --test-subset 512 --predictive-subset 256 --num-epochs 100 \
      --time-limit-min "$limit" --seed 1000 --device "$device" --threads 1 --no-progress \
      --recurrence "$recurrence" --data-path "$mnist" \
      --protocol-name "gpu-graphs: first 2560 training images, ${limit} min budget" \
      --out-dir "$out/$name" "${extra[@]}" > "$out/logs/$name.log" 2>&1
    ran "$name" $? "$out/logs/$name.log"
  done
}

part_5() {
  [ "$device" = cuda ] || return 0
  echo "== 5. torch.compile candidate"
  timeout "$(cap 240)" python benchmarks/gamma_path_options.py --device cuda --compile --batch 64 \
    --hidden 256 --steps 100 --repeats 12 --out "$out/compile_candidates_cuda.json" \
    > "$out/logs/compile_candidates.log" 2>&1
  ran "compile candidates" $? "$out/logs/compile_candidates.log"
}

part_6() {
  [ "$device" = cuda ] || return 0
  echo "== 6. step time: the compiled step, alone and inside the graphs"
  # its own run and file: a compilation failure here cannot cost part 1's
  local compiled=torch_lstm,library_bivariate_svi,library_bivariate_svi_cuda_graph
  compiled+=,library_bivariate_svi_compiled_cell,library_sigmoid_cuda_graph_compiled_cell
  compiled+=,library_bivariate_svi_cuda_graph_compiled_cell
  step_time cuda_compiled "$compiled"
}

part_7() {
  echo "== 7. Pyro validation on and off: the waits for the device"
  timeout "$(cap 180)" python benchmarks/validation_cost.py --device "$device" --threads 1 --repeats 10 \
    --out "$out/validation_cost_$device.json" > "$out/logs/validation_cost.log" 2>&1
  ran "validation cost" $? "$out/logs/validation_cost.log"
}

part_8() {
  echo "== 8. evaluation: shortest first against file order"
  # one call per data set, the short one first: a call writes its JSON only when it ends, so a
  # MuseData pass cut by the budget does not cost JSB's numbers
  local name seconds
  for name in jsb musedata; do
    seconds=$([ "$name" = jsb ] && echo 50 || echo 100)
    timeout "$(cap "$seconds")" python benchmarks/eval_order.py --data-dir .device/data/music \
      --datasets "$name" --device "$device" --out "$out/eval_order_${name}_$device.json" \
      > "$out/logs/eval_order_$name.log" 2>&1
    ran "evaluation order ($name)" $? "$out/logs/eval_order_$name.log"
  done
}

part_9() {
  echo "== 9. posterior-predictive draws: folded into the batch against one draw a pass"
  timeout "$(cap 60)" python benchmarks/predictive_fold.py --data-dir .device/data/music \
    --datasets jsb --device "$device" --repeats 3 --time-cap 30 \
    --out "$out/predictive_fold_jsb_$device.json" > "$out/logs/predictive_fold.log" 2>&1
  ran "predictive fold" $? "$out/logs/predictive_fold.log"
}

read -r -a parts <<< "${PARTS:-1 2 4 6 3 7 5 8 9}"
for n in "${parts[@]}"; do
  case "$n" in
    [1-9]) "part_$n" ;;
    *) echo "unknown part $n (expected 1 to 9)" ;;
  esac
done
python docs/results/gpu_graphs_summary.py "$out" | tee "$out/summary.md"
rm -f "$out"/*/last.pt "$out"/*/last.prev.pt "$out"/*/gate_draws.pt
# at most 8 files come back from the device's $OUT: everything in one archive, beside the
# summary, the step-time JSONs and the test log
tgz=$(mktemp -u).tgz
tar czf "$tgz" -C "$out" . && find "$out" -mindepth 1 -maxdepth 1 ! -name summary.md \
  ! -name 'step_time_*.json' ! -name pytest_gpu.log -exec rm -rf {} + && mv "$tgz" "$out/gpu_graphs.tgz"
ls -la "$out"
