"""Read a study folder into tidy pandas tables and summary tables (CSV, Parquet, Markdown, LaTeX).

A study folder holds ``study.json`` (the grid; optional here) and one sub-folder per job, named
``<method>__<dataset>__r<ratio>__s<seed>`` (:mod:`ltbench.study_folder` owns the names and the file
formats). A job folder is in one of four states (:class:`~ltbench.study_folder.JobState`):

* **done** — it has ``result.json`` (written atomically, last, by the engine);
* **failed** — it has ``failed.json`` and/or ``error.txt`` (the runner's record of the error);
* **running** — a process holds the job's lock (:func:`ltbench.runner.study.job_status`, the
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

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import pandas as pd

from ltbench import study_folder as sf
from ltbench.errors import LtbenchError
from ltbench.io import write_text
from ltbench.study_folder import ERROR_FILES, STUDY as STUDY_FILE, JobState, is_job_dir, parse_job_name  # noqa: F401

GROUPS = ("overall", "head", "medium", "tail", "worst")
GROUP_LABELS = {"overall": "Overall", "head": "Head", "medium": "Medium", "tail": "Tail", "worst": "Worst"}
# Pairs of methods shown side by side when both are present (DESIGN.md: REAT as written vs as coded).
SIDE_BY_SIDE = (("reat", "reat-official"),)


# ------------------------------------------------------------------------------------------------
# Names


def attack_label(name: str) -> str:
    """Display name of an attack key: ``pgd20`` → ``PGD-20``, ``cw20`` → ``CW-20``, ``aa`` → ``AutoAttack``."""
    if name == "clean":
        return "Clean"
    if name in ("aa", "autoattack"):
        return "AutoAttack"
    m = re.fullmatch(r"([a-z]+?)(\d+)", name)
    if m:
        return f"{m.group(1).upper()}-{m.group(2)}"
    return name.upper() if name.isalpha() and len(name) <= 6 else name


def attack_order(attacks: Iterable[str]) -> list[str]:
    """Clean, then PGD, CW, AutoAttack (each by step count: PGD-20 before PGD-100), then the rest."""
    family = {"clean": 0, "pgd": 1, "cw": 2, "aa": 3, "autoattack": 3}

    def key(name: str):
        m = re.fullmatch(r"([a-z]+?)(\d*)", name)
        stem, steps = (m.group(1), int(m.group(2) or 0)) if m else (name, 0)
        return family.get(stem if stem in family else name, 4), steps, name

    return sorted(set(attacks), key=key)


def robust_attack(attacks: Iterable[str]) -> Optional[str]:
    """The strongest robust attack present: AutoAttack, else PGD-20, else CW-20, else any other."""
    attacks = list(attacks)
    for a in ("aa", "autoattack", "pgd20", "cw20"):
        if a in attacks:
            return a
    others = [a for a in attack_order(attacks) if a != "clean"]
    return others[0] if others else None


def class_groups(class_counts: list[int]) -> dict[str, list[int]]:
    """Head / medium / tail class indices by training count (stable for ties).

    The same rule as :func:`ltbench.metrics.class_groups` (DESIGN.md), repeated here so that
    reading results does not import torch; a test checks that both agree.
    """
    order = sorted(range(len(class_counts)), key=lambda c: (-class_counts[c], c))
    k = len(order) // 3
    return {"head": order[:k], "medium": order[k:len(order) - k], "tail": order[len(order) - k:]}


def head_to_tail(class_counts: list[int]) -> list[int]:
    """Class indices ordered by training count, most first (ties by index)."""
    return sorted(range(len(class_counts)), key=lambda c: (-class_counts[c], c))


# ------------------------------------------------------------------------------------------------
# Reading a study


@dataclass
class Job:
    """One job folder of a study and what could be read from it."""

    name: str
    path: Optional[Path]
    status: JobState
    config: dict = field(default_factory=dict)
    result: Optional[dict] = None
    metrics: list = field(default_factory=list)
    error: Optional[str] = None
    study: str = ""
    detail: str = ""  # progress of a running job, how far an interrupted one got
    split_counts: Optional[list] = None  # class counts from lt_indices.json (read for unfinished jobs)

    def _field(self, key: str, default=None):
        for source in ((self.result or {}).get("config") or {}, self.config):
            if key in source and source[key] is not None:
                return source[key]
        parts = parse_job_name(self.name)
        if parts is not None and key in parts._fields:
            return getattr(parts, key)
        return default

    @property
    def method(self) -> str:
        """The method as the study names it: its label (``reat+no-tail``) or its registered name."""
        return str(self._field("label") or self._field("method", "?"))

    @property
    def dataset(self) -> str:
        return str(self._field("dataset", "?"))

    @property
    def ratio(self) -> float:
        try:
            return float(self._field("ratio", math.nan))
        except (TypeError, ValueError):
            return math.nan

    @property
    def seed(self) -> int:
        try:
            return int(self._field("seed", -1))
        except (TypeError, ValueError):
            return -1

    @property
    def epochs(self) -> Optional[int]:
        value = self._field("epochs")
        return int(value) if isinstance(value, (int, float)) else None

    @property
    def train_counts(self) -> list[int]:
        """Training images per class: from ``result.json``, else from the saved split."""
        counts = ((self.result or {}).get("dataset") or {}).get("train_counts") or self.split_counts
        return [int(c) for c in counts or []]

    @property
    def class_names(self) -> list[str]:
        return [str(n) for n in ((self.result or {}).get("dataset") or {}).get("class_names") or []]

    @property
    def warnings(self) -> list[str]:
        """Gradient-masking (and other) warnings recorded in ``result.json``, as strings."""
        out = []
        for w in (self.result or {}).get("warnings") or []:
            if isinstance(w, dict):
                w = w.get("message") or json.dumps(w, sort_keys=True)
            out.append(str(w))
        return out


@dataclass
class StudyView:
    """What the report read of a study folder at one moment: its ``study.json`` (``spec``, may be
    empty or absent) and a :class:`Job` record per job, in grid order.

    A read-only view: :class:`ltbench.runner.study.Study` is the study itself (it creates and
    extends ``study.json`` under the study lock, and gives each job's configuration and state);
    this view also reads folders without a ``study.json`` and jobs' results, curves and errors."""

    path: Path
    label: str
    spec: dict
    jobs: list

    def by_status(self, status: str) -> list:
        return [j for j in self.jobs if j.status == status]

    @property
    def done(self) -> list:
        return self.by_status(JobState.DONE)

    def counts(self) -> dict[str, int]:
        return {s.value: len(self.by_status(s)) for s in (JobState.DONE, JobState.FAILED, JobState.RUNNING, JobState.PENDING)}


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def read_error(job_dir: Path) -> Optional[str]:
    """The text of a failed job's error record(s) (``failed.json`` and/or ``error.txt``), or None.

    ``failed.json`` may hold any JSON object; its one-line ``error`` comes first, then the other
    fields as ``key: value`` lines, then the ``traceback``. ``error.txt`` is added unless it only
    repeats that traceback (the runner writes both).
    """
    parts: list[str] = []
    shown_traceback = ""
    failed, error_txt = (job_dir / n for n in ERROR_FILES)
    if failed.is_file():
        try:
            text = failed.read_text(errors="replace")
        except OSError as exc:
            text = f"{failed.name}: unreadable ({exc})"
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict):
            rest = dict(data)
            lines = [str(rest.pop(k)) for k in ("error", "message") if rest.get(k)]
            tb = rest.pop("traceback", None)
            lines += [f"{k}: {v if isinstance(v, str) else json.dumps(v)}" for k, v in rest.items() if v is not None]
            if tb:
                shown_traceback = tb if isinstance(tb, str) else json.dumps(tb, indent=2)
                lines += ["", shown_traceback.rstrip("\n")]
            text = "\n".join(lines)
        parts.append(text.rstrip("\n") or f"({failed.name} is empty)")
    if error_txt.is_file():
        try:
            text = error_txt.read_text(errors="replace")
        except OSError as exc:
            text = f"{error_txt.name}: unreadable ({exc})"
        if not shown_traceback or text.strip() != shown_traceback.strip():
            parts.append(text.rstrip("\n") or f"({error_txt.name} is empty)")
    return "\n\n".join(parts) if parts else None


def read_job(job_dir: Path, study: str = "", config: Optional[dict] = None) -> Job:
    """Read one job folder (``config``: its configuration from ``study.json``, used when the folder
    has no ``config.json`` yet). A ``result.json`` that cannot be parsed makes the job *failed*."""
    job = Job(name=job_dir.name, path=job_dir, status=JobState.RUNNING, study=study,
              config=dict(config) if isinstance(config, dict) else {})
    loaded = sf.read_config(job_dir)  # None when missing or damaged: the study.json copy stays
    if loaded is not None:
        job.config = loaded
    job.metrics.extend(sf.read_metrics(job_dir))  # a torn last line, a damaged file: skipped
    if (job_dir / sf.RESULT).is_file():
        try:
            job.result, job.status = sf.load_result(job_dir), JobState.DONE
            return job
        except ValueError as exc:
            job.status, job.error = JobState.FAILED, f"{sf.RESULT} is unreadable: {exc}"
    job.split_counts = sf.read_split_counts(job_dir)
    error = read_error(job_dir)
    if error is not None and not _locked(job_dir):
        job.status = JobState.FAILED
        job.error = error if job.error is None else f"{job.error}\n\n{error}"
        return job
    if job.status != JobState.FAILED:
        job.status, job.detail = _runner_status(job_dir, job.epochs)
    return job


def _locked(job_dir: Path) -> bool:
    from ltbench.runner.job import is_locked

    return is_locked(job_dir)


def _runner_status(job_dir: Path, epochs: Optional[int]) -> tuple[str, str]:
    """running / pending and the detail line for an unfinished job, as ``ltbench status`` says."""
    from ltbench.runner.study import job_status

    st = job_status(job_dir, epochs)
    return (st.state if st.state in (JobState.RUNNING, JobState.PENDING) else JobState.PENDING), st.detail or "not started"


def expected_job_names(spec: dict) -> list[str]:
    """Job folder names a ``study.json`` announces, in grid order (empty if it does not say).

    Understands a ``jobs`` list (names, or dicts with ``name``/``job_name``, or job configs) and a
    grid (``methods``, ``datasets``, ``ratios``, ``seeds`` at the top level or under
    ``grid``/``spec``).
    """
    def name_of(cfg: dict) -> Optional[str]:
        for key in ("name", "job_name", "job"):
            if isinstance(cfg.get(key), str):
                return cfg[key]
        cfg = cfg.get("config", cfg)
        try:
            return sf.job_name(cfg.get('label') or cfg['method'], cfg['dataset'], cfg['ratio'], cfg['seed'])
        except (KeyError, TypeError, ValueError):
            return None

    if not isinstance(spec, dict):
        return []
    jobs = spec.get("jobs")
    if isinstance(jobs, dict):
        jobs = list(jobs)
    if isinstance(jobs, list):
        names = [j if isinstance(j, str) else name_of(j) if isinstance(j, dict) else None for j in jobs]
        return [n for n in names if n]
    for grid in (spec, spec.get("grid"), spec.get("spec")):
        if isinstance(grid, dict) and all(isinstance(grid.get(k), list) for k in ("methods", "datasets", "ratios", "seeds")):
            try:
                return [sf.job_name(m, d, r, s) for m in grid["methods"] for d in grid["datasets"]
                        for r in grid["ratios"] for s in grid["seeds"]]
            except (TypeError, ValueError):
                return []
    return []


def load_study(path: str | Path, label: Optional[str] = None) -> StudyView:
    """Read a study folder: ``study.json`` if present, every job folder, and the announced jobs
    that have no folder yet (*pending*). Raises :class:`LtbenchError` if ``path`` is not a study."""
    path = Path(path)
    if not path.is_dir():
        raise LtbenchError(f"study folder {path} does not exist" if not path.exists()
                           else f"{path} is not a folder (expected a study folder)")
    label = label or path.resolve().name
    spec: dict = {}
    spec_path = path / STUDY_FILE
    if spec_path.is_file():
        try:
            loaded = _read_json(spec_path)
            spec = loaded if isinstance(loaded, dict) else {"study": loaded}
        except ValueError as exc:
            spec = {"error": f"{STUDY_FILE} is unreadable: {exc}"}
    configs = spec.get("jobs") if isinstance(spec.get("jobs"), dict) else {}
    found = {p.name: read_job(p, label, configs.get(p.name)) for p in sorted(path.iterdir()) if is_job_dir(p)}
    if not found and not spec_path.is_file():
        raise LtbenchError(f"{path} is not a study folder: no {STUDY_FILE} and no job folders "
                           f"(named like reat__cifar10__r0.01__s0) in it")
    expected = expected_job_names(spec)
    jobs = [found.pop(n) if n in found else Job(name=n, path=None, status=JobState.PENDING, study=label,
                                                config=dict(configs.get(n) or {}), detail="not started")
            for n in dict.fromkeys(expected)]
    jobs += list(found.values())
    return StudyView(path=path, label=label, spec=spec, jobs=jobs)


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


def method_order(studies: list[StudyView]) -> list[str]:
    """Methods in the order the study grids list them, then the rest alphabetically."""
    order: list[str] = []
    for st in studies:
        for grid in (st.spec, st.spec.get("grid"), st.spec.get("spec")):
            if isinstance(grid, dict) and isinstance(grid.get("methods"), list):
                order += [str(m) for m in grid["methods"]]
    seen = [j.method for st in studies for j in st.jobs]
    order += sorted(set(seen) - set(order))
    return [m for m in dict.fromkeys(order) if m in seen]


def per_class_table(studies: list[StudyView]) -> pd.DataFrame:
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


def job_table(studies: list[StudyView]) -> pd.DataFrame:
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


def curves_table(studies: list[StudyView]) -> pd.DataFrame:
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


def adv_prediction_table(studies: list[StudyView]) -> pd.DataFrame:
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


def build_tables(studies: list[StudyView]) -> Tables:
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
    when the study has a baseline to pair with, ``paired.csv``, ``cost.csv`` and ``paired.md`` into
    ``out_dir``, each atomically; returns file name → path."""
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
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return written
    from ltbench.io import atomic_write

    written["per_class.parquet"] = atomic_write(out_dir / "per_class.parquet",
                                                lambda f: tables.per_class.to_parquet(f, index=False), mode="wb")
    return written
