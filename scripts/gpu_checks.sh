#!/usr/bin/env bash
# The GPU half of issue 8 ("Speed"), as one command for a lent GPU machine whose python3 already
# has torch, numpy, tqdm, pytest (and pandas, jinja2, matplotlib for the whole suite):
#
#   OUT=/some/folder LTBENCH_DATA=/folder/with/fashion-mnist bash scripts/gpu_checks.sh
#
# Writes into $OUT the files results/bench/ keeps for each machine, `ltbench bench` for ResNet-18 at
# batch 128 and for the small CNN (gpu-<model>-b128.json / .md), REAT's TAIL against the per-anchor loop
# (gpu-tail.json / .md, tests/bench_tail.py), and gpu-extra.tgz with the rest:
# nvidia-smi, the CUDA-only tests (pytest-cuda.log) and the whole test suite with CUDA visible (pytest.log), three real studies of PGD-AT and
# REAT (ResNet-18 on Fashion-MNIST-LT; both jobs side by side on the GPU for 4 epochs, then one after
# the other in both orders for 3: per-epoch time_s in metrics.jsonl, issue 8 item 5) and AutoAttack on a
# balanced subset; with GPU_CHECKS_COMPILE=1 also
# `ltbench bench --compile`. The studies are skipped when $LTBENCH_DATA/fashion-mnist is missing.
# Each step has its own time limit and runs even if one before it failed, so the whole script ends
# within 10 minutes (about 7 on an H200; a device call may last 10); the exit status is that of the last failure. Not used by CI.
#
# The lent machines of this workplace have torch, pytest and pandas but not pyautoattack, submitit or
# Debian's Fashion-MNIST. Prepare them here once (.gpudata is git-ignored), then carry .gpudata:
#   mkdir -p .gpudata/site && cp -r .venv/lib/python3.11/site-packages/{pyautoattack,submitit} .gpudata/site/
#   rm -rf .gpudata/site/pyautoattack/examples && cp -r /usr/share/datasets/fashion-mnist .gpudata/
#   PYTHONPATH=$PWD/.gpudata/site LTBENCH_DATA=$PWD/.gpudata OUT=$OUT bash scripts/gpu_checks.sh
# The tree and what it carries must stay under 64 MiB: with the committed studies (35 MiB on
# 2026-12-04) Debian's .gz files are too large. Carry the image files xz-compressed instead
# (`gunzip -c F.gz | xz -9e > .gpudata/fmxz/F.xz` for the two images files, the label .gz files
# as they are) and, on the GPU machine, decompress them into .gpudata/fashion-mnist first (the
# loader reads plain or .gz IDX files; Python's lzma module decompresses .xz).
set -u
out=${OUT:?set OUT to the folder for the results}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
work=$out/gpu-extra
mkdir -p "$work"
status=0
step() {  # step SECONDS COMMAND...: run it under a time limit, note a failure and go on
    local limit=$1; shift
    echo "== $(date +%T) $*"
    timeout "$limit" "$@" || { status=$?; echo "== failed ($status): $*"; }
}
lt="python3 -m ltbench.cli"  # a variable, not a function: timeout runs programs only

nvidia-smi >"$work/nvidia-smi.txt" 2>&1
step 30 python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))"
step 75 $lt bench --device cuda --model resnet18 --batch-size 128 --iters 10 --out "$out/gpu-resnet18-b128.json"
step 45 $lt bench --device cuda --out "$out/gpu-small-cnn-b128.json"
step 30 python3 tests/bench_tail.py --device cuda --out "$out/gpu-tail.json"  # REAT's TAIL vs the loop
if [ -d "${LTBENCH_DATA:-/nonexistent}/fashion-mnist" ]; then
    # Item 5 on one GPU. Side by side (--jobs-per-gpu 2: both jobs at once, as --workers 2 on the
    # CPU), then one after the other in both orders (the second job of a worker ran slower before).
    study="--datasets fmnist --ratios 0.01 --seeds 0 --model resnet18 --attacks clean pgd20 --device cuda"
    step 100 $lt run --methods pgd-at reat $study --epochs 4 --gpus 0 --jobs-per-gpu 2 --quiet --out "$work/study-side-by-side"
    for order in "pgd-at reat" "reat pgd-at"; do
        step 90 $lt run --methods $order $study --epochs 3 --gpus 0 --quiet --out "$work/study-${order%% *}-first"
    done
    step 50 $lt eval "$work/study-pgd-at-first/pgd-at__fmnist__r0.01__s0" --attacks clean pgd20 aa \
        --aa-n-per-class 20 --device cuda --out "$work/eval-aa.json"
    python3 - "$work" <<'PY'
import json, pathlib, statistics, sys
epoch_s = {}  # study -> median seconds of a PGD-AT epoch after the first (start-up, autotuning)
for study in sorted(pathlib.Path(sys.argv[1]).glob("study-*")):
    times = {job.name.split("__")[0]: [json.loads(l)["time_s"] for l in open(job / "metrics.jsonl")]
             for job in study.glob("*__*") if (job / "metrics.jsonl").exists()}
    if {"pgd-at", "reat"} <= set(times):
        ratios = [round(r / p, 3) for r, p in zip(times["reat"], times["pgd-at"])]
        print(f"{study.name}: REAT / PGD-AT per epoch {ratios}; seconds {times}")
        epoch_s[study.name] = statistics.median(times["pgd-at"][1:] or times["pgd-at"])
alone = [v for k, v in epoch_s.items() if k != "study-side-by-side"]
if "study-side-by-side" in epoch_s and alone:  # two jobs at once vs one at a time
    print(f"--jobs-per-gpu 2 throughput / one job at a time: {2 * min(alone) / epoch_s['study-side-by-side']:.2f}")
PY
else
    echo "== no \$LTBENCH_DATA/fashion-mnist: real-training check skipped"
fi
# The CUDA-only tests first (host syncs, bf16, the GPU runner), so that they report even if the
# whole suite runs out of time; then the suite (162 s with -n 16 on an H200, 2026-12-04).
step 45 python3 -m pytest -q -p no:cacheprovider -rfs -k "cuda or gpu or host_sync" >"$work/pytest-cuda.log" 2>&1
tail -n 15 "$work/pytest-cuda.log"
step 170 env OMP_NUM_THREADS=1 python3 -m pytest -q -p no:cacheprovider -rf -n 16 >"$work/pytest.log" 2>&1
tail -n 15 "$work/pytest.log"
if [ -n "${GPU_CHECKS_COMPILE:-}" ]; then  # about a minute more: past 10 minutes at the limits
    step 80 $lt bench --device cuda --model resnet18 --batch-size 128 --iters 5 --methods pgd-at reat --compile \
        --out "$work/gpu-resnet18-b128-compile.json"
fi
rm -f "$work"/study-*/*/*.pt
tar czf "$out/gpu-extra.tgz" -C "$out" gpu-extra && rm -rf "$work"
exit $status
