#!/usr/bin/env bash
# The one GPU check: `bash benchmarks/gpu_check.sh` on a machine with a CUDA GPU (<= 8 minutes) writes
# benchmarks/gpu_check.json (README "Benchmarks"). `bash benchmarks/gpu_check.sh --rehearse` runs the same
# steps on the CPU at toy sizes, so GPU minutes are never spent on set-up errors.
#
# The GPU image has torch, torchvision, timm, transformers, tokenizers, accelerate, pyarrow and pandas but reaches
# no package registry: what it lacks comes from benchmarks/wheels/ (git-ignored; `make gpu-wheels` fills it on a
# machine with registry access, and it travels with the working tree), the project itself with --no-deps.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=benchmarks/wheels

if ! "$PY" -c "import lightly, kornia, datasets, webdataset, matplotlib" 2>/dev/null; then
  if [ ! -d "$WHEELS" ] || [ -z "$(ls "$WHEELS"/*.whl 2>/dev/null)" ]; then
    echo "gpu_check: missing packages and no wheels in $WHEELS: run 'make gpu-wheels' where a registry is reachable" >&2
    exit 2
  fi
  "$PY" -m pip install --quiet --no-index --no-deps "$WHEELS"/*.whl
fi
# the project itself, without touching the image's torch & co.; the repo root also works without the install
"$PY" -m pip install --quiet --no-index --no-deps --no-build-isolation -e . \
  || echo "gpu_check: project not installed (running from the checkout via PYTHONPATH)" >&2
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c "import ssl_pipeline, lightly, kornia, timm, transformers, accelerate; print('gpu_check: imports ok')"
exec timeout "${GPU_CHECK_TIMEOUT:-480}" "$PY" benchmarks/gpu_check.py "$@"
