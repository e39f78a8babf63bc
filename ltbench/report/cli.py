"""``ltbench report STUDY [STUDY …]``: tables, figures and one self-contained HTML page.

One study: everything goes beside the study, into its folder: the tables (``per_class.csv``,
``summary.csv``, ``summary.md``, ``summary.tex`` …) and the page, ``<study>/report.html``.
Several studies are compared on one page (methods prefixed by their study), written with its tables
into ``<A>__vs__<B>/`` next to the first study (``<A>__vs__<B>/report.html``). ``--html FILE`` and
``--tables-dir DIR`` put them elsewhere. A study that is still running, or has failed jobs, is
reported as it stands: the page lists what is missing.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

from ltbench.study_folder import REPORT_PAGE


def add_arguments(p) -> None:
    p.add_argument("studies", nargs="+", metavar="STUDY", help="study folder(s); two or more are compared")
    p.add_argument("--html", "--out", dest="html", metavar="FILE",
                   help="HTML file to write (default: <study>/report.html; comparing: <A>__vs__<B>/report.html "
                        "next to the first study)")
    p.add_argument("--tables-dir", help="where to write the CSV / Markdown / LaTeX tables (default: the study "
                   "folder; comparing: the folder of the page)")
    p.add_argument("--plots-dir", help="also write every figure as a PNG/SVG file into this folder")
    p.add_argument("--attack", help="robust attack for the figures (default: the strongest that every finished job "
                   "was evaluated under: AutoAttack, else PGD-20, else CW-20; an attack only some jobs have is "
                   "shown only when asked for here)")
    p.add_argument("--title", help="page title")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip("._") or "study"


def compare_dir(paths: list[Path]) -> Path:
    """Where a comparison of several studies goes: ``<A>__vs__<B>`` next to the first study."""
    from ltbench.report.aggregate import study_labels

    name = "__vs__".join(_safe(label.replace("/", "_")) for label in study_labels(paths))
    return Path(paths[0]).parent / name


def default_page(paths: list[Path]) -> Path:
    """The page ``ltbench report`` writes without ``--html``: beside the study (see the docstring)."""
    return Path(paths[0]) / REPORT_PAGE if len(paths) == 1 else compare_dir(paths) / REPORT_PAGE


SHOW_FAILED = 5  # failed jobs named in the summary; `ltbench status` lists them all


def summary(studies, paths: list[Path], written: dict[str, Path], page: Path) -> str:
    """What ``ltbench report`` prints: per study its jobs by state and its first failed jobs with
    their last error line, where the tables went, and the page's path."""
    lines = []
    for st, path in zip(studies, paths):
        c = st.counts()
        line = f"{st.label}: {c['done']} done, {c['failed']} failed, {c['running']} running, {c['pending']} pending"
        if c["done"] < sum(c.values()):
            line += f" (`ltbench status {path}` lists them)"
        lines.append(line)
        failed = [job for job in st.jobs if job.status == "failed"]
        for job in failed[:SHOW_FAILED]:
            last = (job.error or "").strip().splitlines()
            lines.append(f"  failed {job.name}" + (f": {last[-1]}" if last else ""))
        if len(failed) > SHOW_FAILED:
            lines.append(f"  … and {len(failed) - SHOW_FAILED} more failed")
    folders = sorted({str(p.parent) for p in written.values()})
    first = [n for n in ("summary.md", "paired.md") if n in written]
    lines.append(f"tables: {len(written)} files in {', '.join(folders)}"
                 + (f" (read {' and '.join(first)} first)" if first else ""))
    lines.append(f"report: {page}")
    return "\n".join(lines)


def main(args) -> int:
    from ltbench.report.aggregate import load_study, study_labels, write_tables
    from ltbench.report.html import build_report, write_report

    paths = [Path(s) for s in args.studies]
    labels = study_labels(paths)
    studies = [load_study(p, label) for p, label in zip(paths, labels)]
    out = Path(args.html) if args.html else default_page(paths)
    tables_dir = Path(args.tables_dir) if args.tables_dir else (paths[0] if len(paths) == 1 else out.parent)

    report = build_report(studies, attack=args.attack, title=args.title)
    written = write_tables(report.tables, tables_dir)
    page = write_report(report, out, args.plots_dir)
    if not args.quiet:
        print(summary(studies, paths, written, page))
    sys.stdout.flush()
    return 0
