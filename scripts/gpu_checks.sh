#!/usr/bin/env bash
# The GPU half of issue 8 ("Speed"), as one command for a lent GPU machine whose python3 already
# has torch (ltbench bench needs only torch, numpy and tqdm besides this checkout):
#
#   OUT=/some/folder bash scripts/gpu_checks.sh
#
# Writes into $OUT: nvidia-smi.txt, pytest.log (the CUDA-only tests: no host sync in the PGD loop
# and the training step, device augmentation, bf16 autocast) and two `ltbench bench` runs
# (gpu-<model>.json / .md), the files results/bench/ keeps for each machine. Every step runs even
# if one before it failed; the exit status is that of the last failure. Not used by CI.
set -u
out=${OUT:?set OUT to the folder for the results}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
status=0
step() { echo "== $*"; "$@" || { status=$?; echo "== failed ($status): $*"; }; }

nvidia-smi >"$out/nvidia-smi.txt" 2>&1
step python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))"
step python3 -m pytest -m "" -q -p no:cacheprovider tests/test_bench.py tests/test_attacks.py tests/test_data.py \
    -k "cuda or sync or gpu or bf16" >"$out/pytest.log" 2>&1
tail -n 3 "$out/pytest.log"
step python3 -m ltbench.cli bench --device cuda --model resnet18 --batch-size 128 --iters 10 \
    --out "$out/gpu-resnet18-b128.json"
step python3 -m ltbench.cli bench --device cuda --out "$out/gpu-small-cnn-b128.json"
exit $status
