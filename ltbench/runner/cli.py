"""``ltbench run``: expand the grid, run every unfinished job, print the per-class table."""
from __future__ import annotations

import sys
from pathlib import Path

from ltbench.config import JobConfig
from ltbench.errors import LtbenchError


def add_arguments(p):
    p.add_argument("--preset", help="a shipped recipe (see `ltbench list presets`); flags override it")
    p.add_argument("--methods", nargs="+", help="method names (see `ltbench list methods`)")
    p.add_argument("--datasets", nargs="+", help="dataset names")
    p.add_argument("--ratios", nargs="+", type=float, help="imbalance ratios in (0, 1] (0.01 = 100:1)")
    p.add_argument("--seeds", nargs="+", type=int)
    p.add_argument("--model", help="model name (see `ltbench list models`)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--eps", type=float, help="L∞ budget (default: the dataset's)")
    p.add_argument("--step", type=float, help="PGD step size (default: the dataset's)")
    p.add_argument("--train-attack-steps", type=int)
    p.add_argument("--attacks", nargs="+", help="evaluation attacks (default: clean pgd20)")
    p.add_argument("--augment", choices=["randaugment", "autoaugment"])
    p.add_argument("--profile", choices=["exp", "step"])
    p.add_argument("--device", help="cpu, cuda, cuda:1 … (default: auto)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="method or model parameter, e.g. reat.tail_weight=0.5 or model.width=32")
    p.add_argument("--methods-dir", action="append", default=[], metavar="DIR",
                   help="also load methods from the .py files in DIR")
    p.add_argument("--out", help="study folder (default: results/<preset or 'study'>)")
    p.add_argument("--quiet", action="store_true", help="no progress output")


FIELDS = {"model": "model", "epochs": "epochs", "batch_size": "batch_size", "lr": "lr", "eps": "eps",
          "step": "step", "train_attack_steps": "train_attack_steps", "augment": "augment",
          "profile": "profile", "device": "device"}


def parse_sets(items: list[str]) -> tuple[dict, dict]:
    """``method.key=value`` → method params per method; ``model.key=value`` → model params."""
    method_params: dict[str, dict] = {}
    model_params: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        owner, dot, name = key.partition(".")
        if not sep or not dot or not name:
            raise LtbenchError(f"--set expects METHOD.KEY=VALUE or model.KEY=VALUE, got {item!r}")
        if owner == "model":
            model_params[name] = _literal(value)
        else:
            method_params.setdefault(owner, {})[name] = value
    return method_params, model_params


def _literal(value: str):
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def study_spec(args) -> dict:
    """Merge preset and flags into one plain dict describing the study."""
    from ltbench.presets import load_preset

    spec = load_preset(args.preset) if args.preset else {}
    for key in ("methods", "datasets", "ratios", "seeds"):
        if getattr(args, key) is not None:
            spec[key] = getattr(args, key)
    for arg, field in FIELDS.items():
        if getattr(args, arg, None) is not None:
            spec[field] = getattr(args, arg)
    if args.attacks:
        spec["eval_attacks"] = args.attacks
    method_params, model_params = parse_sets(args.set)
    spec.setdefault("method_params", {})
    for m, params in method_params.items():
        spec["method_params"].setdefault(m, {}).update(params)
    spec.setdefault("model_params", {}).update(model_params)
    spec.setdefault("methods", ["pgd-at"])
    spec.setdefault("datasets", ["fmnist"])
    spec.setdefault("ratios", [0.01])
    spec.setdefault("seeds", [0])
    if args.out:
        spec["out"] = args.out
    spec.setdefault("out", f"results/{args.preset or 'study'}")
    return spec


def build_jobs(spec: dict, methods_dirs=()) -> list[JobConfig]:
    from ltbench.runner.study import check_names

    base_fields = {k: v for k, v in spec.items() if k not in ("methods", "datasets", "ratios", "seeds", "out",
                                                               "method_params")}
    jobs = []
    for m in spec["methods"]:
        for d in spec["datasets"]:
            for r in spec["ratios"]:
                for s in spec["seeds"]:
                    cfg = JobConfig.from_dict({**base_fields, "method": m, "dataset": d, "ratio": float(r),
                                               "seed": int(s),
                                               "method_params": dict(spec["method_params"].get(m, {}))})
                    jobs.append(cfg.validate())
    unknown = set(spec["method_params"]) - set(spec["methods"])
    if unknown:
        raise LtbenchError(f"--set names method(s) not in this study: {', '.join(sorted(unknown))}")
    check_names(jobs, methods_dirs)
    return jobs


def main(args) -> int:
    from ltbench.engine.train import run_job
    from ltbench.runner.study import check_writable

    spec = study_spec(args)
    jobs = build_jobs(spec, args.methods_dir)
    out = Path(spec["out"])
    check_writable(out)
    done = 0
    for i, cfg in enumerate(jobs):
        job_dir = out / cfg.job_name
        if (job_dir / "result.json").exists():
            print(f"[{i + 1}/{len(jobs)}] {cfg.job_name}: done, skipped")
            done += 1
            continue
        progress = None if args.quiet else _progress_printer(f"[{i + 1}/{len(jobs)}] {cfg.job_name}")
        result = run_job(cfg, job_dir, progress)
        if not args.quiet:
            sys.stderr.write("\n")
        print_result_table(cfg.job_name, result)
        done += 1
    print(f"results written to {out.resolve()}")
    return 0


def _progress_printer(prefix: str):
    def show(msg: str) -> None:
        sys.stderr.write(f"\r{prefix} {msg}\033[K")
        sys.stderr.flush()

    return show


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
