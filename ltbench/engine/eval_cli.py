"""``ltbench eval PATH``: evaluate a saved job (or checkpoint) under attacks, write ``result.json``.

``PATH`` is a job folder (``config.json``, ``lt_indices.json``, ``checkpoint.pt``, as written by
:func:`ltbench.engine.train.run_job`) or a checkpoint file inside one. A folder is evaluated on the
weights the job's own evaluation used (:func:`job_weights`: the ``--select-best`` epoch, CFA's
FAWA average, else the last checkpoint), so that ``--attacks aa`` adds numbers of the same model;
another file of the job is evaluated only with ``--out``. The model is rebuilt from
``config.json`` (with the method's head, if it has one), its weights are loaded with
``torch.load(weights_only=True)``, and the same evaluation a job runs at its end is run on it::

    ltbench eval results/study/pgd-at__fmnist__r0.01__s0 --attacks clean pgd20 cw20 aa
    ltbench eval results/study/pgd-at__fmnist__r0.01__s0 --attacks aa --aa-n-per-class 100

ε and the PGD step default to the job's (its config, else the dataset's: CIFAR 8/255 and 2/255,
Fashion-MNIST 0.1 and 0.01); ``--eps`` / ``--step`` override them; both are recorded. The result
goes to the job's ``result.json`` — merged with what is there when ε and step match (so
``--attacks aa`` adds AutoAttack next to the job's PGD numbers) — or to ``--out``. Only a finished
job's ``result.json`` is added to, under the job's lock (so no runner starts the job meanwhile); a job
a runner holds, or a folder that is not the job its name says, is refused; ``--out`` never names a
path inside another job's folder nor any job's ``result.json``.
AutoAttack's progress is kept next to the result (``aa_state.json`` in the job folder, or in the
``--out`` folder): a killed run resumes.
"""
from __future__ import annotations

import contextlib
import math
import sys
import time
from pathlib import Path

import torch

from ltbench import study_folder as sf
from ltbench.errors import LtbenchError


def add_arguments(p):
    p.add_argument("path", metavar="PATH", nargs="?", help="a job folder, or a checkpoint file inside one")
    p.add_argument("--model-factory", metavar="MODULE:FUNCTION",
                   help="evaluate a model trained elsewhere instead of a job: FUNCTION() returns an nn.Module "
                        "mapping images in [0, 1] to logits (with --weights, --dataset and --out)")
    p.add_argument("--weights", help="with --model-factory: a state dict saved with torch.save")
    p.add_argument("--dataset", help="with --model-factory: the dataset whose test set to use (default fmnist)")
    p.add_argument("--class-counts", nargs="+", type=int, metavar="N",
                   help="with --model-factory: the training counts that define head / medium / tail "
                        "(default: the dataset's own training counts if they are long-tailed, else no groups)")
    p.add_argument("--n-per-class", type=int, metavar="N",
                   help="with --model-factory: every attack on a balanced, seeded subset of N per class")
    p.add_argument("--attacks", nargs="+", help="attacks to run (default: the job's eval_attacks); names "
                   "(`ltbench list attacks`): clean fgsm pgdK cwK lsK aa, each optionally @EPS (e.g. pgd20@0.05)")
    p.add_argument("--eps", type=float, help="L∞ budget (default: the job's, else the dataset's)")
    p.add_argument("--step", type=float, help="PGD step size (default: the job's, else the dataset's; "
                                               "2.5·ε/K for a K-step attack where K·step < ε)")
    p.add_argument("--aa-n-per-class", type=int, metavar="N",
                   help="AutoAttack on a fixed balanced subset of N test images per class (default: the job's "
                        "setting, else the full test set)")
    p.add_argument("--seed", type=int, help="evaluation seed (random starts, subsets; default: the job's seed)")
    p.add_argument("--batch-size", type=int, help="evaluation batch (default: the job's; 1024 on CUDA)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 … (default: auto)")
    p.add_argument("--no-checks", action="store_true", help="skip the gradient-masking checks")
    p.add_argument("--methods-dir", action="append", default=[], metavar="DIR",
                   help="also load methods from the .py files in DIR (for a job of a plug-in method)")
    p.add_argument("--out", help="write the result here (a .json file, or a folder for result.json) "
                                 "instead of the job folder")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def job_weights(job_dir: Path) -> Path:
    """The weights a job's own evaluation used: the selected epoch's (``best.pt``, ``--select-best``),
    else the method's own (``eval_weights.pt``, CFA's FAWA average), else the last checkpoint."""
    for name in (sf.BEST, sf.EVAL_WEIGHTS):
        if (job_dir / name).is_file():
            return job_dir / name
    return job_dir / sf.CHECKPOINT


def locate(path: str | Path) -> tuple[Path, Path]:
    """(job folder, weights file) for a job folder (the weights its own evaluation used,
    :func:`job_weights`) or a weights file in one."""
    path = Path(path)
    if path.is_dir():
        job_dir, ckpt = path, path / sf.CHECKPOINT
    elif path.is_file():
        job_dir, ckpt = path.parent, path
    else:
        raise LtbenchError(f"{path} does not exist")
    if not ckpt.is_file():
        raise LtbenchError(f"no checkpoint in {job_dir} (expected {ckpt.name})")
    if not (job_dir / sf.CONFIG).is_file():
        raise LtbenchError(f"no {sf.CONFIG} next to {ckpt}: ltbench eval needs the job folder "
                           f"that `ltbench run` wrote")
    return job_dir, job_weights(job_dir) if path.is_dir() else ckpt


def load_job_model(job_dir: Path, ckpt: Path, device: torch.device, methods_dirs=()):
    """(config, dataset info, raw data, training class counts, model with the saved weights)."""
    from ltbench.config import JobConfig
    from ltbench.data import LongTailSplit, get_dataset, load_split
    from ltbench.engine.checkpoint import load_checkpoint
    from ltbench.engine.evaluate import job_test_set
    from ltbench.engine.train import build_job_model
    from ltbench.models.factory import load_weights
    from ltbench.plugins import load_all

    load_all(list(methods_dirs))
    raw_cfg = sf.read_config(job_dir)
    if raw_cfg is None:
        raise LtbenchError(f"{job_dir / sf.CONFIG} is damaged (not a JSON object); ltbench eval needs it "
                           f"to rebuild the model")
    try:
        cfg = JobConfig.from_dict(raw_cfg).validate()
    except TypeError as exc:
        raise LtbenchError(f"{job_dir / sf.CONFIG} is not a job configuration ({exc})") from None
    info = get_dataset(cfg.dataset)
    saved = job_dir / sf.SPLIT
    raw, split = load_split(info, cfg.ratio, cfg.profile, cfg.lt_split_seed,
                            split=LongTailSplit.load(saved) if saved.exists() else None, n_max=cfg.train_per_class)
    raw.x_test, raw.y_test = job_test_set(raw.x_test, raw.y_test, cfg.test_per_class, cfg.seed)
    counts = split.train_counts  # without the validation split's images, if the job held some out
    _, model = build_job_model(cfg, info, torch.tensor(counts, dtype=torch.float32))
    state = load_checkpoint(ckpt, map_location="cpu")  # a file that is not weights-only: one line
    weights = state.get("model", state) if isinstance(state, dict) else None
    if not isinstance(weights, dict):
        raise LtbenchError(f"{ckpt} holds no model state dict")
    load_weights(model, weights, str(ckpt), f"the model in config.json ({cfg.model})")
    model = model.to(device, memory_format=torch.channels_last).eval()
    return cfg, info, raw, counts, model


def main(args) -> int:
    from ltbench.attacks.factory import parse_attack_name
    from ltbench.engine.evaluate import run_evaluation
    from ltbench.engine.train import result_header
    from ltbench.env import resolve_device
    from ltbench.metrics import masking_warnings

    if args.model_factory:
        return main_factory(args)
    if not args.path:
        raise LtbenchError("give a job folder (PATH), or --model-factory MODULE:FUNCTION for a model trained elsewhere")
    job_dir, ckpt = locate(args.path)
    out = result_path(args.out, job_dir)
    check_job_folder(job_dir, into_job=not args.out)
    measured = job_weights(job_dir)
    if not args.out and ckpt.resolve() != measured.resolve():
        raise LtbenchError(f"{job_dir / sf.RESULT} measures {measured.name}, not {ckpt.name}: adding "
                           f"this evaluation to it would mix two models; write it elsewhere with --out")
    device = resolve_device(args.device or "auto")
    cfg, info, raw, counts, model = load_job_model(job_dir, ckpt, device, args.methods_dir)
    eps = args.eps if args.eps is not None else (cfg.eps if cfg.eps is not None else info.eps)
    step = args.step if args.step is not None else (cfg.step if cfg.step is not None else info.step)
    if not (math.isfinite(eps) and math.isfinite(step) and eps >= 0 and step >= 0):
        raise LtbenchError(f"--eps and --step must be finite numbers ≥ 0, got {eps} and {step}")
    attacks = list(args.attacks or cfg.eval_attacks)
    for name in attacks:
        parse_attack_name(name)  # an unknown name or a bad budget: one line, before any work
    aa_n = args.aa_n_per_class if args.aa_n_per_class is not None else cfg.aa_n_per_class
    if aa_n is not None and aa_n < 1:
        raise LtbenchError("--aa-n-per-class must be at least 1")
    seed = cfg.seed if args.seed is None else args.seed
    from ltbench.progress import LinePrinter

    progress = None if args.quiet else LinePrinter(sys.stderr)

    previous = None
    if out.is_file() and not args.out:
        try:
            previous = sf.load_result(out)
        except ValueError:
            raise LtbenchError(f"{out} is damaged (it does not read as a result); move it away, or write this evaluation "
                               f"elsewhere with --out") from None
    if previous is not None:
        old = previous.get("attack") if isinstance(previous.get("attack"), dict) else {}
        if (old.get("eps"), old.get("step")) != (eps, step):
            raise LtbenchError(f"{out} holds results at ε={old.get('eps')}, step={old.get('step')}; "
                               f"write results at ε={eps}, step={step} elsewhere with --out")

    with job_kept_from_runners(job_dir, held=not args.out):  # no runner starts the job meanwhile
        t0 = time.perf_counter()
        evaluation = run_evaluation(model, raw.x_test, raw.y_test, counts, attacks, eps=eps, step=step, device=device,
                                    batch_size=args.batch_size or cfg.eval_batch_size, seed=seed, aa_n_per_class=aa_n,
                                    state_dir=out.parent, checks=not args.no_checks, progress=progress)
        eval_s = time.perf_counter() - t0
        if progress:
            progress.close()
        evaluation["evaluation"]["checkpoint"] = str(ckpt)

        result = {
            **result_header(cfg, device, raw.class_names, counts, len(raw.y_test), eps, step),
            "timing": {"eval_s": eval_s},
            **evaluation,
        }
        if previous is not None and not args.out:  # merge into the job's result: keep what was not re-run
            metrics = {**previous.get("metrics", {}), **evaluation["metrics"]}
            checks = evaluation["checks"] or previous.get("checks")
            rerun = set(evaluation["metrics"])
            # this evaluation's warnings other than the checks' (non-finite outputs, AutoAttack's own)
            own = [w for w in evaluation["warnings"]
                   if w not in masking_warnings(evaluation["metrics"], evaluation["checks"])]
            if "aa" not in rerun:  # the package's own warnings of an earlier AutoAttack run still hold
                own += [w for w in previous.get("warnings") or [] if str(w).startswith("AutoAttack:")]
            before = previous.get("evaluation") or {}
            settings = {**before, **evaluation["evaluation"],
                        "attacks": list(metrics),
                        "autoattack": evaluation["evaluation"]["autoattack"] or before.get("autoattack")}
            result = {**previous, **result, "metrics": metrics, "checks": checks, "evaluation": settings,
                      "timing": {**previous.get("timing", {}), "eval_s": eval_s},
                      "warnings": masking_warnings(metrics, checks) + own}
        result = sf.write_result_file(out, result)
    print_summary(result)
    print(f"result written to {out.resolve()}")
    return 0


def result_path(out_arg: str | None, job_dir: Path | None = None) -> Path:
    """Where an evaluation goes: the job's ``result.json`` without ``--out``, else ``--out`` (a
    ``.json`` file, or a folder for ``result.json``). ``--out`` never names another job's record:
    a path inside another job's folder, or any job's ``result.json``, is refused."""
    if not out_arg:
        return job_dir / sf.RESULT
    out = Path(out_arg)
    if out.is_dir() or not out.suffix:
        out = out / sf.RESULT
    resolved = out.resolve()
    own = job_dir.resolve() if job_dir is not None else None
    if resolved.name == sf.RESULT and sf.is_job_dir(resolved.parent):
        raise LtbenchError(f"--out {out_arg} is a job's {sf.RESULT}, which only its job writes"
                           + ("; leave out --out to add this evaluation to the job's result" if resolved.parent == own
                              else "; name a file of your own"))
    for folder in resolved.parents:
        if folder != own and sf.is_job_dir(folder):
            raise LtbenchError(f"--out {out_arg} is inside another job's folder ({folder}); an evaluation goes "
                               f"beside its own job or to a file of your own")
    return out


def check_job_folder(job_dir: Path, into_job: bool) -> None:
    """Refuse a job a runner holds (its lock), a folder whose name is not the job of its
    ``config.json``, and, when the evaluation goes into the job's folder, an unfinished job: only a
    finished job's ``result.json`` is added to, so ``eval`` never makes a job done or replaces the
    runner's result with an evaluation of an older checkpoint."""
    from ltbench.config import folder_problem

    if sf.is_locked(job_dir):
        raise LtbenchError(f"{job_dir} is running (a runner holds its lock); evaluate it when it is done")
    problem = folder_problem(job_dir)
    if problem:
        raise LtbenchError(f"{job_dir} is {problem}; rename it back before evaluating it")
    if into_job and not (job_dir / sf.RESULT).is_file():
        raise LtbenchError(f"{job_dir} is not finished (no {sf.RESULT}); `ltbench run` finishes it, or write "
                           f"this evaluation of its last checkpoint elsewhere with --out")


@contextlib.contextmanager
def job_kept_from_runners(job_dir: Path, held: bool):
    """With ``held``, the job's lock is held while the evaluation runs and writes into its folder,
    so no runner starts the job meanwhile (a runner that tries reports it busy)."""
    if not held:
        yield
        return
    lock = sf.JobLock(job_dir)
    if not lock.acquire():
        raise LtbenchError(f"{job_dir} is running (a runner holds its lock); evaluate it when it is done")
    with lock:
        yield


def main_factory(args) -> int:
    """``ltbench eval --model-factory M:F [--weights W] --out FILE``: any model, per class."""
    from ltbench.engine.evaluate import evaluate_model
    from ltbench.models.factory import model_from_factory
    from ltbench.env import environment, resolve_device
    from ltbench.progress import LinePrinter

    if args.path:
        raise LtbenchError("give either a job folder (PATH) or --model-factory, not both")
    if not args.out:
        raise LtbenchError("--model-factory needs --out (there is no job folder to write into)")
    out = result_path(args.out)
    sys.path.insert(0, str(Path.cwd()))  # a factory in the current folder imports like a script's module
    model = model_from_factory(args.model_factory, args.weights)
    device = resolve_device(args.device or "auto")
    dataset = args.dataset or "fmnist"
    progress = None if args.quiet else LinePrinter(sys.stderr)
    t0 = time.perf_counter()
    raw, class_names = evaluate_model(model, dataset, list(args.attacks or ("clean", "pgd20", "cw20")), eps=args.eps,
                            step=args.step, n_per_class=args.n_per_class, aa_n_per_class=args.aa_n_per_class,
                            class_counts=args.class_counts, device=str(device), seed=args.seed or 0,
                            batch_size=args.batch_size, checks=not args.no_checks, progress=progress)
    if progress:
        progress.close()
    result = {"model": {"factory": args.model_factory, "weights": args.weights}, "env": environment(device),
              "dataset": {"name": dataset, "class_names": class_names,
                          "train_counts": raw["evaluation"]["class_counts"]},
              "attack": {"eps": raw["evaluation"]["eps"], "step": raw["evaluation"]["step"]},
              "timing": {"eval_s": time.perf_counter() - t0}, **raw}
    result = sf.write_result_file(out, result)
    print_summary(result)
    print(f"result written to {out.resolve()}")
    return 0


def _percent(value) -> str:
    return f"{100 * value:>8.1f}%" if isinstance(value, (int, float)) else f"{'–':>9}"


def print_summary(result: dict) -> None:
    """Accuracy per attack: overall, head / medium / tail, worst class; where the groups come from;
    each step the step rule replaced; the per-class table; then the warnings."""
    keys = ("overall", "head", "medium", "tail", "worst")
    print(f"ε = {result['attack']['eps']:g}, step = {result['attack']['step']:g}")
    groups = (result.get("evaluation") or {}).get("groups")
    print(groups["text"] if groups else "head / medium / tail from the job's long-tailed training counts")
    for name, rec in result["metrics"].items():
        given = (rec.get("attack") or {}).get("step_given")
        if given is not None:
            print(f"{name}: step {rec['attack']['step']:g} = 2.5·ε/K ({rec['attack']['steps']} steps of {given:g} "
                  f"cannot reach ε)")
    print(f"{'attack':<14}{'n':>7}" + "".join(f"{k:>9}" for k in keys) + f"{'seconds':>9}")
    for name, rec in result["metrics"].items():
        print(f"{name:<14}{rec['n']:>7}" + "".join(_percent(rec.get(k)) for k in keys)
              + f"{rec.get('seconds', float('nan')):>9.1f}")
    print_per_class(result)
    for w in result.get("warnings") or []:
        print(f"warning: {w}")


def print_per_class(result: dict) -> None:
    """Accuracy per class (by name) under each attack, with each class's training count and group
    (H / M / T) where the result has them."""
    from ltbench.groups import class_groups

    names = list((result.get("dataset") or {}).get("class_names") or [])
    counts = (result.get("dataset") or {}).get("train_counts")
    metrics = result["metrics"]
    if not names:
        return
    group = {c: g[0].upper() for g, idx in class_groups(counts).items() for c in idx} if counts else {}
    width = min(max(len(n) for n in names), 24) + 2
    print(f"\n{'class':<{width}}{'train n':>8}{'group':>6}" + "".join(f"{a:>10}" for a in metrics))
    for c, name in enumerate(names):
        accs = [list(rec["per_class"].values()) if isinstance(rec["per_class"], dict) else rec["per_class"]
                for rec in metrics.values()]
        print(f"{name[:width - 2]:<{width}}{counts[c] if counts else '–':>8}{group.get(c, '–'):>6}"
              + "".join(f" {_percent(a[c])}" for a in accs))
