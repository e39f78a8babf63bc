"""How much the vectorised TAIL loss of REAT saves over the per-anchor loop it replaces, as a ratio.

    python tests/bench_tail.py --device cpu --out results/bench/cpu-2core-tail.json

REAT's TAIL term (DESIGN.md "REAT") is, per tail anchor i and sample j, s_ij·(w_yi + w_yj)·KL(p_i ‖ q_j).
``methods.reat.TailLoss`` computes it without a loop over anchors; the reference it is timed
against is the obviously correct loop the tests check it with (``tests/oracles.py``,
``tail_loss_loop``). Both get the same random features of the model's width (64: the small CNN;
512: ResNet-18) and compute value and gradient (forward + backward); the run checks that they
agree before it times them. The loop's cost grows with the number of tail anchors in the batch,
so it is measured twice: balanced labels (a third of the batch are tail anchors; ltbench's
target, loop / vectorised ≥ 20, is read on this one) and labels drawn from the long-tailed class
counts (CIFAR-10-LT at ratio 0.02: about 4 anchors in 128).

Calls of a millisecond: the fastest of the repeats is the cost (Python's ``timeit`` rule), timed in
alternating blocks of back-to-back calls so that a change of load hits both alike. The JSON keeps
every time, the machine and its load; the table goes next to it as ``.md``. This is a benchmark,
not a test: pytest does not collect it (``tests/test_bench.py`` runs it once, tiny, for its output).
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, Path(__file__).resolve().parent):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from ltbench.bench import load_average, summary, timed  # noqa: E402
from ltbench.data import long_tail_counts  # noqa: E402
from methods.reat import TailLoss, first_tail_class  # noqa: E402
from oracles import tail_loss_loop  # noqa: E402

TARGET = 20.0  # loop / vectorised on balanced labels
BLOCK = 3  # back-to-back calls of one variant per round


def measure(class_counts: torch.Tensor, feature_dim: int, batch: int, rounds: int, labels_from: str,
            device: torch.device, seed: int) -> dict:
    """Value, gradient and time of the vectorised TAIL and of the loop on one random batch."""
    counts = class_counts.to(device)
    tail_loss = TailLoss(counts, per_pair=True).to(device)
    g = torch.Generator().manual_seed(seed)
    C = counts.numel()
    if labels_from == "balanced":
        labels = torch.randint(0, C, (batch,), generator=g)
    else:  # the long-tailed class counts
        labels = torch.multinomial(class_counts.float().cpu(), batch, replacement=True, generator=g)
    labels = labels.to(device)
    feats = torch.randn(batch, feature_dim, generator=g).to(device)

    def run(fn):
        f = feats.detach().requires_grad_(True)
        loss = fn(f)
        (grad,) = torch.autograd.grad(loss, f)
        return loss.detach(), grad

    vectorised = lambda f: tail_loss(f, labels)  # noqa: E731
    loop = lambda f: tail_loss_loop(f, labels, counts)  # noqa: E731
    (lv, gv), (ll, gl) = run(vectorised), run(loop)  # the warm-up, and the agreement check
    agreement = {"loss_vectorised": float(lv), "loss_loop": float(ll),
                 "rel_diff": abs(float(lv) - float(ll)) / max(float(ll.abs()), 1e-12),
                 "grad_max_abs_diff": float((gv - gl).abs().max()),
                 "match": bool(torch.allclose(lv, ll, rtol=1e-4, atol=1e-6)
                               and torch.allclose(gv, gl, rtol=1e-3, atol=1e-6))}
    t_vec, t_loop = [], []
    for _ in range(rounds):
        t_vec += [timed(lambda: run(vectorised), device) for _ in range(BLOCK)]
        t_loop += [timed(lambda: run(loop), device) for _ in range(BLOCK)]
    out = {"batch": batch, "feature_dim": feature_dim, "labels": labels_from,
           "tail_anchors": int((labels >= first_tail_class(C)).sum()), "agreement": agreement,
           "vectorised_s": summary(t_vec), "loop_s": summary(t_loop)}
    out["loop / vectorised"] = out["loop_s"]["min"] / out["vectorised_s"]["min"]
    out["loop / vectorised (medians)"] = out["loop_s"]["median"] / out["vectorised_s"]["median"]
    return out


def format_table(rec: dict) -> str:
    from ltbench.bench import machine_line

    lines = [f"REAT's TAIL, vectorised (methods.reat.TailLoss) vs the per-anchor loop (tests/oracles.py), "
             f"forward + backward, fastest of {rec['rows'][0]['vectorised_s']['n']} calls each",
             machine_line(rec), ""]
    for r in rec["rows"]:
        ag = r["agreement"]
        lines.append(f"batch {r['batch']} × {r['feature_dim']} features, {r['labels']} labels "
                     f"({r['tail_anchors']} tail anchors): vectorised {r['vectorised_s']['min'] * 1e3:.2f} ms, "
                     f"loop {r['loop_s']['min'] * 1e3:.2f} ms → loop / vectorised {r['loop / vectorised']:.1f}× "
                     f"(medians {r['loop / vectorised (medians)']:.1f}×); same value: "
                     f"{'yes' if ag['match'] else 'NO'} (rel. diff {ag['rel_diff']:.1e})")
    t = rec["target"]
    lines += ["", f"target: loop / vectorised ≥ {t['bound']:g} on balanced labels at the first width: "
              f"{t['value']:.1f}, {'met' if t['met'] else 'MISSED'}", "", f"command: {rec['command']}"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from ltbench.env import environment, resolve_device
    from ltbench.io import write_json, write_text

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--widths", type=int, nargs="+", default=[64, 512], help="feature widths (default: 64 512)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--ratio", type=float, default=0.02, help="imbalance ratio of the long-tailed labels")
    p.add_argument("--rounds", type=int, default=30, help=f"rounds of {BLOCK} back-to-back calls of each variant")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench-tail.json", help="JSON file; the table goes next to it as .md")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    counts = torch.tensor(long_tail_counts(5000, args.classes, args.ratio), dtype=torch.float32)
    load_before, t0 = load_average(), time.perf_counter()
    rows = [measure(counts, width, args.batch, args.rounds, labels, device, args.seed)
            for width in args.widths for labels in ("balanced", "longtail")]
    first = rows[0]
    rec = {"command": "python tests/bench_tail.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
           "env": environment(device), "load_avg_before": load_before, "load_avg_after": load_average(),
           "wall_s": time.perf_counter() - t0, "class_counts": counts.tolist(), "rows": rows,
           "target": {"bound": TARGET, "value": first["loop / vectorised"],
                      "met": first["loop / vectorised"] >= TARGET}}
    table = format_table(rec)
    print(table, end="")
    out = Path(args.out)
    write_json(out, rec)
    write_text(out.with_suffix(".md"), "```\n" + table + "```\n")
    return 0 if all(r["agreement"]["match"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
