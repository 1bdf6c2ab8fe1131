#!/usr/bin/env bash
# The prepared GPU check (benchmarks/gpu_check.py): MixedAE vs mmpretrain's
# MAE, ViT-B/16 at 224 px, AMP fp16 and bf16, batch 64 and the largest that
# fits; time and peak-memory ratios, non-finite values, host syncs, and the
# peak memory of MixedAE-Full V=2 / V=4 at their configs' batch. A few
# minutes on one H100/H200-class GPU.
#
#   bash benchmarks/gpu_check.sh --prepare   # here (PyPI reachable): wheels
#                                            # the GPU image lacks -> .whl/
#   bash benchmarks/gpu_check.sh [gpu_check.py options]   # on the GPU
#
# On the GPU machine the repository's .venv is used when it exists (a
# machine installed with `make venv`); otherwise the machine's python3 with
# its own torch, plus the wheels of .whl/ installed into /tmp/site.
# Output: the table on stdout and in $OUT (or work_dirs/benchmarks)/
# gpu_check.{txt,json}.
set -euo pipefail
cd "$(dirname "$0")/.."

# pure-Python packages of our stack that a bare CUDA + PyTorch image lacks;
# mmcv-lite is mmcv without the compiled ops, which pre-training needs none
# of (the GPU image's torch is not the one mmcv's wheels are built for)
WHEELS=(mmengine==0.10.7 mmpretrain==1.2.0 mmcv-lite==2.1.0 addict yapf
        termcolor platformdirs modelindex ordered-set markdown mat4py)

if [ "${1:-}" = "--prepare" ]; then
    mkdir -p .whl
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null \
        || echo '/.whl/' >> .git/info/exclude
    PIP="${PYTHON:-python3} -m pip"
    $PIP download --no-deps --only-binary=:all: -d .whl "${WHEELS[@]}"
    ls -la .whl
    exit 0
fi

if [ -x .venv/bin/python ]; then
    PY=.venv/bin/python
else
    PY=python3
    if [ -d .whl ]; then
        $PY -m pip install -q --no-index --no-deps --no-compile \
            --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
        export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
    fi
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
OUT_DIR="${OUT:-work_dirs/benchmarks}"
mkdir -p "$OUT_DIR"
set -o pipefail
$PY benchmarks/gpu_check.py --out "$OUT_DIR/gpu_check.json" "$@" 2>&1 \
    | grep -v -e 'mmengine - WARNING' -e '^ *$' \
    | tee "$OUT_DIR/gpu_check.txt"
