#!/usr/bin/env bash
# Finetune with a JSON config on one GPU:
#   bash scripts/train.sh [GPU_ID] [CONFIG]    (defaults: 0, configs/train_instruct.json)
# On a CPU-only machine the GPU id is ignored; try configs/train_demo.json there.
set -euo pipefail
cd "$(dirname "$0")/.."
gpu=${1:-0}
config=${2:-configs/train_instruct.json}
CUDA_VISIBLE_DEVICES=$gpu .venv/bin/python training.py "$config"
