#!/usr/bin/env bash
# The one script that runs the training tests and the throughput benchmarks on a GPU.
#
# On the CUDA machine (torch + CUDA, numpy, pytest, rich, PyYAML; no kedro, mlflow or
# Great Expectations, and no network), from the repository root:
#
#     bash bench/gpu_check.sh
#
# It checks that aeops.models, aeops.training and aeops.scoring import neither kedro,
# mlflow nor Great Expectations (torch, numpy, pydantic only), runs the training
# benchmark at batch 4096 and 65,536, the embedding benchmark and its per-stage
# profile (aeops.embedding: torch, pandas, pyarrow, pydantic), then tests/training
# (CUDA tests and the torch.compile test included) and the predictor's device tests,
# in that order, each under its own time cap (BENCH_TIMEOUT 180 s, EMBED_TIMEOUT
# 160 s, PROFILE_TIMEOUT 60 s, TEST_TIMEOUT 150 s: 550 s in all, so with the wheels'
# install it fits one 10-minute device call), and writes everything under "$OUT"
# (default: ./gpu_check_out). A benchmark stopped by its cap still prints and saves
# what it measured.
#
# That image lacks pydantic (needed by the configs) and pyod (the benchmark's peer).
# Fetch their wheels once on a machine with a package index, then carry .whl/ along:
#
#     bash bench/gpu_check.sh --fetch-wheels      # writes .whl/ (git-ignore it)
#
# Wheels found in .whl/ are installed into /tmp/site (nothing else is installed).
set -uo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
wheels=${WHEELS:-.whl}

if [[ "${1:-}" == "--fetch-wheels" ]]; then
    # Pure-Python wheels plus pydantic-core for the image's CPython 3.12 on x86-64.
    mkdir -p "$wheels"
    platforms=()
    for tag in manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
        platforms+=(--platform "$tag")
    done
    "$python" -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp "${platforms[@]}" -d "$wheels" \
        pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 \
        typing-inspection==0.4.5 pyod==3.6.7
    exit $?
fi

out=${OUT:-gpu_check_out}
mkdir -p "$out"
log="$out/gpu_check.log"
: >"$log"
say() { echo "$*" | tee -a "$log"; }
status=0

if compgen -G "$wheels/*.whl" >/dev/null; then
    say "installing carried wheels into /tmp/site: $(ls "$wheels" | tr '\n' ' ')"
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --upgrade --target /tmp/site "$wheels"/*.whl >>"$log" 2>&1 || status=1
fi
export PYTHONPATH="src:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
    "$python" - <<'EOF'
import importlib.util
import sys

import torch

print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda,
      "available", torch.cuda.is_available())
for name in ("pydantic", "pyod", "pytest", "rich", "yaml", "numpy"):
    print(f"{name}: {'present' if importlib.util.find_spec(name) else 'MISSING'}")
EOF
} 2>&1 | tee -a "$log"

# The import chain must not reach kedro, mlflow or Great Expectations.
"$python" - <<'EOF' 2>&1 | tee -a "$log" || status=1
import sys

import aeops.models
import aeops.scoring
import aeops.training

heavy = sorted(
    {m.split(".")[0] for m in sys.modules} & {"kedro", "mlflow", "great_expectations"}
)
print("aeops.models, training and scoring import:", "clean" if not heavy else f"PULLS IN {heavy}")
sys.exit(1 if heavy else 0)
EOF

# BENCH_ARGS replaces the benchmark's arguments (a quick dry run: "--sizes 2000 --epochs 1").
read -r -a bench_args <<<"${BENCH_ARGS:---batch-sizes 4096 65536 --repeats 5}"
say "== bench/train_throughput.py ${bench_args[*]}"
timeout "${BENCH_TIMEOUT:-180}" "$python" bench/train_throughput.py "${bench_args[@]}" \
    --json "$out/train_throughput.json" 2>&1 | tee "$out/train_throughput.txt" | tee -a "$log" ||
    status=1

# EMBED_ARGS likewise replaces the embedding benchmark's (default: 1M and 10M rows).
read -r -a embed_args <<<"${EMBED_ARGS:---rows 1000000 10000000}"
say "== bench/embed_throughput.py ${embed_args[*]} (no validation without Great Expectations)"
timeout "${EMBED_TIMEOUT:-160}" "$python" bench/embed_throughput.py "${embed_args[@]}" --json "$out/embed_throughput.json" 2>&1 |
    tee "$out/embed_throughput.txt" | tee -a "$log" || status=1

say "== bench/embed_profile.py --rows 2000000 (where the embedding job's time goes)"
timeout "${PROFILE_TIMEOUT:-60}" "$python" bench/embed_profile.py --rows 2000000 \
    --json "$out/embed_profile.json" 2>&1 | tee "$out/embed_profile.txt" | tee -a "$log" ||
    status=1

say "== pytest tests/training and the predictor's device and CPU-kernel tests (CUDA and compile tests included)"
# --confcutdir keeps tests/conftest.py (which needs mlflow) out; tests/training has its own.
AEOPS_TEST_COMPILE=1 timeout "${TEST_TIMEOUT:-150}" "$python" -m pytest tests/training \
    tests/scoring/test_predictor_device.py tests/scoring/test_cpu_linear.py \
    -q -p no:cacheprovider --confcutdir=tests/training \
    -rs 2>&1 | tee "$out/pytest_training.txt" | tee -a "$log" || status=1

say "gpu_check finished with status $status; results in $out"
exit "$status"
