#!/usr/bin/env bash
# Continue a GAN training chain on a GPU machine for a fixed time, then hand the run back.
#
#   scripts/gpu_gan_chain.sh RUN_DIR MINUTES [OUT_DIR]
#
# RUN_DIR is a `latentcomp gan train` run folder (checkpoint.pt + config.json), e.g. runs/long/dcgan-seg,
# copied to the GPU machine. The run resumes exactly where it stopped, on cuda, for MINUTES, and the
# updated run folder (checkpoint, exported generator, samples) is copied to OUT_DIR (default $OUT, the
# folder that a remote-run tool brings back), ready to resume again on a CPU or a GPU.
set -euo pipefail
run=${1:?usage: gpu_gan_chain.sh RUN_DIR MINUTES [OUT_DIR]}
minutes=${2:?usage: gpu_gan_chain.sh RUN_DIR MINUTES [OUT_DIR]}
out=${3:-${OUT:?give OUT_DIR or set OUT}}
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())"
steps=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['steps'])" "$run/config.json")
# the run's own step target; the time box decides where this leg ends (--resume keeps the run's recipe)
python3 -m latentcomp.cli gan train --out "$run" --resume --steps "$steps" --device cuda \
    --max-minutes "$minutes" 2>&1 | tr '\r' '\n' | tail -n 5
mkdir -p "$out"
cp -r "$run" "$out/"
echo "run copied to $out/$(basename "$run")"
