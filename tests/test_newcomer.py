"""What a newcomer meets first: `dir(ltbench)`, `ltbench list methods` in 100 columns with the
modifiers' parameters and the ablation flags, `ltbench status` without a study, `ltbench report`'s
short summary, and the README's and docs/results.md's links."""
import re
from pathlib import Path

from ltbench.cli import main as cli_main

ROOT = Path(__file__).resolve().parent.parent


def test_dir_lists_the_api():
    import ltbench

    assert {"load_study", "load_model", "evaluate", "run", "model_from_factory", "register_method"} <= set(dir(ltbench))


def test_list_methods_fits_100_columns_and_verbose_shows_modifiers_and_ablations(capsys):
    for argv in (["list", "methods"], ["list", "methods", "-v"], ["list", "presets", "-v"], ["list", "models", "-v"]):
        assert cli_main(argv) == 0
        lines = capsys.readouterr().out.splitlines()
        assert max(len(line) for line in lines) <= 100, max(lines, key=len)
    assert cli_main(["list", "methods", "-v"]) == 0
    text = capsys.readouterr().out
    assert "--set awp.gamma=…  (float, default 0.01)" in text
    assert "--set robustlt.alpha=…  (float, default 0.3)" in text
    assert "'reat --no-tail'" in text and "'reat --no-rbl'" in text and "'reat --no-bsl'" in text
    assert "'pgd-at +awp --gamma=0.01'" in text
    assert cli_main(["list", "methods"]) == 0
    plain = capsys.readouterr().out
    assert "+awp" in plain and "--set awp.gamma" not in plain


def test_status_without_a_study_says_how_to_call_it(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results" / "mine").mkdir(parents=True)
    (tmp_path / "results" / "mine" / "study.json").write_text("{}")
    assert cli_main(["status"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "ltbench status results/demo" in err and "results/mine" in err


def test_report_prints_a_short_summary_and_the_page(tmp_path, capsys):
    import shutil

    study = tmp_path / "fmnist-lt-ratios"
    shutil.copytree(ROOT / "results" / "fmnist-lt-ratios", study,
                    ignore=shutil.ignore_patterns("across-ratios", "report.html"))
    shutil.rmtree(study / "taet__fmnist__r0.1__s2")  # one job left to run: the line names the next command
    assert cli_main(["report", str(study)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) <= 4, lines
    assert re.match(r"fmnist-lt-ratios: 53 done, 0 failed, 0 running, 1 pending \(`ltbench status ", lines[0])
    assert re.match(rf"tables: \d+ files in {re.escape(str(study))} \(read summary.md", lines[-2])
    assert lines[-1] == f"report: {study / 'report.html'}"



def readme_links(path: Path) -> list[str]:
    """Relative link targets of a Markdown file (no URLs, no in-page anchors)."""
    targets = re.findall(r"\]\(([^)\s]+)\)", path.read_text())
    return [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]


def anchors(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    out = set()
    for title in re.findall(r"^#+ (.+)$", path.read_text(), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


def test_readme_links_and_contents_point_at_what_exists():
    for doc in (ROOT / "README.md", ROOT / "docs" / "results.md"):
        for target in readme_links(doc):
            assert (doc.parent / target).exists(), f"{doc.name} links to {target}, which does not exist"
        own = anchors(doc)
        for anchor in re.findall(r"\]\(#([^)]+)\)", doc.read_text()):
            assert anchor in own, f"{doc.name}: #{anchor} is no heading"
        for other, anchor in re.findall(r"\]\(([^)#\s]+\.md)#([^)]+)\)", doc.read_text()):
            assert anchor in anchors(doc.parent / other), f"{doc.name}: {other}#{anchor} is no heading"


# Paths the README names that a reader's own run creates, not the repository.
CREATED_BY_A_RUN = ("results/demo", "results/smoke", "results/mine", "results/my-study", "methods/focal_at.py")


def test_every_repository_file_the_docs_name_exists():
    for doc in (ROOT / "README.md", ROOT / "docs" / "results.md"):
        named = set(re.findall(r"`((?:ltbench|methods|results|reports|scripts|tests|docs|\.ci)/[^`\s<>{}*~$…]*)`",
                               doc.read_text()))
        assert named, doc
        missing = [p for p in sorted(named) if not p.startswith(CREATED_BY_A_RUN) and not (ROOT / p).exists()]
        assert not missing, f"{doc.name} names {missing}, not in the repository"
