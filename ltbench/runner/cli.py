"""``ltbench run``: expand the grid into a study, run every unfinished job, report.

Order of work, so that bad input leaves nothing behind: merge preset and flags → build and
validate every job (names, ratios, epochs, method parameters, attacks) → check the output folder
and that existing jobs in it have the same configuration → check the executor (GPUs, Slurm) —
and only then create/extend the study folder and run. Finished jobs are skipped, unfinished ones
resume from their last checkpoint, failed ones are reported (``--retry-failed`` reruns them).

Exit status: 0 when every job of the grid is done (or running in another runner), 1 when a job
failed or was interrupted, 2 for bad input, 130 when stopped with Ctrl-C and 143 with SIGTERM
(``kill PID``; both leave every unfinished job resumable).
"""
from __future__ import annotations

import contextlib
import shutil
import signal
import sys
import threading
from pathlib import Path

from ltbench.config import JobConfig
from ltbench.errors import LtbenchError, Terminated
from ltbench import study_folder as sf


def add_arguments(p):
    g = p.add_argument_group("the grid (flags override --preset and --config)")
    g.add_argument("--preset", metavar="NAME|FILE",
                   help="a shipped recipe (see `ltbench list presets`) or a TOML file with the same keys; flags "
                        "override it")
    g.add_argument("--config", metavar="FILE",
                   help="a TOML file describing the study, with the keys of a preset (it may start from one with "
                        "preset = \"NAME\"); read after --preset; flags override it")
    g.add_argument("--methods", nargs="+", help="method names (see `ltbench list methods`); an ablation is the name with its flags in "
                        "one argument, e.g. 'reat --no-tail' (job folder reat+no-tail__…); a modifier is +NAME, e.g. "
                        "'reat +robustlt' or 'at-bsl +awp' (job folder at-bsl+awp__…); 'all' = every "
                        "registered method (default: pgd-at)")
    g.add_argument("--datasets", nargs="+", help="dataset names (see `ltbench list datasets`; default: fmnist)")
    g.add_argument("--ratios", nargs="+", type=float, help="imbalance ratios in (0, 1] (0.01 = 100:1; default: 0.01)")
    g.add_argument("--seeds", nargs="+", type=int, help="run seeds (default: 0)")
    g.add_argument("--model", help=f"model name (see `ltbench list models`; default: {_default('model')})")
    g.add_argument("--epochs", type=int, help=f"training epochs (default: {_default('epochs')})")
    g.add_argument("--batch-size", type=int, help=f"training batch size (default: {_default('batch_size')})")
    g.add_argument("--lr", type=float, help=f"SGD learning rate, ×0.1 at 75%% and 93.75%% of the epochs "
                                            f"(default: {_default('lr')})")
    g.add_argument("--weight-decay", type=float, help=f"SGD weight decay (default: {_default('weight_decay')})")
    g.add_argument("--eps", type=float, help="L∞ budget (default: the dataset's)")
    g.add_argument("--step", type=float, help="PGD step size (default: the dataset's)")
    g.add_argument("--train-attack-steps", type=int, metavar="K",
                   help=f"PGD steps of the training attack (default: {_default('train_attack_steps')})")
    g.add_argument("--attacks", nargs="+", help="evaluation attacks (default: clean pgd20 cw20)")
    g.add_argument("--augment", choices=["randaugment", "autoaugment"],
                   help="per-sample policy augmentation before crop/flip (AT-BSL's recipe uses one)")
    g.add_argument("--select-best", metavar="ATTACK",
                   help="evaluate the epoch most robust to ATTACK (e.g. pgd20), not the last one, chosen on the "
                        "held-out validation split (see --select-on)")
    g.add_argument("--select-on", choices=["validation", "test"],
                   help="where --select-best chooses: validation (default; the job holds out select_n_per_class, 100, "
                        "images per class) or test, a balanced test subset as the AT-BSL and REAT scripts do "
                        "(recorded in result.json and shown by the report: the test numbers are then optimistic)")
    g.add_argument("--compile", action="store_const", const=True, default=None,
                   help="torch.compile the model (worth it on GPUs for long runs; default: off)")
    g.add_argument("--no-clip-start", dest="clip_start", action="store_const", const=False, default=None,
                   help="training PGD: clip the random start to the ε-ball only, not to the image range [0, 1] "
                        "(as the AT-BSL authors' script does; default: clipped to both)")
    g.add_argument("--absolute-schedules", dest="scale_schedules", action="store_const", const=False, default=None,
                   help="keep method hyper-parameters that are numbers of epochs (CFA's start, TRADES-AWP's warm-up, "
                        "FRL's halving) as given (default: scaled by the job's epochs / the paper's)")
    g.add_argument("--profile", choices=["exp", "step"],
                   help="long-tail profile of the training set: exp (class c keeps n_max · ratio^(c/(C−1)) images) "
                        "or step (the first half of the classes n_max, the rest n_max · ratio) (default: exp)")
    g.add_argument("--split-seed", type=int, metavar="N",
                   help="draw the long-tailed split with seed N for every run seed (default: each run seed "
                        "draws its own split), so the spread over seeds is training variance alone")
    g.add_argument("--val-n-per-class", type=int, metavar="N",
                   help="hold N images per class (at most 20%% of a class) out of the long-tailed training set and "
                        "measure them every epoch (default: the method's: 0 for most, CFA 100, WAT and FRL 300)")
    g.add_argument("--val-attack-steps", type=int, metavar="K", help="iterations of that validation PGD (default 5)")
    g.add_argument("--init-from", metavar="JOB_DIR",
                   help="start each job from the weights this finished job evaluated (fine-tuning, e.g. FRL); "
                        "{dataset}, {ratio} and {seed} are filled in per job, e.g. "
                        "results/s/trades__{dataset}__r{ratio:g}__s{seed}")
    g.add_argument("--device", help="cpu, cuda, cuda:1 … (default: auto)")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="method, modifier or model parameter, e.g. reat.tail_weight=0.5, awp.gamma=0.005 or model.width=32")
    g.add_argument("--methods-dir", action="append", default=[], metavar="DIR",
                   help="also load methods from the .py files in DIR")
    g.add_argument("--out", help="study folder (default: results/<preset or config file name, or 'study'>)")
    g.add_argument("--dry-run", action="store_true",
                   help="list the jobs that would run and those skipped, with an estimated time; write nothing")

    e = p.add_argument_group("running")
    e.add_argument("--executor", choices=["local", "slurm"], default="local",
                   help="local worker processes (default) or one Slurm array task per job")
    e.add_argument("--gpus", help="local: GPU ids to use, one worker each, e.g. 0,1,2,3 (default: all visible)")
    e.add_argument("--jobs-per-gpu", type=int, metavar="N",
                   help="local: N workers, so N jobs at once, on each GPU (default 1); a small model at "
                        "batch 128 leaves a GPU mostly idle")
    e.add_argument("--workers", type=int, help="local: number of CPU worker processes (default 1 without GPUs)")
    e.add_argument("--retry-failed", action="store_true", help="rerun jobs that failed before (resuming them)")
    e.add_argument("--redo", nargs="+", metavar="PATTERN",
                   help="start the jobs of this run whose folder name matches a glob afresh, e.g. 'cfa__*' 'frl__*': "
                        "their folders are deleted and this run's configuration replaces the recorded one")
    e.add_argument("--quiet", action="store_true", help="no progress output")
    e.add_argument("--tensorboard", action="store_true",
                   help="also log each job's training curves for TensorBoard under <study>/tensorboard "
                        "(needs the optional extra: pip install 'ltbench[tensorboard]')")

    s = p.add_argument_group("Slurm (--executor slurm)")
    s.add_argument("--partition", help="Slurm partition (default: the cluster's default)")
    s.add_argument("--time", default="24:00:00", help="time limit per job, Slurm format (default 24:00:00); "
                   "a job that reaches it is requeued and resumes")
    s.add_argument("--gpus-per-job", type=int, default=1, help="GPUs per array task (default 1; 0 for CPU)")
    s.add_argument("--cpus-per-job", type=int, help="CPU cores per array task")
    s.add_argument("--mem", help="memory per array task, Slurm format (e.g. 32G)")
    s.add_argument("--max-parallel", type=int, help="at most this many tasks running at once")
    s.add_argument("--slurm-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="any other sbatch option, e.g. account=abc or qos=high")
    s.add_argument("--no-wait", action="store_true", help="submit and return; `ltbench status` shows progress")


def _default(field: str):
    """A JobConfig field's default, for the help texts."""
    import dataclasses

    return {f.name: f.default for f in dataclasses.fields(JobConfig)}[field]


FIELDS = ("model", "epochs", "batch_size", "lr", "weight_decay", "eps", "step", "train_attack_steps", "augment",
          "compile", "select_best", "clip_start", "profile", "split_seed", "device", "val_n_per_class",
          "val_attack_steps", "init_from", "scale_schedules", "select_on")  # JobConfig fields a flag of the same name sets
GRID_KEYS = ("methods", "datasets", "ratios", "seeds")


def parse_sets(items: list[str]) -> tuple[dict, dict]:
    """``method.key=value`` → method params per method; ``model.key=value`` → model params."""
    from ltbench.method import coerce_value

    method_params: dict[str, dict] = {}
    model_params: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        owner, dot, name = key.partition(".")
        if not sep or not owner or not dot or not name:
            raise LtbenchError(f"--set expects METHOD.KEY=VALUE or model.KEY=VALUE, got {item!r}")
        if owner == "model":
            model_params[name] = coerce_value(value)
        else:
            method_params.setdefault(owner, {})[name] = value
    return method_params, model_params


def study_spec(args) -> dict:
    """Merge preset and flags into one plain dict describing the study."""
    from ltbench.presets import load_spec

    spec = load_spec(args.preset) if args.preset else {}
    if getattr(args, "config", None):
        spec.update(load_spec(args.config))
    for key in GRID_KEYS:
        if getattr(args, key, None) is not None:
            spec[key] = getattr(args, key)
    for field in FIELDS:
        if getattr(args, field, None) is not None:
            spec[field] = getattr(args, field)
            for fields in spec.get("per_method", {}).values():  # a flag beats the preset's per-method value too
                fields.pop(field, None)
    if getattr(args, "attacks", None):
        spec["eval_attacks"] = args.attacks
    method_params, model_params = parse_sets(getattr(args, "set", []) or [])
    spec.setdefault("method_params", {})
    if getattr(args, "methods", None) is not None and ALL_METHODS not in spec["methods"]:
        # --methods replaced the preset's: its parameters for methods and modifiers no longer run go too.
        used = _owners(spec["methods"])
        spec["method_params"] = {k: v for k, v in spec["method_params"].items() if k in used}
    for m, params in method_params.items():
        spec["method_params"].setdefault(m, {}).update(params)
    spec.setdefault("model_params", {}).update(model_params)
    spec.setdefault("methods", ["pgd-at"])
    spec.setdefault("datasets", ["fmnist"])
    spec.setdefault("ratios", [0.01])
    spec.setdefault("seeds", [0])
    for key in GRID_KEYS:
        if not isinstance(spec[key], list) or not spec[key]:
            raise LtbenchError(f"{key} must be a non-empty list, got {spec[key]!r}")
    if getattr(args, "out", None):
        spec["out"] = args.out
    spec.setdefault("out", f"results/{study_name(args)}")
    return spec


def study_name(args) -> str:
    """The default study folder's name: the config file's or preset's name, else ``study``."""
    source = getattr(args, "config", None) or getattr(args, "preset", None)
    return Path(source).stem if source else "study"


ALL_METHODS = "all"


def _owners(methods: list[str]) -> set[str]:
    """What ``--set OWNER.KEY=VALUE`` may name for these ``--methods`` arguments: each argument as
    written, its method's name and its modifiers' names."""
    from ltbench.modifier import parse_spec

    parsed = [parse_spec(m) for m in methods]
    return set(methods) | {p.name for p in parsed} | {k for p in parsed for k in p.modifiers}


def expand_methods(methods: list[str], methods_dirs=()) -> list[str]:
    """``all`` → every registered method, in registration order (a method added later joins a
    preset that says ``all``); other entries kept; duplicates dropped, first place kept."""
    from ltbench.plugins import load_all
    from ltbench.registry import METHODS

    out: list[str] = []
    for m in methods:
        if str(m).strip() == ALL_METHODS:
            load_all(list(methods_dirs))
            out.extend(METHODS.names())
        else:
            out.append(m)
    return list(dict.fromkeys(out))


def build_jobs(spec: dict, methods_dirs=()) -> list[JobConfig]:
    """Every job of the grid, validated (unknown names and bad values raise LtbenchError)."""
    from ltbench.modifier import parse_spec
    from ltbench.runner.checks import check_names

    base_fields = {k: v for k, v in spec.items() if k not in (*GRID_KEYS, "out", "method_params", "per_method")}
    per_method = spec.get("per_method", {})  # a preset's settings for some methods: name or full spec → fields
    spec = {**spec, "methods": expand_methods(spec["methods"], methods_dirs)}
    parsed = {m: parse_spec(m) for m in spec["methods"]}
    unknown = set(spec["method_params"]) - _owners(spec["methods"])
    if unknown:
        raise LtbenchError(f"--set names method(s) or modifier(s) not in this study: {', '.join(sorted(unknown))}")
    jobs = []
    for m in spec["methods"]:
        # "reat --no-tail" is the reat method with tail=false, labelled "reat+no-tail" in the study;
        # "reat +awp" is reat wrapped by the awp modifier, labelled "reat+awp".
        p = parsed[m]
        name, flags, label = p.name, p.overrides, p.label
        modifiers = {k: {**v, **spec["method_params"].get(k, {})} for k, v in p.modifiers.items()}
        fields = {**base_fields, **per_method.get(name, {}), **per_method.get(m, {})}
        for d in spec["datasets"]:
            for r in spec["ratios"]:
                for s in spec["seeds"]:
                    try:
                        ratio, seed = float(r), int(s)
                    except (TypeError, ValueError):
                        raise LtbenchError(f"bad ratio {r!r} or seed {s!r}") from None
                    params = {**flags, **spec["method_params"].get(name, {}), **spec["method_params"].get(m, {})}
                    init = {"init_from": job_init_from(fields["init_from"], d, ratio, seed)} if fields.get("init_from") else {}
                    cfg = JobConfig.from_dict({**fields, **init, "method": name, "label": label, "dataset": d,
                                               "ratio": ratio, "seed": seed, "method_params": params,
                                               "modifiers": modifiers})
                    jobs.append(cfg.validate())
    names = [j.job_name for j in jobs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise LtbenchError(f"the grid names the same job twice: {', '.join(dupes)}")
    check_names(jobs, methods_dirs)
    return jobs


def job_init_from(template: str, dataset: str, ratio: float, seed: int) -> str:
    """``--init-from`` for one job: ``{dataset}``, ``{ratio}`` and ``{seed}`` filled in (one source
    job per seed: ``results/s/trades__{dataset}__r{ratio:g}__s{seed}``). Kept as written: a relative
    path is relative to the folder ``ltbench run`` is started in, so a study committed with a
    relative path (the ``fmnist-lt`` preset's FRL jobs) has the same ``config.json`` in every clone."""
    try:
        path = str(template).format(dataset=dataset, ratio=ratio, seed=seed)
    except (KeyError, IndexError, ValueError) as exc:
        raise LtbenchError(f"init_from {template!r}: only {{dataset}}, {{ratio}} and {{seed}} may be filled in "
                           f"({type(exc).__name__}: {exc})") from None
    return path


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


@contextlib.contextmanager
def sigterm_stops_like_ctrl_c():
    """While jobs run, ``kill PID`` (SIGTERM) stops the runner as Ctrl-C does: local workers are
    stopped, their jobs resume from the last checkpoint on the next run, and the runner says so. A
    runner started in the background (``cmd &`` from a script) ignores SIGINT, so SIGTERM is how
    one stops it. A second SIGTERM during that shutdown kills at once (the default action)."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers: main thread only
        yield
        return

    def stop(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def redo_jobs(out: Path, jobs: list[JobConfig], patterns: list[str]) -> frozenset[str]:
    """The names of the jobs ``--redo`` starts afresh: those matching a glob; each glob must match a
    job of this run, and none of them may be running elsewhere."""
    from fnmatch import fnmatchcase

    from ltbench.runner.study import RUNNING, job_status

    names = set()
    for pattern in patterns:
        matched = {cfg.job_name for cfg in jobs if fnmatchcase(cfg.job_name, pattern)}
        if not matched:
            raise LtbenchError(f"--redo {pattern!r} matches no job of this run (job folders look like "
                               f"{jobs[0].job_name})")
        names |= matched
    busy = sorted(n for n in names if job_status(out / n).state == RUNNING)
    if busy:
        raise LtbenchError(f"--redo: {busy[0]} is running elsewhere; stop it before starting it afresh")
    return frozenset(names)


def main(args) -> int:
    from ltbench.runner import job as J
    from ltbench.runner.display import describe, make_display
    from ltbench.runner.checks import check_data, check_init_sources, check_writable
    from ltbench.runner.study import DONE, FAILED, RUNNING, Study, job_status

    spec = study_spec(args)
    jobs = build_jobs(spec, args.methods_dir)
    out = Path(spec["out"])
    check_writable(out, tuple(cfg.job_name for cfg in jobs))
    redo = redo_jobs(out, jobs, getattr(args, "redo", None) or [])
    check_init_sources(out, jobs)
    Study.check_compatible(out, jobs, redo)
    if getattr(args, "dry_run", False):
        from ltbench.runner import dryrun

        workers = (args.max_parallel or len(jobs)) if getattr(args, "executor", "local") == "slurm" \
            else len(make_executor(args, spec).slots)
        dryrun.report(out, jobs, workers, bool(getattr(args, "retry_failed", False)), redo=redo)
        return 0
    executor = make_executor(args, spec)
    for name in sorted(redo):  # after every check: nothing is deleted for a run that is refused
        shutil.rmtree(out / name, ignore_errors=True)
    if getattr(args, "executor", "local") == "local":  # Slurm: the data is checked where the jobs run
        to_run = [cfg for cfg in jobs if job_status(out / cfg.job_name).state not in (DONE, RUNNING)]
        check_data([cfg.dataset for cfg in to_run])

    if getattr(args, "tensorboard", False):
        from ltbench.runner import tensorboard

        tensorboard.enable(out)  # checked before anything is written: a missing package is one line
    launched = Path(sys.argv[0]).name in ("ltbench", "__main__.py") if sys.argv else False
    study = Study.prepare(out, spec, jobs, command=["ltbench", *sys.argv[1:]] if launched else None, afresh=redo)
    from ltbench.runner.slurm import queued_in_slurm

    outcomes: dict[str, dict] = {}
    queue = []
    queued = queued_in_slurm([study.job_dir(cfg.job_name) for cfg in jobs])
    for cfg in jobs:
        name = cfg.job_name
        state = study.status(name)
        if name in queued and state.state != DONE:  # an earlier --no-wait submission will run it
            outcomes[name] = {"job": name, "outcome": sf.Outcome.BUSY, "error": f"queued in Slurm as {queued[name]}"}
        elif state.state == DONE:
            outcomes[name] = {"job": name, "outcome": sf.Outcome.ALREADY_DONE}
        elif state.state == FAILED and not args.retry_failed:
            outcomes[name] = {"job": name, "outcome": sf.Outcome.FAILED_BEFORE, **J.read_failure(study.job_dir(name))}
        elif state.state == RUNNING:
            outcomes[name] = {"job": name, "outcome": sf.Outcome.BUSY}
        else:
            queue.append(name)

    # Seed by seed: a study stopped half-way covers every method with its first seeds.
    seed_of = {cfg.job_name: cfg.seed for cfg in jobs}
    queue.sort(key=lambda n: seed_of[n])
    quiet = bool(getattr(args, "quiet", False))
    say = (lambda text: None) if quiet else (lambda text: print(text, file=sys.stderr, flush=True))
    counts = [f"{n} {label}" for k, label in ((sf.Outcome.ALREADY_DONE, "already done"), (sf.Outcome.FAILED_BEFORE, "failed before"),
                                              (sf.Outcome.BUSY, "running elsewhere"))
              if (n := sum(o["outcome"] == k for o in outcomes.values()))]
    say(f"study {out} ({len(jobs)} job{'s' * (len(jobs) != 1)}): " + ", ".join([f"{len(queue)} to run", *counts]))
    for name, o in outcomes.items():
        if o["outcome"] in (sf.Outcome.FAILED_BEFORE, sf.Outcome.BUSY):
            say(f"  {name}: {describe(o)}")

    if queue:
        from ltbench.runner.estimate import typical_job_seconds

        slots = [s.name for s in getattr(executor, "slots", [])][:len(queue)]
        parallel = len(slots) or min(len(queue), getattr(executor, "max_parallel", None) or len(queue))
        first_guess = None if quiet else typical_job_seconds(out, [cfg for cfg in jobs if cfg.job_name in queue])
        display = make_display(len(jobs), len(jobs) - len(queue), slots, quiet, parallel, first_guess)
        try:
            with sigterm_stops_like_ctrl_c():
                outcomes.update(executor.run(study, queue, display))
        except KeyboardInterrupt:
            display.close()
            if getattr(executor, "slots", None):  # local workers were stopped (Slurm tasks go on)
                say(f"stopped; unfinished jobs resume from their last checkpoint when you re-run the same "
                    f"command (`ltbench status {out}` lists them)")
            raise
        finally:
            display.close()
        if getattr(executor, "wait", True) is False:
            return 0

    return report(study, jobs, outcomes, quiet)


def report(study, jobs: list[JobConfig], outcomes: dict[str, dict], quiet: bool = False) -> int:
    """Print the results (per-class tables for a small study, else one line per job); exit status."""
    from ltbench.runner.display import describe
    from ltbench.study_folder import Outcome

    bad = [n for n, o in outcomes.items() if o["outcome"] in (Outcome.FAILED_NOW, Outcome.FAILED_BEFORE, Outcome.INTERRUPTED)]
    unfinished = [cfg.job_name for cfg in jobs if cfg.job_name not in outcomes]
    results = {}
    for cfg in jobs:
        result = sf.read_result(study.job_dir(cfg.job_name))  # None when missing or damaged
        if result is not None:
            results[cfg.job_name] = result
    if quiet:  # the results are left out, never a failure's one line
        for name in bad:
            print(f"{name}: {describe(outcomes[name])}", file=sys.stderr)
    else:
        from ltbench.runner.summary import format_summary, next_command

        if len(jobs) <= 2:
            for name, result in results.items():
                print_result_table(name, result)
        if len(results) >= 2:
            print(format_summary(results))
        if bad:
            print(f"\n{len(bad)} job(s) did not finish:")
            for name in bad:
                where = study.job_dir(name) / (sf.ERROR if (study.job_dir(name) / sf.ERROR).exists() else sf.LOG)
                print(f"  {name}: {describe(outcomes[name])}\n    see {where}")
            if any(outcomes[n]["outcome"] in (sf.Outcome.FAILED_NOW, sf.Outcome.FAILED_BEFORE) for n in bad):
                print("  (--retry-failed reruns the failed ones; interrupted ones resume on any re-run)")
        busy = [n for n, o in outcomes.items() if o["outcome"] == sf.Outcome.BUSY and n not in results]
        if busy:
            print(f"\n{len(busy)} job(s) are running elsewhere; `ltbench status {study.root}` follows them")
        print(f"\nresults written to {study.root.resolve()}  ({len(results)}/{len(jobs)} jobs done)")
        if results:
            print(sf.warnings_line(results.values(), study.root))
            print(next_command(study.root))
    return 1 if bad or unfinished else 0


def print_result_table(name: str, result: dict) -> None:
    """Per-class accuracy under each evaluated attack, then the head/medium/tail summary."""
    metrics = result["metrics"]
    names = result["dataset"]["class_names"]
    counts = result["dataset"]["train_counts"]
    attacks = list(metrics)
    print(f"\n{name}")
    header = f"{'class':<16}{'train n':>8}" + "".join(f"{a:>9}" for a in attacks)
    print(header)
    print("-" * len(header))
    for c, cname in enumerate(names):
        row = f"{cname[:15]:<16}{counts[c]:>8}" + "".join(f"{100 * metrics[a]['per_class'][c]:>8.1f}%" for a in attacks)
        print(row)
    print("-" * len(header))
    for group in ("overall", "head", "medium", "tail", "worst"):
        print(f"{group:<16}{'':>8}" + "".join(f"{100 * metrics[a][group]:>8.1f}%" for a in attacks))
