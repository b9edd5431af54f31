#!/usr/bin/env bash
# JSB Chorales under the authors' protocol (examples/polyphonic_music.py --protocol authors):
# the three main variants and the three bBLSTM(5G+p) ablations, seeds 1000-1002, two runs at a
# time with one CPU thread each. A finished run (results.json) is skipped and an interrupted one
# resumes from its last.pt, so the same command continues the grid after any stop.
#   Usage: bash docs/results/run_jsb_authors.sh DATA_DIR [RUNS_DIR]
#   JOBS="bblstm5gp:1000 lstm:1000" PARALLEL=2 ... restricts the grid.
# Tabulate with: python docs/results/jsb_authors_table.py RUNS_DIR
set -euo pipefail
data_dir=${1:?usage: run_jsb_authors.sh DATA_DIR [RUNS_DIR]}
runs=${2:-runs/jsb_authors}
parallel=${PARALLEL:-2}
default_jobs=""  # the headline variant's seeds first, then the LSTM's, then the rest
for variant in bblstm5gp lstm ablation_constant_gates bblstm5g ablation_prior_noise \
  ablation_kl0.001; do
  for seed in 1000 1001 1002; do
    default_jobs+="$variant:$seed "
  done
done
jobs=${JOBS:-$default_jobs}
mkdir -p "$runs"

run_one() {
  local variant=${1%%:*} seed=${1##*:}
  local out="$runs/jsb-$variant-seed$seed"
  if [ -f "$out/results.json" ]; then return 0; fi
  mkdir -p "$out"
  exec 9>"$out/.lock"  # a run in progress elsewhere is left alone
  if ! flock -n 9; then echo "skip $variant seed $seed: running elsewhere"; return 0; fi
  local resume=""
  if [ -f "$out/last.pt" ]; then resume="--resume"; fi
  echo "$(date -u +%FT%TZ) start $variant seed $seed $resume"
  python examples/polyphonic_music.py --dataset jsb --data-dir "$data_dir" --variant "$variant" \
    --protocol authors --seed "$seed" --target-nll 8.35 --threads 1 --no-progress --no-plots \
    --out-dir "$out" $resume >>"$out/log.txt" 2>&1 \
    && echo "$(date -u +%FT%TZ) done $variant seed $seed" \
    || echo "$(date -u +%FT%TZ) FAILED $variant seed $seed (see $out/log.txt)"
}
export -f run_one
export data_dir runs
printf '%s\n' $jobs | xargs -P "$parallel" -I{} bash -c 'run_one "$@"' _ {}
