"""``ltbench bench``: how close the training engine runs to the hardware floor, as ratios.

One process, one device, synthetic data of a dataset's shape (nothing is loaded from disk). Timed
side by side, in interleaved rounds so that a change of machine load hits every row alike:

* **standard** — one non-adversarial training step (clean forward in train mode, backward, SGD);
* **attack iteration** — one PGD iteration alone: eval-mode forward plus the gradient with respect
  to the input only (parameters frozen), on a fixed batch;
* **floor** = K × attack iteration + standard: what one K-step adversarial-training step must cost;
* every registered method (PGD-AT, TRADES, …) — one full engine step,
  :func:`ltbench.engine.train.train_step`, exactly what ``ltbench run`` executes per batch
  (PGD with the method's start and loss, the method's outer loss, SGD, ``observe``, the epoch's
  device accumulators), each method with its own copy of the same initial model; and every
  registered modifier on the reference method (``pgd-at+awp``, ``pgd-at+robustlt``). Steps are
  timed as late in training (no ``ctx.epochs``): TAET in its adversarial stage, AWP past its
  warm-up, RobustLT's budgets at full size.

The reference every method is divided by is the cost baseline of the registry
(:func:`ltbench.method_roles.cost_baseline`, PGD-AT); a method's own speed target, if it has one, is
its class attribute ``step_cost_target`` (REAT: 1.05 × PGD-AT). No method is named here. How much
faster a vectorised loss term is than the per-sample loop it replaces is the business of that
loss's tests: ``tests/bench_tail.py`` times REAT's TAIL against the loop of ``tests/oracles.py``.

Every step includes the engine's batch preparation (gather from the device-resident uint8 set,
crop/flip on the device, channels_last). The synthetic labels follow the long-tailed class
counts ``long_tail_counts(5000, C, --ratio)``. Training rows: medians over the rounds, ratios of
medians (and, beside them, of each row's fastest round). The JSON also keeps every time, this process's CPU time per row (a
cross-check on a shared machine), the machine, its load average before and after, and the exact
command; the table goes next to it as ``.md``.
"""
from __future__ import annotations

import copy
import os
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, NamedTuple, Optional

import torch
import torch.nn.functional as F

FLOOR_TARGET = 1.10  # the reference method's step time over the floor: the engine's own overhead
N_MAX = 5000  # head-class size of the synthetic long-tailed class counts (CIFAR-10's)


def add_arguments(p):
    p.add_argument("--model", default="small-cnn", help="model name (default: small-cnn; the REAT paper's is resnet18)")
    p.add_argument("--set", action="append", default=[], metavar="model.KEY=VALUE",
                   help="model parameter, e.g. model.width=16")
    p.add_argument("--dataset", default="cifar10",
                   help="whose image shape, classes, ε, step and augmentation to use (no data is loaded)")
    p.add_argument("--ratio", type=float, default=0.02, help="imbalance ratio of the synthetic labels")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=10, help="K, the PGD iterations per training step")
    p.add_argument("--iters", type=int, default=15, help="timed rounds (each row is timed once per round)")
    p.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    p.add_argument("--methods", nargs="+", help="methods to time, with modifiers as in `ltbench run` (e.g. "
                   "'reat +awp'; default: every registered method, and the reference method (PGD-AT) with each "
                   "registered modifier)")
    p.add_argument("--methods-dir", action="append", default=[], metavar="DIR",
                   help="also load methods from the .py files in DIR")
    p.add_argument("--compile", action="store_true", help="torch.compile the models (as `ltbench run --compile`)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 … (default: auto)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench.json",
                   help="JSON file to write; the table goes next to it as .md (default: bench.json)")
    p.add_argument("--quiet", action="store_true", help="no progress output")


# --- timing ---------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Wall seconds of one call, the device drained before and after."""
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def load_average() -> Optional[list[float]]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def summary(times: list[float]) -> dict:
    return {"median": statistics.median(times), "min": min(times), "max": max(times), "n": len(times),
            "all": [round(t, 6) for t in times]}


# --- the training rows ----------------------------------------------------------------------
class Row:
    """One timed thing: a name, a step function, the samples each call processes."""

    def __init__(self, name: str, fn: Callable[[], object], images: int, kind: str):
        self.name, self.fn, self.images, self.kind = name, fn, images, kind
        self.times: list[float] = []


def compute_ratios(step_s: dict[str, float], steps: int, method_names: list[str],
                   reference: Optional[str]) -> dict:
    """All ratios of the table from one number of seconds per step for each row (the median, or
    the fastest round): ``step_s`` holds ``standard``, ``attack iteration`` (one iteration) and
    one entry per method. The floor is ``steps`` × attack iteration + standard; ``reference`` is
    the method every method is divided by (the keys carry its name: ``pgd-at / floor``,
    ``method / pgd-at``); without it in ``step_s`` there are no ratios to it."""
    std, it = step_s["standard"], step_s["attack iteration"]
    floor = steps * it + std
    r = {"attack iteration / standard": it / std, "floor / standard": floor / std}
    ref = step_s.get(reference) if reference else None
    if ref is not None:
        r[f"{reference} / standard"] = ref / std
        r[f"{reference} / floor"] = ref / floor
    r["method / floor"] = {m: step_s[m] / floor for m in method_names}
    if ref is not None:
        r[f"method / {reference}"] = {m: step_s[m] / ref for m in method_names}
    return r


class Target(NamedTuple):
    """A speed bound: the ratio at ``path`` in :func:`compute_ratios`' output (a key, or a key and a
    method name), compared with ``op`` (≤ or ≥) to ``bound``."""

    path: tuple
    op: str
    bound: float


def speed_targets(method_names: list[str], reference: Optional[str]) -> dict[str, Target]:
    """The targets a run checks, by the label the table shows: the reference method within
    ``FLOOR_TARGET`` of the floor, and every timed method that declares a ``step_cost_target`` (a
    class attribute) within it of the reference. A method spec with modifiers (``reat+awp``) is not
    held to its base's target."""
    from ltbench.registry import METHODS

    if not reference:
        return {}
    targets = {f"{reference} / floor": Target((f"{reference} / floor",), "≤", FLOOR_TARGET)}
    for name in method_names:
        cls = METHODS.get(name) if name in METHODS else None
        bound = getattr(cls, "step_cost_target", None)
        if bound is not None and name != reference:
            targets[f"{name} / {reference}"] = Target((f"method / {reference}", name), "≤", float(bound))
    return targets


def check_targets(ratios: dict, targets: dict[str, Target]) -> dict:
    """Each target's value from ``ratios`` (None where it was not measured), its bound and whether it is met."""
    out = {}
    for label, t in targets.items():
        v = ratios
        for key in t.path:
            v = v.get(key) if isinstance(v, dict) else None
        met = None if v is None else (v <= t.bound if t.op == "≤" else v >= t.bound)
        out[label] = {"value": v, "target": f"{t.op} {t.bound:g}", "met": met}
    return out


def build_rows(args, device: torch.device) -> tuple[list[Row], dict]:
    """The timed rows (standard, attack iteration, one per method) and a description of the setup."""
    from ltbench.attacks.base import attack_mode, autocast_for
    from ltbench.data import DeviceAugment, get_dataset, long_tail_counts
    from ltbench.engine.train import EpochAccumulator, attach_auxiliary_copy, compile_model, prepare_batch, train_step
    from ltbench.method import BatchContext, parse_overrides
    from ltbench.method_factory import build_method
    from ltbench.method_roles import cost_baseline
    from ltbench.modifier import parse_spec
    from ltbench.models import build_model
    from ltbench.plugins import load_all
    from ltbench.registry import METHODS, MODIFIERS

    load_all(args.methods_dir)
    info = get_dataset(args.dataset)
    C = info.num_classes
    reference = cost_baseline()
    specs = list(args.methods) if args.methods else [
        *METHODS.names(), *((f"{reference} +{m}" for m in MODIFIERS.names()) if reference else ())]
    parsed = {}
    for spec in specs:  # unknown names and bad flags fail before anything is timed
        p = parse_spec(spec)
        parse_overrides(p.name, METHODS.get(p.name).Config, p.overrides)
        for m, params in p.modifiers.items():
            parse_overrides(m, MODIFIERS.get(m).Config, params)
        parsed[p.label or p.name] = p
    names = list(parsed)
    counts_list = long_tail_counts(N_MAX, C, args.ratio)
    counts = torch.tensor(counts_list, dtype=torch.float32, device=device)
    B, K = args.batch_size, args.steps

    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    pool = 8 * B  # a device-resident uint8 "training set" with long-tailed labels
    x_u8 = torch.randint(0, 256, (pool, *info.image_shape), dtype=torch.uint8, generator=g).to(device)
    y_all = torch.multinomial(torch.tensor(counts_list, dtype=torch.float), pool, replacement=True,
                              generator=g).to(device)
    augment = DeviceAugment(info.crop_padding, info.flip)
    aug_gen = torch.Generator(device=device).manual_seed(args.seed + 1)
    idx_gen = torch.Generator(device=device).manual_seed(args.seed + 2)

    def batch():  # the engine's batch preparation, on the synthetic set
        idx = torch.randint(0, pool, (B,), generator=idx_gen, device=device)
        return prepare_batch(x_u8, y_all, idx, augment, aug_gen, device)

    from ltbench.study.grid import parse_sets

    method_params, model_params = parse_sets(args.set)
    if method_params:
        from ltbench.errors import LtbenchError

        raise LtbenchError(f"bench --set takes model.KEY=VALUE only, got {', '.join(args.set)}")
    base = build_model(args.model, C, info.image_shape[0], info.mean, info.std, **model_params)
    base = base.to(device, memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    wrap = compile_model if args.compile else (lambda m: m)

    def optimizer(model):
        return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    rows = []
    # standard training: the engine's step with the clean batch and a cross-entropy outer loss
    std_model = copy.deepcopy(base)
    std_fwd, std_opt, std_acc = wrap(std_model), optimizer(std_model), EpochAccumulator(C, device)

    def standard():
        x, y = batch()
        std_model.train()
        with autocast_for(device):
            logits = std_fwd(x)
            loss = F.cross_entropy(logits.float(), y)
        std_opt.zero_grad(set_to_none=True)
        loss.backward()
        std_opt.step()
        std_acc.update(loss, logits.detach().float(), y)

    rows.append(Row("standard", standard, B, "standard"))

    # one attack iteration alone, K of them per call (eval mode, parameters frozen, input gradient only)
    att_model = copy.deepcopy(base)
    att_fwd = wrap(att_model)
    x_fixed, y_fixed = batch()

    def attack_iterations():
        with attack_mode(att_model):
            for _ in range(K):
                x_in = x_fixed.detach().requires_grad_(True)
                with autocast_for(device):
                    logits = att_fwd(x_in)
                loss = F.cross_entropy(logits.float(), y_fixed, reduction="sum")
                torch.autograd.grad(loss, x_in)

    rows.append(Row("attack iteration", attack_iterations, B * K, "attack"))

    eps = info.eps
    for name in names:
        p = parsed[name]
        method = build_method(p.name, p.overrides, C, counts, p.modifiers).to(device)
        model = copy.deepcopy(base)
        head = method.build_head(model.feature_dim, C, counts)
        if head is not None:
            model.head = head.to(device)
        model.train()
        attach_auxiliary_copy(method, model)  # SD-LT's teacher: its forward pass is part of the step
        fwd, opt, acc = wrap(model), optimizer(model), EpochAccumulator(C, device)

        def step(method=method, model=model, fwd=fwd, opt=opt, acc=acc):
            x, y = batch()
            ctx = BatchContext(fwd, x, y, method.class_counts, eps, 0, step=info.step)
            train_step(model, fwd, method, opt, x, y, ctx, acc, eps=eps, step=info.step, steps=K)

        rows.append(Row(name, step, B, "method"))
    setup = {"dataset": args.dataset, "image_shape": list(info.image_shape), "num_classes": C,
             "class_counts": counts_list, "eps": eps, "step": info.step, "feature_dim": base.feature_dim,
             "parameters": sum(p.numel() for p in base.parameters()), "methods": names,
             "reference": reference}
    return rows, setup


def run_bench(args, log: Callable[[str], None] = lambda s: None) -> dict:
    """Time every row in interleaved rounds; return the JSON-ready record."""
    from ltbench.env import environment, resolve_device
    from ltbench.errors import LtbenchError

    if args.batch_size < 1 or args.steps < 1 or args.iters < 1 or args.warmup < 0:
        raise LtbenchError("--batch-size, --steps and --iters must be at least 1, --warmup at least 0")
    device = resolve_device(args.device)
    load_before = load_average()
    t_start = time.perf_counter()
    rows, setup = build_rows(args, device)
    reference = setup["reference"]
    for r in range(args.warmup + args.iters):
        timed_round = r >= args.warmup
        log(f"round {r + 1}/{args.warmup + args.iters}{'' if timed_round else ' (warm-up)'}")
        for row in rows:
            t = timed(row.fn, device)
            if timed_round:
                row.times.append(t)
    K = args.steps
    step_s = {row.name: statistics.median(row.times) for row in rows}
    step_s["attack iteration"] /= K  # the row ran K iterations per call
    method_names = [row.name for row in rows if row.kind == "method"]
    ratios = compute_ratios(step_s, K, method_names, reference)
    # The same ratios from each row's fastest round: on a shared machine, other processes only
    # ever slow a row down, so the minimum is the least disturbed estimate of its cost.
    min_step_s = {row.name: min(row.times) for row in rows}
    min_step_s["attack iteration"] /= K
    min_ratios = compute_ratios(min_step_s, K, method_names, reference)
    targets = speed_targets(method_names, reference)
    floor = K * step_s["attack iteration"] + step_s["standard"]
    per_row = {}
    for row in rows:
        div = K if row.kind == "attack" else 1
        s = summary([t / div for t in row.times])
        per_row[row.name] = {**s, "images_per_s": args.batch_size / s["median"]}
    return {
        "command": command_line(args),
        "settings": {"model": args.model, "model_params": list(args.set), "batch_size": args.batch_size,
                     "steps": K, "iters": args.iters, "warmup": args.warmup, "compile": bool(args.compile),
                     "seed": args.seed,
                     "ratio": args.ratio, **setup},
        "env": environment(device),
        "load_avg_before": load_before,
        "load_avg_after": load_average(),
        "wall_s": time.perf_counter() - t_start,
        "step_s": per_row,
        "floor_s": floor,
        "ratios": ratios,
        "ratios_fastest": min_ratios,
        "targets_fastest": check_targets(min_ratios, targets),
        "targets": check_targets(ratios, targets),
    }


def command_line(args) -> str:
    """The command that repeats this measurement, every setting spelled out."""
    parts = ["ltbench", "bench", "--model", args.model]
    for item in args.set:
        parts += ["--set", item]
    parts += ["--dataset", args.dataset, "--ratio", f"{args.ratio:g}", "--batch-size", str(args.batch_size),
              "--steps", str(args.steps), "--iters", str(args.iters), "--warmup", str(args.warmup),
              "--seed", str(args.seed),
              "--device", args.device]
    if args.methods:
        parts += ["--methods", *args.methods]
    for d in args.methods_dir:
        parts += ["--methods-dir", d]
    if args.compile:
        parts.append("--compile")
    parts += ["--out", args.out]
    return " ".join(shlex.quote(p) for p in parts)


# --- output ---------------------------------------------------------------------------------
def machine_line(rec: dict) -> str:
    """``device: …; torch …; load average before …, after …``: where a measurement ``rec`` was taken."""
    env = rec["env"]
    device = env.get("gpu") or f"{env['device']} ({env.get('cpu') or 'cpu'}, {env['threads']} threads)"
    return (f"device: {device}; torch {env['torch']}; load average before {rec['load_avg_before']}, "
            f"after {rec['load_avg_after']}")


def format_table(rec: dict) -> str:
    s, st = rec["settings"], rec["step_s"]
    K = s["steps"]
    lines = [f"ltbench bench — {s['model']} ({s['parameters'] / 1e6:.2f} M parameters), {s['dataset']} shape "
             f"{'×'.join(map(str, s['image_shape']))}, batch {s['batch_size']}, PGD-{K}"
             f"{', torch.compile' if s['compile'] else ''}",
             f"{machine_line(rec)}; median of {s['iters']} interleaved rounds",
             ""]
    std = st["standard"]["median"]
    floor = rec["floor_s"]
    reference = s.get("reference")
    pgd = st.get(reference, {}).get("median") if reference else None
    ref_col = f"× {reference}" if pgd else ""
    head = (f"{'':<34}{'s/step':>9}{'fastest':>9}{'images/s':>10}{'× standard':>12}{'× floor':>9}"
            f"{ref_col:>10}")
    lines += [head, "-" * len(head)]

    def line(name, sec, fastest, ips, show_floor=True, show_pgd=True):
        f = f"{sec / floor:9.3f}" if show_floor else " " * 9
        p = f"{sec / pgd:10.3f}" if (show_pgd and pgd) else " " * 10
        fast = f"{fastest:9.4f}" if fastest is not None else " " * 9
        return f"{name:<34}{sec:9.4f}{fast}{ips:10.1f}{sec / std:12.3f}{f}{p}"

    lines.append(line("standard", std, st["standard"]["min"], st["standard"]["images_per_s"], show_pgd=False))
    it = st["attack iteration"]["median"]
    lines.append(line("attack iteration (1 of K)", it, st["attack iteration"]["min"], s["batch_size"] / it,
                      show_floor=False, show_pgd=False))
    lines.append(line(f"floor = {K} × iteration + standard", floor, None, s["batch_size"] / floor,
                      show_pgd=False))
    for name in s["methods"]:
        lines.append(line(name, st[name]["median"], st[name]["min"], st[name]["images_per_s"]))
    lines.append("")
    lines.append("Targets (ratio of medians; in brackets, of each row's fastest round):"
                 if rec["targets"] else "Targets: none (no reference method was timed)")
    fastest = rec.get("targets_fastest", {})
    for key, t in rec["targets"].items():
        v = "n/a" if t["value"] is None else f"{t['value']:.3f}"
        f = fastest.get(key, {}).get("value")
        f = f" [{f:.3f}]" if f is not None else ""
        verdict = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
        lines.append(f"  {key:<24} {v:>8}{f}  (target {t['target']}): {verdict}")
    lines.append("")
    lines.append(f"command: {rec['command']}")
    return "\n".join(lines) + "\n"


def main(args) -> int:
    from ltbench.io import write_json, write_text

    log = (lambda s: None) if args.quiet else (lambda s: print(f"[bench] {s}", file=sys.stderr, flush=True))
    rec = run_bench(args, log)
    table = format_table(rec)
    print(table, end="")
    out = Path(args.out)
    write_json(out, rec)
    write_text(out.with_suffix(".md"), "```\n" + table + "```\n")
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0
