#!/bin/bash
# The prepared run on a lent GPU machine: benchmarks/gpu_check.py under that machine's python3
# (which has torch), with the project on PYTHONPATH as the package layout it installs to, and
# pyzmq and pypng from wheels carried in .whl/ (that machine has no package index). The log goes
# to $OUT/gpu_check.log (or /tmp). Arguments go to gpu_check.py.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
site=$(mktemp -d /tmp/nm-site.XXXX)
mkdir -p "$site/neural_mirage"
if compgen -G ".whl/*.whl" >/dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --target "$site" .whl/*.whl
fi
cp neural_mirage/*.py "$site/neural_mirage/"
for part in engine daemon install plugins; do ln -s "$PWD/$part" "$site/neural_mirage/$part"; done
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
"$python" benchmarks/gpu_check.py "$@" 2>&1 | tee "${OUT:-/tmp}/gpu_check.log"
