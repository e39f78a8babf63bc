"""The HTML report: one self-contained file (inline CSS, images as ``data:`` URIs, one small hashed
inline script), rendered with jinja2 with autoescaping on, so any method, class or study name is
shown as text.

The page's Content-Security-Policy allows no network access at all (``default-src 'none'``), images
only from ``data:`` URIs and only the page's own script (by hash): the file works offline and even
an escaping mistake could not run injected script. The script checks that every image decoded and
records the result on ``<html data-images="ok:N">`` (or ``failed:…``), which the tests read.
"""
from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import jinja2
import pandas as pd
from markupsafe import Markup

from ltbench.io import write_text
from ltbench.report import plots as P
from ltbench.attack_names import attack_label, attack_order, robust_attack
from ltbench.groups import GROUPS
from ltbench.report.aggregate import (Tables, build_tables, fmt_cell, fmt_pct, images_text,
                                      seeds_wording)
from ltbench.study.study import Study
from ltbench.report.paired import paired_display
from ltbench.method_roles import cost_baseline
from ltbench.version import __version__

TEMPLATE = "report.html.j2"
# Kept byte-identical between the page and the CSP hash below.
CHECK_IMAGES_JS = (
    "(function(){function check(){var bad=[],imgs=document.images;"
    "for(var i=0;i<imgs.length;i++){var im=imgs[i];"
    "if(!(im.complete&&im.naturalWidth>0&&im.naturalHeight>0))bad.push(im.getAttribute('data-key')||String(i));}"
    "document.documentElement.setAttribute('data-images',bad.length?'failed:'+bad.join(','):'ok:'+imgs.length);}"
    "if(document.readyState==='complete')check();else window.addEventListener('load',check);})();"
)


def csp(script: str) -> str:
    """The page's Content-Security-Policy: nothing from the network, only this script."""
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    return (f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{digest}'; "
            "base-uri 'none'; form-action 'none'")


def environment() -> jinja2.Environment:
    """The jinja2 environment: templates shipped in the package, autoescaping always on."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("ltbench.report", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = fmt_pct
    env.filters["attack_label"] = attack_label
    return env


# ------------------------------------------------------------------------------------------------
# Context pieces


def _seconds(value) -> str:
    try:
        s = float(value)
    except (TypeError, ValueError):
        return ""
    if not math.isfinite(s):
        return ""
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


def job_rows(studies: list[Study]) -> list[dict]:
    """Every job of every study with its status, progress, timing and warning count."""
    rows = []
    for st in studies:
        for j in st.jobs:
            timing = (j.result or {}).get("timing") or {}
            epochs = j.epochs
            done = len(j.metrics)
            rows.append({"study": st.label, "name": j.name, "status": j.status, "method": j.method,
                         "dataset": j.dataset, "ratio": f"{j.ratio:g}", "seed": j.seed,
                         "progress": f"{done}/{epochs}" if epochs else (str(done) if done else ""),
                         # a resumed job's training: every epoch's (epochs_s), not only its last run's
                         "train": _seconds(timing.get("epochs_s", timing.get("train_s"))),
                         "eval": _seconds(timing.get("eval_s")),
                         "warnings": len(j.warnings), "error": j.error, "detail": j.detail})
    return rows


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _show(v) -> str:
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True)


def config_summary(studies: list[Study]) -> tuple[list, list]:
    """(keys with one value in every job, keys whose value varies with the jobs and their values)."""
    cfgs = [_flatten((j.result or {}).get("config") or j.config) for st in studies for j in st.jobs
            if j.result or j.config]
    if not cfgs:
        return [], []
    keys = list(dict.fromkeys(k for c in cfgs for k in c))
    common, varying = [], []
    grid = {"method", "dataset", "ratio", "seed", "method_params", "modifiers"}
    for k in keys:
        values = list(dict.fromkeys(_show(c.get(k)) for c in cfgs))
        if len(values) == 1:
            common.append((k, values[0]))
        else:
            varying.append((k, ", ".join(values[:12]) + (" …" if len(values) > 12 else ""), k.split(".")[0] in grid))
    return common, varying


def distinct_values(records: list[dict]) -> list[tuple[str, list[tuple[str, int]]]]:
    """Each field of ``records`` (flattened) with its distinct values and how many records have each."""
    records = [_flatten(r) for r in records]
    keys = list(dict.fromkeys(k for r in records for k in r))
    out = []
    for k in keys:
        counts: dict[str, int] = {}
        for r in records:
            v = _show(r.get(k))
            counts[v] = counts.get(v, 0) + 1
        out.append((k, sorted(counts.items(), key=lambda kv: -kv[1])))
    return out


def env_summary(studies: list[Study]) -> list[tuple[str, list[tuple[str, int]]]]:
    """Each environment field recorded in the results with its distinct values and job counts."""
    return distinct_values([(j.result or {}).get("env") or {} for st in studies for j in st.done])


def evaluation_summary(studies: list[Study]) -> list[tuple[str, list[tuple[str, int]]]]:
    """The evaluation settings recorded in the results (ε, step, training attack steps, the
    evaluation record: batch size, AutoAttack subset …) with their distinct values and job counts."""
    records = []
    for st in studies:
        for j in st.done:
            rec = {f"attack.{k}": v for k, v in (j.result.get("attack") or {}).items()}
            ev = j.result.get("evaluation")
            if isinstance(ev, dict):
                rec.update({f"evaluation.{k}": v for k, v in ev.items()})
            ds = j.result.get("dataset") or {}
            if "test_size" in ds:
                rec["dataset.test_size"] = ds["test_size"]
            records.append(rec)
    return distinct_values(records)


def attack_descriptions(studies: list[Study]) -> dict[str, str]:
    """Attack key → its parameters as recorded with the metrics (``metrics[a]["attack"]``), e.g.
    ``name pgd, eps 0.1, step 0.01, steps 20, restarts 1``; distinct settings joined by `` | ``."""
    found: dict[str, dict[str, None]] = {}
    for st in studies:
        for j in st.done:
            for attack, rec in j.result["metrics"].items():
                desc = (rec or {}).get("attack") if isinstance(rec, dict) else None
                if isinstance(desc, dict) and set(desc) - {"name"}:
                    text = ", ".join(f"{k} {_show(v)}" for k, v in desc.items())
                    found.setdefault(attack, {})[text] = None
    return {a: " | ".join(v) for a, v in found.items()}


def code_versions(studies: list[Study]) -> list[dict]:
    """Distinct code versions (ltbench version, git commit, local changes) the results came from,
    plus what each ``study.json`` records about the code."""
    seen: dict[tuple, dict] = {}
    for st in studies:
        for j in st.done:
            env = j.result.get("env") or {}
            key = (st.label, env.get("ltbench"), env.get("commit"), env.get("dirty"))
            row = seen.setdefault(key, {"study": st.label, "ltbench": env.get("ltbench"), "commit": env.get("commit"),
                                        "dirty": env.get("dirty"), "jobs": 0, "source": "results"})
            row["jobs"] += 1
        for key in ("code_version", "created_by", "code", "version", "git", "env"):
            value = st.data.get(key)
            if isinstance(value, dict) and any(k in value for k in ("commit", "ltbench", "dirty")):
                seen[(st.label, "spec", key)] = {"study": st.label, "ltbench": value.get("ltbench"),
                                                 "commit": value.get("commit"), "dirty": value.get("dirty"),
                                                 "jobs": None, "source": f"study.json ({key})"}
    return list(seen.values())


def spec_text(spec: dict) -> str:
    """``study.json`` pretty-printed, its per-job configurations summarised (they fill the Jobs and
    Configuration tables)."""
    if not spec:
        return ""
    shown = dict(spec)
    if isinstance(shown.get("jobs"), (dict, list)) and len(shown["jobs"]) > 0:
        shown["jobs"] = f"… {len(shown['jobs'])} job configurations (see the Jobs and Configuration tables)"
    return json.dumps(shown, indent=2, sort_keys=False, default=str)


def warning_rows(studies: list[Study]) -> list[dict]:
    return [{"study": st.label, "job": j.name, "method": j.method, "text": w}
            for st in studies for j in st.done for w in j.warnings]


@dataclass
class PerClassTable:
    """Per-class mean accuracy over seeds for one panel and attack: rows = series, columns = classes."""

    dataset: str
    ratio: float
    attack: str
    classes: list  # (name, train_count, group) head → tail
    rows: list  # (series, [text per class], seeds)


def per_class_tables(per_class: pd.DataFrame, attacks: list[str]) -> list[PerClassTable]:
    out = []
    for dataset, ratio in P.panels(per_class):
        df = P._sel(per_class, dataset, ratio)
        for attack in attacks:
            sub = df[df["attack"] == attack]
            if sub.empty:
                continue
            ranks = sub.sort_values("rank").drop_duplicates("rank")
            classes = list(zip(ranks["class_name"], ranks["train_count"], ranks["group"]))
            rows = []
            for series, grp in sub.groupby("series", sort=False):
                means = grp.groupby("rank")["accuracy"].mean()
                rows.append((series, [fmt_pct(means.get(r, math.nan)) for r in ranks["rank"]], grp["seed"].nunique()))
            out.append(PerClassTable(dataset, ratio, attack, classes, rows))
    return out


@dataclass
class PairSection:
    """``a`` vs ``b`` (e.g. reat vs reat-official) on one panel: a table and a per-class figure."""

    a: str
    b: str
    dataset: str
    ratio: float
    rows: list = field(default_factory=list)  # (attack label, group label, a text, b text, delta text)
    plot: Optional[P.Plot] = None


def paired_delta(jobs: pd.DataFrame, study: str, dataset: str, ratio: float, attack: str, a: str, b: str,
                 group: str) -> str:
    """``a − b`` paired over the seeds both have, as the paired tables write it: ``+8.4 ± 2.0
    [+3.5, +13.4] (3/3)`` (mean ± std, 95 % Student t interval, seeds ahead); ``–`` without a
    common seed."""
    from ltbench.report.paired import diff_stats, fmt_stats, seed_diffs

    sel = jobs[(jobs["study"] == study) & (jobs["dataset"] == dataset) & (jobs["ratio"] == ratio)
               & (jobs["attack"] == attack)]
    d = seed_diffs(*(sel[sel["method"] == m].set_index("seed") for m in (a, b)), group)
    return fmt_stats(diff_stats(d)) if d else "–"


def pair_sections(tables: Tables, per_class: pd.DataFrame, attacks: list[str], palette: dict,
                  multi: bool) -> list[PairSection]:
    """Side-by-side sections for every pair of :func:`ltbench.method_roles.side_by_side` present in the
    same study and panel."""
    from ltbench.method_roles import side_by_side

    out = []
    s = tables.summary
    if s.empty:
        return out
    for study in dict.fromkeys(s["study"]):
        for a, b in side_by_side():
            sub = s[(s["study"] == study) & s["method"].isin([a, b])]
            for dataset, ratio in P.panels(sub):
                panel = P._sel(sub, dataset, ratio)
                if set(panel["method"]) != {a, b}:
                    continue
                sa, sb = (f"{study}: {a}", f"{study}: {b}") if multi else (a, b)
                sec = PairSection(sa, sb, dataset, ratio)
                for attack in attack_order(panel["attack"].unique()):
                    ra = panel[(panel["method"] == a) & (panel["attack"] == attack)]
                    rb = panel[(panel["method"] == b) & (panel["attack"] == attack)]
                    if ra.empty or rb.empty:
                        continue
                    ra, rb = ra.iloc[0], rb.iloc[0]
                    for g in GROUPS:
                        sec.rows.append((attack_label(attack), g, fmt_cell(ra[f"{g}_mean"], ra[f"{g}_std"]),
                                         fmt_cell(rb[f"{g}_mean"], rb[f"{g}_std"]),
                                         paired_delta(tables.jobs, study, dataset, ratio, attack, a, b, g)))
                key = f"pair__{len(out)}__{dataset}__r{ratio:g}"
                sec.plot = P.pair_per_class(per_class, sa, sb, attacks, dataset, ratio, palette, key)
                out.append(sec)
    return out


def attack_coverage(studies: list[Study], tables: Tables) -> dict[str, dict]:
    """attack → ``{jobs, of, images, complete}``: how many finished jobs were evaluated under it
    (of how many), on how many test images (:func:`images_text`), and whether every one was."""
    n_done = sum(len(st.done) for st in studies)
    out = {}
    if tables.jobs.empty:
        return out
    for attack, grp in tables.jobs.groupby("attack", sort=False):
        k = int(grp[["study", "job"]].drop_duplicates().shape[0])
        out[attack] = {"jobs": k, "of": n_done, "images": images_text(grp["n"]), "complete": k == n_done}
    return out


def study_differences(studies: list[Study]) -> list[tuple[str, list[tuple[str, str]]]]:
    """Settings that differ between compared studies (configuration and evaluation settings that
    are one value within each study but not the same in all): ``[(key, [(study, value), …])]``."""
    per_study = []
    for st in studies:
        common, _ = config_summary([st])
        values = dict(common)
        for key, vals in evaluation_summary([st]):
            if len(vals) == 1:
                values[key] = vals[0][0]
        per_study.append((st.label, values))
    grid = {"method", "label", "method_params", "seed", "dataset", "ratio", "device", "eval_attacks",
            "evaluation.attacks", "evaluation.checkpoint"}
    keys = list(dict.fromkeys(k for _, v in per_study for k in v))
    out = []
    for k in keys:
        if k in grid or k.split(".")[0] in {"method_params"}:
            continue
        vals = [(label, v.get(k, "(not recorded)")) for label, v in per_study]
        if len({v for _, v in vals}) > 1:
            out.append((k, vals))
    return out


# ------------------------------------------------------------------------------------------------
# The report


@dataclass
class Report:
    """A rendered report: the HTML, the tables behind it and its figures."""

    html: str
    tables: Tables
    plots: list


def ratio_sections(tables: Tables, coverage: dict) -> list[dict]:
    """Per dataset measured at two or more imbalance ratios (:mod:`ltbench.report.ratios`): the
    figure (PGD-20 when present: it runs on every test image), the tail ranking per robust attack with
    Kendall's τ, and the paired verdicts along the ratios (one table per attack × group)."""
    from ltbench.report import ratios as R

    out = []
    pooled = R.pooled(tables.summary)
    for dataset in R.sweep_datasets(pooled):
        attacks = R.sweep_attacks(pooled, dataset)
        if not attacks:
            continue
        plot = P.across_ratios(pooled, dataset, attacks[0], images=coverage.get(attacks[0], {}).get("images"))
        rankings, verdicts = [], []
        for attack in attacks:
            r = R.rankings(pooled, dataset, attack, "tail", tables.jobs)
            rows = [(m, [("–" if math.isnan(r.ranks.at[m, x]) else
                          f"{int(r.ranks.at[m, x])} ({100 * r.means.at[m, x]:.1f})") for x in r.ratios])
                    for m in r.ranks.index]
            rankings.append({"label": attack_label(attack), "sentence": R.ranking_sentence(r),
                             "ratios": [R.ratio_text(x) for x in r.ratios], "rows": rows,
                             "flips": [R.flip_text(f) for f in r.flips]})
            for group in R.VERDICT_GROUPS:
                v = R.verdicts(tables.paired, dataset, attack, group)
                cols = [c for c in v.columns if c not in ("method", "baseline")]
                if v.empty or len(cols) < 2:
                    continue
                verdicts.append({"label": attack_label(attack), "group": group,
                                 "ratios": [R.ratio_text(x) for x in cols],
                                 "rows": [(row["method"], row["baseline"], [R.verdict_cell(row[x]) for x in cols])
                                          for _, row in v.iterrows()]})
        out.append({"dataset": dataset, "plot": plot, "rankings": rankings, "verdicts": verdicts})
    return out


def cost_rows(cost: pd.DataFrame) -> list[dict]:
    """The cost table as display rows: method, dataset, ratio, epoch seconds, × baseline."""
    rows = []
    for _, r in cost.iterrows():
        rel = "–" if not math.isfinite(r["cost_mean"]) else f"{r['cost_mean']:.2f}" + (
            f" ± {r['cost_std']:.2f}" if math.isfinite(r["cost_std"]) else "")
        rows.append({"study": r["study"], "method": r["method"], "dataset": r["dataset"], "ratio": f"{r['ratio']:g}",
                     "epoch_s": f"{r['epoch_s']:.1f}", "rel": rel, "seeds": int(r["seeds"])})
    return rows


def build_report(studies: list[Study], attack: Optional[str] = None, title: Optional[str] = None) -> Report:
    """Aggregate ``studies``, draw the figures and render the page (nothing is written)."""
    tables = build_tables(studies)
    multi = len(studies) > 1
    per_class = P.with_series(tables.per_class, multi)
    jobs = P.with_series(tables.jobs, multi)
    curves = P.with_series(tables.curves, multi)
    adv = P.with_series(tables.adv_predictions, multi)
    series = list(dict.fromkeys(
        [f"{st.label}: {m}" if multi else m for st in studies for m in tables.methods
         if any(j.method == m for j in st.jobs)]))
    palette = P.colors(series)
    attacks_present = attack_order(tables.jobs["attack"].unique()) if not tables.jobs.empty else []
    coverage = attack_coverage(studies, tables)
    common = [a for a in attacks_present if coverage[a]["complete"]]
    # Figures compare like with like: an attack only some jobs have is never picked for them.
    # The figures' attack: one that ran on every test image (PGD-20, else CW-20) unless asked for;
    # AutoAttack on a subset (500 images: ±7 points per class) only when it is all there is.
    robust = attack if attack in attacks_present else next((a for a in ("pgd20", "cw20") if a in common),
                                                             robust_attack(common))
    main_attacks = [a for a in ("clean", robust) if a in attacks_present]
    one_seed = bool(not tables.summary.empty and int(tables.summary["seeds"].max()) <= 1)

    sections: dict[str, list] = {"per_class": [], "tradeoff": [], "curves": [], "adv_pred": []}
    for dataset, ratio in P.panels(per_class):
        sections["per_class"].append(P.per_class_accuracy(per_class, main_attacks, dataset, ratio, palette,
                                                          images={a: coverage[a]["images"] for a in main_attacks}))
    sections["tradeoff"].append(P.tradeoff(jobs, robust, palette, images=coverage.get(robust, {}).get("images")))
    for dataset, ratio in P.panels(curves):
        sections["curves"].append(P.training_curves(curves, dataset, ratio, palette))
    for dataset, ratio in P.panels(adv):
        sections["adv_pred"].append(P.adv_prediction_heatmaps(adv, dataset, ratio, series))
        sections["adv_pred"].append(P.tail_share(adv, dataset, ratio, palette))
    sections = {k: [p for p in v if p is not None] for k, v in sections.items()}
    pairs = pair_sections(tables, per_class, main_attacks, palette, multi)
    ratios = ratio_sections(tables, coverage)
    from ltbench.report.verdict import sentence, verdicts
    from ltbench.report.warning_kinds import PAGE_ANCHOR, group_warnings

    answer = [{"v": v, "sentence": sentence(v)}
              for v in verdicts(tables.jobs, {a: c["images"] for a, c in coverage.items()})]
    warnings = warning_rows(studies)

    common, varying = config_summary(studies)
    counts = {s: sum(st.counts()[s] for st in studies) for s in ("done", "failed", "running", "pending")}
    context = {
        "title": title or "ltbench report: " + " vs ".join(st.label for st in studies),
        "generated": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "ltbench_version": __version__,
        "studies": [{"label": st.label, "path": str(st.root), "counts": st.counts(), "spec": spec_text(st.data)}
                    for st in studies],
        "multi": multi,
        "counts": counts,
        "jobs": job_rows(studies),
        "common_config": common,
        "varying_config": varying,
        "environment": env_summary(studies),
        "evaluation": evaluation_summary(studies),
        "attack_descriptions": attack_descriptions(studies),
        "code_versions": code_versions(studies),
        "tables": [t for t in tables.display if coverage[t.attack]["complete"]],
        "partial_tables": [t for t in tables.display if not coverage[t.attack]["complete"]],
        "coverage": coverage,
        "seeds_wording": seeds_wording(tables.display),
        "one_seed": one_seed,
        "differences": study_differences(studies) if multi else [],
        "per_class_tables": per_class_tables(per_class, main_attacks),
        "robust": robust,
        "sections": sections,
        "pairs": pairs,
        "ratios": ratios,
        "paired": paired_display(tables.paired),
        "cost": cost_rows(tables.cost),
        "cost_baseline": cost_baseline(),
        "warnings": warnings,
        "warning_groups": group_warnings(warnings),
        "warning_anchor": PAGE_ANCHOR,
        "answer": answer,
        "script": Markup(CHECK_IMAGES_JS),
        "csp": csp(CHECK_IMAGES_JS),
    }
    html = environment().get_template(TEMPLATE).render(**context)
    all_plots = [p for v in sections.values() for p in v] + [s.plot for s in pairs if s.plot is not None] \
        + [r["plot"] for r in ratios if r["plot"] is not None]
    return Report(html, tables, all_plots)


def write_report(report: Report, out: str | Path, plots_dir: Optional[str | Path] = None) -> Path:
    """Write the page atomically (and, if asked, every figure as a file under ``plots_dir``)."""
    path = write_text(Path(out), report.html)
    if plots_dir is not None:
        from ltbench.io import atomic_write

        for plot in report.plots:
            safe = re.sub(r"[^A-Za-z0-9_.+-]+", "_", plot.key)
            atomic_write(Path(plots_dir) / f"{safe}.{plot.ext}", lambda f, d=plot.data: f.write(d), mode="wb")
    return path
