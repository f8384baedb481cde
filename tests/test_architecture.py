"""The house rules of ``src/``, checked by parsing the code (nothing is imported or run).

- Every list of choices (split names, compute dtypes, site names, metric names, probe kinds) is
  written in ``layerprobe/vocab.py`` only: any other tuple, list, set or dict literal that holds two
  or more of those names fails.
- No import cycle between modules, counting imports made inside functions (but not those under
  ``if TYPE_CHECKING:``, which never run).
- ``layerprobe.testing`` (fixtures) is imported by no library module but the demo.
- No file over 400 lines, no function over 60.
"""

from __future__ import annotations

import ast
from pathlib import Path

from layerprobe import vocab

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "layerprobe"
VOCAB_FILE = PACKAGE / "vocab.py"

CHOICE_NAMES = frozenset(
    (*vocab.SPLITS, *vocab.COMPUTE_DTYPES, *vocab.SITES, vocab.ANSWER_SITE, *vocab.METRICS, *vocab.PROBE_KINDS)
)


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def choice_literals(tree: ast.AST) -> list[tuple[int, list[str]]]:
    """(line, names) of each collection literal in ``tree`` holding two or more choice names."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            items = node.elts
        elif isinstance(node, ast.Dict):
            items = [k for k in node.keys if k is not None] + node.values
        else:
            continue
        names = [i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str) and i.value in CHOICE_NAMES]
        if len(names) >= 2:
            found.append((node.lineno, names))
    return found


def test_choice_lists_live_in_vocab_only() -> None:
    offenders = []
    for name, path in sorted(_modules().items()):
        if path == VOCAB_FILE:
            continue
        for line, names in choice_literals(ast.parse(path.read_text(), str(path))):
            offenders.append(f"{path.relative_to(SRC)}:{line} {names}")
    assert not offenders, "choice lists written outside layerprobe/vocab.py:\n" + "\n".join(offenders)


def test_the_literal_check_catches_a_choice_list() -> None:
    caught = choice_literals(ast.parse('x = click.Choice(["mlp", "linear"])\ny = {"train": 1, "val": 2}\nz = ("a", "train")'))
    assert sorted(line for line, _ in caught) == [1, 2]


def _imports(tree: ast.AST, module: str, is_package: bool, known: set[str]) -> set[str]:
    """Modules of ``known`` that ``module`` imports anywhere, except under ``if TYPE_CHECKING``."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    base = module.split(".") if is_package else module.split(".")[:-1]
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            prefix = ".".join(base[: len(base) - node.level + 1]) if node.level else ""
            origin = ".".join(p for p in (prefix, node.module or "") if p)
            targets = [f"{origin}.{a.name}" if f"{origin}.{a.name}" in known else origin for a in node.names]
        else:
            continue
        out.update(t for t in targets if t in known and t != module)
    return out


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {
        name: _imports(ast.parse(path.read_text(), str(path)), name, path.name == "__init__.py", known)
        for name, path in modules.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_in_src() -> None:
    assert cycles(import_graph()) == []


def test_the_cycle_check_sees_imports_inside_functions() -> None:
    known = {"pkg.a", "pkg.b"}
    a = _imports(ast.parse("def f():\n    from pkg import b\n"), "pkg.a", False, known)
    b = _imports(ast.parse("from pkg.a import thing\nif TYPE_CHECKING:\n    import pkg.c\n"), "pkg.b", False, known)
    assert cycles({"pkg.a": a, "pkg.b": b}) == [["pkg.a", "pkg.b"]]


def test_fixtures_are_imported_only_by_the_demo() -> None:
    graph = import_graph()
    users = sorted(
        m for m, deps in graph.items()
        if not m.startswith("layerprobe.testing") and any(d.startswith("layerprobe.testing") for d in deps)
    )
    assert users in ([], ["layerprobe.demo"])


MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60


def test_files_and_functions_stay_small() -> None:
    too_long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        if text.count("\n") > MAX_FILE_LINES:
            too_long.append(f"{path.relative_to(SRC)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text, str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                too_long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not too_long, f"over {MAX_FILE_LINES} lines per file or {MAX_FUNCTION_LINES} per function:\n" + "\n".join(too_long)
