#!/usr/bin/env bash
# The GPU measurements the README quotes, in one pass (about 4 minutes on an H200): the CUDA
# tests, a short training of the demo's configuration with mixed precision (the default on
# CUDA), whole-detector and NMS speed, and the roll line speed. Every step has its own time
# limit and a failure does not stop the others; all output goes to OUT/log.txt as well.
#
#   bash benchmarks/gpu_check.sh OUT [DATA] [MODEL]
#
# DATA: a dataset of 320x128 frames (default fabricdet-demo/data, rendered by the demo);
# MODEL: a trained model (default fabricdet-demo/model.pt). Run from the repository root with
# fabricdet importable (installed, or PYTHONPATH=src).
set -u
out=${1:?usage: bash benchmarks/gpu_check.sh OUT [DATA] [MODEL]}
data=${2:-fabricdet-demo/data}
model=${3:-fabricdet-demo/model.pt}
mkdir -p "$out"
exec > >(tee "$out/log.txt") 2>&1
export PYTHONUNBUFFERED=1

step() {  # step SECONDS TITLE COMMAND...: run one measurement under a time limit
    local limit=$1 title=$2
    shift 2
    echo "== $title"
    local start=$SECONDS
    timeout "$limit" "$@" || echo "!! $title: exit status $?"
    echo "   ($((SECONDS - start)) s)"
}

python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name())" || exit 1
step 120 "CUDA tests" python3 -m pytest -q -rs --continue-on-collection-errors -k "cuda" \
    tests/models tests/ops
step 150 "training, 200 steps, AMP" python3 -m fabricdet train "$data" --out "$out/train" \
    data.max_size=320 train.max_steps=200 train.checkpoint_every=1000
step 90 "detector speed, $model" python3 benchmarks/detector_speed.py --model "$model" --repeats 10
step 60 "detector speed, random init" python3 benchmarks/detector_speed.py --repeats 10
step 60 "NMS speed" python3 benchmarks/nms_speed.py --repeats 10 \
    --methods greedy matrix sinkhorn sinkhorn-torch sinkhorn-dense
step 120 "roll line speed" python3 benchmarks/roll_throughput.py --device cuda --model "$model"
