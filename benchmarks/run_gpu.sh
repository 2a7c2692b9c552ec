#!/usr/bin/env bash
# On a CUDA machine, one command: the four benchmarks (writing benchmarks/results/*-cuda.json,
# which the Compute appendix shows) and the gpu profile's heaviest chapter (03_distillation,
# training its teachers and inits first) into results/gpu. bf16 autocast, channels_last,
# pinned memory and non-blocking copies are on by default on CUDA.
#   bash benchmarks/run_gpu.sh            # after `make venv`
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible')"
"$PY" benchmarks/bench_models.py --device cuda
"$PY" benchmarks/bench_e2e.py --device cuda
"$PY" benchmarks/bench_strategies.py --device cuda --students densenet121 --teacher densenet121 --image-size 224 --n 2048
"$PY" benchmarks/bench_scaling.py --device cuda --arch densenet121 --image-size 224
"$PY" -m kdmed.book build --profile gpu --chapters 03_distillation
echo "done: commit benchmarks/results/*-cuda.json and results/gpu"
