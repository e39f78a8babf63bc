"""Read a study folder (:meth:`ltbench.study.study.Study.read`) into tidy pandas tables and summary
tables (CSV, Parquet, Markdown, LaTeX).

A study folder holds ``study.json`` (the grid; optional here) and one sub-folder per job, named
``<method>__<dataset>__r<ratio>__s<seed>`` (:mod:`ltbench.study_folder` owns the names and the file
formats). A job folder is in one of four states (:class:`~ltbench.study_folder.JobState`):

* **done** — it has ``result.json`` (written atomically, last, by the engine);
* **failed** — it has ``failed.json`` and/or ``error.txt`` (the runner's record of the error);
* **running** — a process holds the job's lock (:func:`ltbench.study.job_state.job_status`, the
  same rule as ``ltbench status``);
* **pending** — not started (listed in ``study.json`` only), or interrupted (the detail says
  after how many epochs).

Tables (all accuracies are fractions in [0, 1]):

* :func:`per_class_table` — the tidy table: one row per finished job × attack × class;
* :func:`job_table` — one row per finished job × attack: overall, head, medium, tail, worst, std;
* :func:`summary_table` — per study × method × dataset × ratio × attack: mean and sample std over
  seeds of each of overall / head / medium / tail / worst, with the seed count.

:func:`display_tables` turns the summary into one table per attack with formatted cells and the
best entry of each column (within one dataset × ratio block) marked; :func:`to_markdown` and
:func:`to_latex` render those.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pandas as pd

from ltbench.attack_names import attack_label, attack_order
from ltbench.groups import GROUP_LABELS, GROUPS, class_groups, head_to_tail
from ltbench.io import write_text
from ltbench.study.study import Study



# ------------------------------------------------------------------------------------------------
# Reading a study


def load_study(path: str | Path, label: Optional[str] = None) -> Study:
    """Read a study folder for the report (:meth:`ltbench.study.study.Study.read`)."""
    return Study.read(path, label)


def study_labels(paths: list[Path]) -> list[str]:
    """Short, distinct labels for studies: folder names, with parents added where they clash."""
    paths = [Path(p).resolve() for p in paths]
    depth = 1
    while True:
        labels = ["/".join(p.parts[-depth:]) for p in paths]
        if len(set(labels)) == len(labels) or depth >= max(len(p.parts) for p in paths):
            return labels
        depth += 1


# ------------------------------------------------------------------------------------------------
# Tables


def method_order(studies: list[Study]) -> list[str]:
    """Methods in the order the study grids list them, then the rest alphabetically."""
    order: list[str] = []
    for st in studies:
        for grid in (st.data, st.data.get("grid"), st.data.get("spec")):
            if isinstance(grid, dict) and isinstance(grid.get("methods"), list):
                order += [str(m) for m in grid["methods"]]
    seen = [j.method for st in studies for j in st.jobs]
    order += sorted(set(seen) - set(order))
    return [m for m in dict.fromkeys(order) if m in seen]


def per_class_table(studies: list[Study]) -> pd.DataFrame:
    """The tidy table: one row per finished job × attack × class.

    Columns: study, job, method, dataset, ratio, seed, attack, class_index, class_name,
    train_count, rank (0 = most training samples), group (head/medium/tail), accuracy.
    """
    rows = []
    for st in studies:
        for job in st.done:
            ds = job.result.get("dataset") or {}
            counts = list(ds.get("train_counts") or [])
            for attack, rec in job.result["metrics"].items():
                per_class = list((rec or {}).get("per_class") or [])
                if not counts:
                    counts = [0] * len(per_class)
                names = list(ds.get("class_names") or [str(c) for c in range(len(per_class))])
                names += [str(c) for c in range(len(names), len(per_class))]
                group_of = {c: g for g, idx in class_groups(counts).items() for c in idx}
                rank = {c: r for r, c in enumerate(head_to_tail(counts))}
                for c, acc in enumerate(per_class):
                    rows.append({
                        "study": st.label, "job": job.name, "method": job.method, "dataset": job.dataset,
                        "ratio": job.ratio, "seed": job.seed, "attack": attack, "class_index": c,
                        "class_name": str(names[c]), "train_count": int(counts[c]) if c < len(counts) else 0,
                        "rank": rank.get(c, c), "group": group_of.get(c, ""),
                        "accuracy": float(acc) if acc is not None else math.nan,
                    })
    columns = ["study", "job", "method", "dataset", "ratio", "seed", "attack", "class_index", "class_name",
               "train_count", "rank", "group", "accuracy"]
    return pd.DataFrame(rows, columns=columns)


def _num(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def job_table(studies: list[Study]) -> pd.DataFrame:
    """One row per finished job × attack: overall, head, medium, tail, worst, per_class_std, n."""
    rows = []
    for st in studies:
        for job in st.done:
            for attack, rec in job.result["metrics"].items():
                rec = rec or {}
                rows.append({"study": st.label, "job": job.name, "method": job.method, "dataset": job.dataset,
                             "ratio": job.ratio, "seed": job.seed, "attack": attack,
                             **{g: _num(rec.get(g)) for g in GROUPS},
                             "per_class_std": _num(rec.get("per_class_std")), "n": rec.get("n")})
    columns = ["study", "job", "method", "dataset", "ratio", "seed", "attack", *GROUPS, "per_class_std", "n"]
    return pd.DataFrame(rows, columns=columns)


def curves_table(studies: list[Study]) -> pd.DataFrame:
    """One row per job × epoch of ``metrics.jsonl`` (finished, running and failed jobs alike)."""
    rows = []
    for st in studies:
        for job in st.jobs:
            for rec in job.metrics:
                rows.append({"study": st.label, "job": job.name, "status": str(job.status), "method": job.method,
                             "dataset": job.dataset, "ratio": job.ratio, "seed": job.seed,
                             "epoch": int(rec.get("epoch", 0)),
                             **{k: _num(rec.get(k)) for k in ("loss", "train_adv_acc", "lr", "time_s",
                                                                "images_per_s")}})
    columns = ["study", "job", "status", "method", "dataset", "ratio", "seed", "epoch", "loss", "train_adv_acc",
               "lr", "time_s", "images_per_s"]
    return pd.DataFrame(rows, columns=columns)


def adv_prediction_table(studies: list[Study]) -> pd.DataFrame:
    """Labels predicted on the training AEs: one row per job × epoch × class.

    Columns: study, job, method, dataset, ratio, seed, epoch, class_index, count, fraction (of
    that epoch's AEs), train_count, rank (0 = most training samples), group.
    """
    rows = []
    for st in studies:
        for job in st.jobs:
            counts = job.train_counts
            for rec in job.metrics:
                hist = rec.get("adv_pred_hist")
                if not isinstance(hist, list) or not hist:
                    continue
                cc = counts if len(counts) == len(hist) else [0] * len(hist)
                group_of = {c: g for g, idx in class_groups(cc).items() for c in idx}
                rank = {c: r for r, c in enumerate(head_to_tail(cc))}
                total = float(sum(hist)) or 1.0
                for c, n in enumerate(hist):
                    rows.append({"study": st.label, "job": job.name, "method": job.method, "dataset": job.dataset,
                                 "ratio": job.ratio, "seed": job.seed, "epoch": int(rec.get("epoch", 0)),
                                 "class_index": c, "count": int(n), "fraction": n / total,
                                 "train_count": int(cc[c]), "rank": rank[c], "group": group_of[c]})
    columns = ["study", "job", "method", "dataset", "ratio", "seed", "epoch", "class_index", "count", "fraction",
               "train_count", "rank", "group"]
    return pd.DataFrame(rows, columns=columns)


KEYS = ["study", "method", "dataset", "ratio", "attack"]


def summary_table(jobs: pd.DataFrame, methods: Optional[list[str]] = None) -> pd.DataFrame:
    """Mean and sample standard deviation (ddof 1; NaN for one seed) over seeds, with the count.

    Columns: study, method, dataset, ratio, attack, seeds, then ``<g>_mean`` and ``<g>_std`` for
    g in overall, head, medium, tail, worst, then ``images``: the number of test images each value
    was measured on (the jobs' ``n``; ``"100–1000"`` when the seeds differ). Rows in study, method
    (grid order), dataset, ratio, attack (standard order) order.
    """
    columns = KEYS + ["seeds"] + [f"{g}_{s}" for g in GROUPS for s in ("mean", "std")] + ["images"]
    if jobs.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for key, grp in jobs.groupby(KEYS, sort=False, dropna=False):
        row = dict(zip(KEYS, key))
        row["seeds"] = int(grp["seed"].nunique())
        for g in GROUPS:
            vals = grp[g].astype(float)
            row[f"{g}_mean"] = float(vals.mean())
            row[f"{g}_std"] = float(vals.std(ddof=1)) if vals.notna().sum() > 1 else math.nan
        row["images"] = images_text(grp["n"])
        rows.append(row)
    out = pd.DataFrame(rows, columns=columns)
    m_order = {m: i for i, m in enumerate(methods or sorted(out["method"].unique()))}
    a_order = {a: i for i, a in enumerate(attack_order(out["attack"].unique()))}
    s_order = {s: i for i, s in enumerate(dict.fromkeys(jobs["study"]))}
    out = out.sort_values(["study", "method", "dataset", "ratio", "attack"],
                          key=lambda col: col.map(s_order) if col.name == "study" else
                          col.map(m_order).fillna(len(m_order)) if col.name == "method" else
                          col.map(a_order) if col.name == "attack" else col, kind="stable")
    return out.reset_index(drop=True)


def images_text(ns) -> str:
    """The number of test images behind a value: ``1000``, ``100–1000`` when jobs differ, ``?``."""
    vals = sorted({int(n) for n in ns if isinstance(n, (int, float)) and math.isfinite(n)})
    if not vals:
        return "?"
    return str(vals[0]) if len(vals) == 1 else f"{vals[0]}–{vals[-1]}"


# ------------------------------------------------------------------------------------------------
# Display tables (shared by HTML, Markdown and LaTeX)


def fmt_pct(value: float) -> str:
    """A fraction as a percentage with one decimal (``0.4531`` → ``45.3``); NaN → ``–``."""
    return "–" if value is None or not math.isfinite(value) else f"{100 * value:.1f}"


def fmt_cell(mean: float, std: float) -> str:
    """``45.3 ± 1.2`` (the ± part only when there is a std, i.e. at least two seeds)."""
    if std is not None and math.isfinite(std) and mean is not None and math.isfinite(mean):
        return f"{fmt_pct(mean)} ± {fmt_pct(std)}"
    return fmt_pct(mean)


@dataclass
class Cell:
    """One summary value: mean and std over seeds, its text, and whether it is the column's best
    (``best``: ahead of every other row by more than the seed spread) or tied for the top
    (``tied``: the highest mean, or within the seed spread of it, when no row is clearly ahead)."""

    mean: float
    std: float
    text: str
    best: bool = False
    tied: bool = False


@dataclass
class Row:
    study: str
    method: str
    dataset: str
    ratio: float
    seeds: int
    cells: list  # one Cell per group in GROUPS
    block_start: bool = False  # first row of a new dataset × ratio block
    images: str = ""  # test images each value was measured on (see images_text)

    @property
    def ratio_text(self) -> str:
        return f"{self.ratio:g}"


@dataclass
class DisplayTable:
    """One attack's summary: rows method × dataset × ratio (× study), columns GROUPS."""

    attack: str
    label: str
    rows: list
    show_study: bool

    @property
    def columns(self) -> list[str]:
        return [GROUP_LABELS[g] for g in GROUPS]


def mark_best(cells: list) -> None:
    """Flag the best of ``cells`` (one column of one dataset × ratio block), honestly.

    The top mean is ``best`` only when it beats every other mean by more than the seed spread —
    the larger sample std of the two (none is known with one seed: then the means alone decide).
    Otherwise the top mean and every mean within the spread of it are ``tied``. Means and stds
    compare as shown (one decimal), so a reader can check every mark; nothing is marked when all
    the means look equal.
    """
    cells = [c for c in cells if c.mean is not None and math.isfinite(c.mean)]
    if len(cells) < 2:
        return
    shown = {id(c): float(fmt_pct(c.mean)) for c in cells}
    top = max(shown.values())
    if all(v == top for v in shown.values()):
        return  # nothing to single out

    def spread(a, b) -> float:
        stds = [float(fmt_pct(x.std)) for x in (a, b) if x.std is not None and math.isfinite(x.std)]
        return max(stds) if stds else 0.0

    leaders = [c for c in cells if shown[id(c)] == top]
    close = [c for c in cells if shown[id(c)] < top and any(top - shown[id(c)] <= spread(lead, c) for lead in leaders)]
    if len(leaders) == 1 and not close:
        leaders[0].best = True
    else:
        for c in leaders + close:
            c.tied = True


def display_tables(summary: pd.DataFrame) -> list[DisplayTable]:
    """One :class:`DisplayTable` per attack; in every dataset × ratio block with at least two rows
    each column's best is marked by :func:`mark_best` (``best`` or ``tied``)."""
    tables = []
    if summary.empty:
        return tables
    show_study = summary["study"].nunique() > 1
    for attack in attack_order(summary["attack"].unique()):
        sub = summary[summary["attack"] == attack]
        sub = sub.sort_values(["dataset", "ratio"], kind="stable")
        rows, prev = [], None
        for _, r in sub.iterrows():
            cells = [Cell(r[f"{g}_mean"], r[f"{g}_std"], fmt_cell(r[f"{g}_mean"], r[f"{g}_std"])) for g in GROUPS]
            block = (r["dataset"], r["ratio"])
            rows.append(Row(r["study"], r["method"], r["dataset"], float(r["ratio"]), int(r["seeds"]), cells,
                            block_start=prev is not None and block != prev, images=str(r.get("images", ""))))
            prev = block
        for block in {(row.dataset, row.ratio) for row in rows}:
            members = [row for row in rows if (row.dataset, row.ratio) == block]
            if len(members) < 2:
                continue
            for i in range(len(GROUPS)):
                mark_best([row.cells[i] for row in members])
        tables.append(DisplayTable(attack, attack_label(attack), rows, show_study))
    return tables


def _md_escape(text: str) -> str:
    return (str(text).replace("\\", "\\\\").replace("|", "\\|").replace("&", "&amp;")
            .replace("<", "&lt;").replace(">", "&gt;").replace("*", "\\*").replace("_", "\\_"))


def seeds_wording(tables: list[DisplayTable]) -> str:
    """``mean ± std over seeds`` — or ``one seed, no spread`` when no row has two seeds."""
    if any(r.seeds > 1 for t in tables for r in t.rows):
        return "mean ± std over seeds"
    return "one seed per row, no spread over seeds"


def to_markdown(tables: list[DisplayTable]) -> str:
    """GitHub-flavoured Markdown: one table per attack, a clear best in **bold**, tied tops marked ≈."""
    out = [f"# Summary (accuracy %, {seeds_wording(tables)})", "",
           "**Bold**: ahead of every other row by more than the seed spread; ≈: tied for the top within "
           "the seed spread. Images: test images each value was measured on.", ""]
    for t in tables:
        head = (["Study"] if t.show_study else []) + ["Method", "Dataset", "Ratio"] + t.columns + ["Seeds", "Images"]
        out += [f"## {t.label}", "", "| " + " | ".join(head) + " |",
                "|" + "|".join(":--" if i < len(head) - len(t.columns) - 2 else "--:" for i in range(len(head))) + "|"]
        for r in t.rows:
            keys = ([r.study] if t.show_study else []) + [r.method, r.dataset, r.ratio_text]
            vals = [f"**{c.text}**" if c.best else f"≈ {c.text}" if c.tied else c.text for c in r.cells]
            out.append("| " + " | ".join([_md_escape(k) for k in keys] + vals + [str(r.seeds), r.images]) + " |")
        out.append("")
    return "\n".join(out)


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "<": r"\textless{}", ">": r"\textgreater{}"}


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters in plain text."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def to_latex(tables: list[DisplayTable]) -> str:
    """One ``booktabs`` table per attack (needs ``\\usepackage{booktabs}``), best entries bold."""
    out = ["% ltbench summary tables; needs \\usepackage{booktabs}", ""]
    for t in tables:
        n_keys = 4 if t.show_study else 3
        head = (["Study"] if t.show_study else []) + ["Method", "Dataset", "Ratio"] + t.columns + ["Seeds", "Images"]
        wording = latex_escape(seeds_wording(tables)).replace("±", r"$\pm$")
        out += [r"\begin{table}[t]", r"\centering",
                rf"\caption{{{latex_escape(t.label)} accuracy (\%), {wording}; bold: ahead by more than the "
                r"seed spread.}",
                r"\begin{tabular}{" + "l" * n_keys + "r" * (len(t.columns) + 2) + "}", r"\toprule",
                " & ".join(latex_escape(h) for h in head) + r" \\", r"\midrule"]
        for r in t.rows:
            if r.block_start:
                out.append(r"\midrule")
            keys = ([r.study] if t.show_study else []) + [r.method, r.dataset, r.ratio_text]
            vals = [c.text.replace(" ± ", r" $\pm$ ").replace("–", "--") for c in r.cells]
            vals = [rf"\textbf{{{v}}}" if c.best else v for v, c in zip(vals, r.cells)]
            out.append(" & ".join([latex_escape(k) for k in keys] + vals + [str(r.seeds), latex_escape(r.images)
                                                                             .replace("–", "--")]) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------
# Writing


@dataclass
class Tables:
    """Everything tabular a report needs, computed once."""

    per_class: pd.DataFrame
    jobs: pd.DataFrame
    summary: pd.DataFrame
    display: list
    methods: list
    curves: pd.DataFrame
    adv_predictions: pd.DataFrame
    paired: pd.DataFrame = field(default_factory=pd.DataFrame)  # ltbench.report.paired.paired_table
    cost: pd.DataFrame = field(default_factory=pd.DataFrame)    # ltbench.report.paired.cost_table


def build_tables(studies: list[Study]) -> Tables:
    """All tables of :mod:`ltbench.report.aggregate` for one or more studies."""
    from ltbench.report.paired import cost_table, paired_table

    methods = method_order(studies)
    jobs = job_table(studies)
    summary = summary_table(jobs, methods)
    curves = curves_table(studies)
    return Tables(per_class_table(studies), jobs, summary, display_tables(summary), methods,
                  curves, adv_prediction_table(studies), paired_table(jobs, methods=methods),
                  cost_table(curves, done_jobs=jobs))


def _csv(df: pd.DataFrame) -> str:
    """Full float precision, so the CSV reproduces exactly the numbers the page rounds."""
    return df.to_csv(index=False, lineterminator="\n")


def write_tables(tables: Tables, out_dir: str | Path) -> dict[str, Path]:
    """Write ``per_class.csv`` (+ ``.parquet`` when pyarrow is importable), ``jobs.csv``,
    ``summary.csv``, ``training.csv``, ``adv_predictions.csv``, ``summary.md``, ``summary.tex`` and,
    when the study has a baseline to pair with, ``paired.csv``, ``cost.csv`` and ``paired.md``, and
    when a dataset is measured at several imbalance ratios, ``ratios.md``
    (:mod:`ltbench.report.ratios`) into ``out_dir``, each atomically; returns file name → path."""
    out_dir = Path(out_dir)
    written = {
        "per_class.csv": write_text(out_dir / "per_class.csv", _csv(tables.per_class)),
        "jobs.csv": write_text(out_dir / "jobs.csv", _csv(tables.jobs)),
        "summary.csv": write_text(out_dir / "summary.csv", _csv(tables.summary)),
        "training.csv": write_text(out_dir / "training.csv", _csv(tables.curves)),
        "adv_predictions.csv": write_text(out_dir / "adv_predictions.csv", _csv(tables.adv_predictions)),
        "summary.md": write_text(out_dir / "summary.md", to_markdown(tables.display)),
        "summary.tex": write_text(out_dir / "summary.tex", to_latex(tables.display)),
    }
    if not tables.paired.empty or not tables.cost.empty:
        from ltbench.report.paired import paired_display, paired_markdown

        written["paired.csv"] = write_text(out_dir / "paired.csv", _csv(tables.paired))
        written["cost.csv"] = write_text(out_dir / "cost.csv", _csv(tables.cost))
        written["paired.md"] = write_text(out_dir / "paired.md",
                                          paired_markdown(paired_display(tables.paired), tables.cost))
    from ltbench.report.ratios import ratios_markdown, sweep_datasets

    if sweep_datasets(tables.summary):  # a dataset at two or more ratios: the verdicts along the ratios
        written["ratios.md"] = write_text(out_dir / "ratios.md", ratios_markdown(tables.paired, tables.summary, tables.jobs))
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return written
    from ltbench.io import atomic_write

    written["per_class.parquet"] = atomic_write(out_dir / "per_class.parquet",
                                                lambda f: tables.per_class.to_parquet(f, index=False), mode="wb")
    return written
