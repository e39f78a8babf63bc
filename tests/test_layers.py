"""The layers of DESIGN.md "Layers", read from its table: no module of ``ltbench/`` or ``methods/``
imports a module of a layer above its own, and no modules import each other in a circle.

Every ``.py`` file counts, ``__init__.py`` included, and so does every import in it: at the top or
inside a function, ``import ltbench`` (the package's face, ``ltbench/__init__.py``, at the top
layer), ``from ltbench import x`` (the module ``x``, else the face) and ``importlib.import_module``
of a written name. The last tests put an upward import into a method and into the runner and show
the check failing on each.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TREES = ("ltbench", "methods")


def design_layers(design: str) -> list[tuple[str, list[str]]]:
    """``(layer, [file or folder/])`` per row of the table under DESIGN.md's "## Layers", lowest first."""
    section = design.split("\n## Layers\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")][2:]  # past the header and its rule
    layers = []
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        layers.append((cells[0], re.findall(r"`([^`]+)`", cells[1])))
    return layers


LAYERS = design_layers((ROOT / "DESIGN.md").read_text())


def layer_of(path: str) -> int | None:
    """The index of the layer holding ``path`` (``ltbench/engine/train.py``), None if none does."""
    for i, (_, places) in enumerate(LAYERS):
        if any(path == p or (p.endswith("/") and path.startswith(p)) for p in places):
            return i
    return None


def module_file(name: str, sources: dict[str, str]) -> str | None:
    """The file of module ``name`` among ``sources`` (None: not ours, e.g. torch)."""
    base = name.replace(".", "/")
    return next((f for f in (f"{base}.py", f"{base}/__init__.py") if f in sources), None)


def imported(path: str, source: str, sources: dict[str, str]) -> list[str]:
    """The modules of ours that ``path`` imports, anywhere in it."""
    package = path.rsplit("/", 1)[0].replace("/", ".")
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # from . import x, from ..y import z
                up = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            for a in node.names:  # from ltbench import api: the module api; from ltbench import x: the face
                names.append(f"{base}.{a.name}" if module_file(f"{base}.{a.name}", sources) else base)
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names.append(node.args[0].value)
    files = (module_file(n, sources) for n in names)
    return sorted({f for f in files if f is not None and f != path})


def tree_sources() -> dict[str, str]:
    """Every module of ``ltbench/`` and ``methods/``: path → source."""
    return {p.relative_to(ROOT).as_posix(): p.read_text() for tree in TREES for p in sorted((ROOT / tree).rglob("*.py"))}


def offenders(sources: dict[str, str]) -> list[str]:
    """One line per module in no layer and per import of a module of a layer above."""
    out = []
    for path, source in sources.items():
        own = layer_of(path)
        if own is None:
            out.append(f"{path}: in no layer of DESIGN.md")
            continue
        for f in imported(path, source, sources):
            theirs = layer_of(f)
            if theirs is not None and theirs > own:
                out.append(f"{path} ({LAYERS[own][0]}) imports {f} ({LAYERS[theirs][0]})")
    return out


def circles(sources: dict[str, str]) -> list[list[str]]:
    """Import circles between modules (each once, as found by a depth-first walk)."""
    graph = {path: imported(path, src, sources) for path, src in sources.items()}
    found, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in graph.get(node, []):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node, [node])
    return found


def test_the_table_names_every_layer_once_and_every_place_exists():
    names = [name for name, _ in LAYERS]
    assert len(names) == len(set(names)) >= 10 and names[0] == "helpers" and names[-1] == "interface"
    places = [p for _, ps in LAYERS for p in ps]
    assert len(places) == len(set(places))
    assert not [p for p in places if not (ROOT / p).exists()]


def test_no_module_imports_a_layer_above_its_own():
    assert not offenders(tree_sources())


def test_no_modules_import_each_other_in_a_circle():
    assert not circles(tree_sources())


def test_an_upward_import_in_a_method_module_fails():
    sources = tree_sources()
    sources["methods/pgd_at.py"] += "\nfrom ltbench.engine.train import run_job  # noqa\n"
    assert offenders(sources) == ["methods/pgd_at.py (methods) imports ltbench/engine/train.py (engine)"]


def test_an_upward_import_in_the_runner_fails_also_inside_a_function():
    sources = tree_sources()
    sources["ltbench/runner/local.py"] += "\n\ndef later():\n    from ltbench.study.study import Study  # noqa\n"
    assert offenders(sources) == ["ltbench/runner/local.py (runner) imports ltbench/study/study.py (study)"]


def test_import_ltbench_and_init_files_count():
    sources = tree_sources()
    sources["ltbench/engine/checkpoint.py"] += "\nimport ltbench  # noqa\n"
    sources["ltbench/runner/__init__.py"] += "\nfrom ltbench.report import aggregate  # noqa\n"
    assert offenders(sources) == ["ltbench/engine/checkpoint.py (engine) imports ltbench/__init__.py (interface)",
                                  "ltbench/runner/__init__.py (runner) imports ltbench/report/aggregate.py (report)"]


def test_a_circle_within_one_layer_fails():
    sources = tree_sources()
    sources["ltbench/report/paired.py"] += "\n\ndef later():\n    from ltbench.report import aggregate  # noqa\n"
    assert ["ltbench/report/aggregate.py", "ltbench/report/paired.py", "ltbench/report/aggregate.py"] in circles(sources)


# --- no method named outside methods/ (issue 30 item 5) --------------------------------------
# A string constant of ltbench/ equal to a registered method's name, outside docstrings, is a
# method named outside methods/: what the report, the estimate and the bench need to know of a
# method is a class attribute (ltbench.method_roles). The two places below use the name as a value.
NAMED_ON_PURPOSE = {
    ("ltbench/config.py", "pgd-at"),  # JobConfig's default method (a dataclass needs one)
    ("ltbench/method.py", "trades"),  # the value "trades" of a config field `base`, not the method
}


def method_names_in_code(tree: ast.AST, names: set[str]) -> list[tuple[int, str]]:
    """(line, name) of each string constant equal to one of ``names``, docstrings left out."""
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings and node.value in names]


def test_no_method_is_named_outside_methods():
    from ltbench.plugins import load_methods

    names = set(load_methods().names())
    found = []
    for path in sorted((ROOT / "ltbench").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        found += [(rel, line, name) for line, name in method_names_in_code(ast.parse(path.read_text()), names)
                  if (rel, name) not in NAMED_ON_PURPOSE]
    assert not found, f"method names in ltbench/ code (make them class attributes of the method): {found}"


def test_the_method_name_scan_finds_a_name_and_skips_docstrings():
    src = '"""pgd-at in a docstring."""\nBASELINES = ("pgd-at", "trades")\ndef f():\n    """reat"""\n    return "reat"\n'
    found = sorted(method_names_in_code(ast.parse(src), {"pgd-at", "trades", "reat"}))
    assert found == [(2, "pgd-at"), (2, "trades"), (5, "reat")]
