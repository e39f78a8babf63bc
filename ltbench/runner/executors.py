"""Choosing the executor a study runs on: local worker processes or Slurm, checked against this machine."""
from __future__ import annotations

from ltbench.errors import LtbenchError


def make_executor(args, spec: dict):
    """The executor the flags ask for, checked against this machine (raises LtbenchError)."""
    from ltbench.runner import local

    retry = bool(getattr(args, "retry_failed", False))
    methods_dirs = getattr(args, "methods_dir", []) or []
    if getattr(args, "executor", "local") == "slurm":
        from ltbench.runner import slurm

        if args.gpus or args.workers or getattr(args, "jobs_per_gpu", None):
            raise LtbenchError("--gpus/--workers/--jobs-per-gpu are for --executor local; "
                               "use --gpus-per-job with Slurm")
        if args.gpus_per_job is not None and args.gpus_per_job < 0:
            raise LtbenchError(f"--gpus-per-job must be ≥ 0, got {args.gpus_per_job}")
        for flag in ("cpus_per_job", "max_parallel"):
            value = getattr(args, flag)
            if value is not None and value < 1:
                raise LtbenchError(f"--{flag.replace('_', '-')} must be ≥ 1, got {value}")
        extra = {}
        for item in args.slurm_arg:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise LtbenchError(f"--slurm-arg expects KEY=VALUE, got {item!r}")
            extra[key.lstrip("-")] = value
        time_min = slurm.parse_time(args.time)
        slurm.check_slurm(args.partition)
        return slurm.SlurmExecutor(args.partition, time_min, args.gpus_per_job, args.cpus_per_job, args.mem,
                                   args.max_parallel, extra, methods_dirs, retry, wait=not args.no_wait)

    import torch

    device = str(spec.get("device", "auto"))
    per_gpu = getattr(args, "jobs_per_gpu", None)
    if args.gpus and args.workers:
        raise LtbenchError("give either --gpus (one worker per GPU) or --workers (CPU workers), not both")
    if per_gpu is not None and (per_gpu < 1 or args.workers is not None or device == "cpu"):
        raise LtbenchError(f"--jobs-per-gpu must be at least 1, got {per_gpu}" if per_gpu < 1 else
                           "--jobs-per-gpu is for GPU workers; on the CPU use --workers")
    per_gpu = per_gpu or 1
    if args.workers is not None:
        if args.workers < 1:
            raise LtbenchError(f"--workers must be at least 1, got {args.workers}")
        if device.startswith("cuda"):
            raise LtbenchError("--workers starts CPU workers; with --device cuda use --gpus")
        return local.LocalExecutor(local.cpu_slots(args.workers), methods_dirs, retry)
    n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device.startswith("cuda") and n_gpus == 0:
        raise LtbenchError(f"--device {device}: no CUDA device is visible")
    if device.startswith("cuda:"):
        if args.gpus:
            raise LtbenchError(f"--device {device} pins one GPU; use --device cuda with --gpus for several")
        return local.LocalExecutor(local.pinned_slots(device, per_gpu), methods_dirs, retry)
    if args.gpus:
        if n_gpus == 0 or device == "cpu":
            raise LtbenchError("--gpus given, but " + ("no CUDA device is visible" if n_gpus == 0
                                                        else "--device cpu"))
        try:
            ids = [int(x) for x in args.gpus.split(",") if x.strip()]
        except ValueError:
            raise LtbenchError(f"--gpus expects comma-separated GPU ids, e.g. 0,1, got {args.gpus!r}") from None
        bad = [i for i in ids if not 0 <= i < n_gpus]
        if not ids or bad or len(set(ids)) != len(ids):
            raise LtbenchError(f"--gpus {args.gpus}: ids must be distinct, in 0…{n_gpus - 1}")
        return local.LocalExecutor(local.gpu_slots(ids, per_gpu), methods_dirs, retry)
    if n_gpus and device in ("auto", "cuda"):
        return local.LocalExecutor(local.gpu_slots(list(range(n_gpus)), per_gpu), methods_dirs, retry)
    if per_gpu > 1:
        raise LtbenchError("--jobs-per-gpu given, but no CUDA device is visible")
    return local.LocalExecutor(local.cpu_slots(1), methods_dirs, retry)
