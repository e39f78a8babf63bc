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
        for st in studies:
            c = st.counts()
            print(f"{st.label}: {c['done']} done, {c['failed']} failed, {c['running']} running, "
                  f"{c['pending']} pending")
            for job in st.jobs:
                if job.status != "done":
                    first = (job.error or "").strip().splitlines()
                    print(f"  {job.status:<8} {job.name}" + (f": {first[-1]}" if first else ""))
        print(f"tables: {', '.join(str(p) for p in written.values())}")
        print(f"report: {page}")
    sys.stdout.flush()
    return 0
