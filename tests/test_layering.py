"""The import graph, checked on the source: faces over analysis over cascade, and no circles.

    app.py -> cascade_ui -> analysis -> cascade
              cascade_cli -> analysis -> cascade

``cascade/__main__.py`` is the one shim from the library into a face: it lets
``python -m cascade`` reach ``cascade_cli``. Every import counts, also those inside a
function: a lazy import that runs upwards is still a circle in the design.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PROJECT = ("cascade", "analysis", "cascade_cli", "cascade_ui", "tools", "bench", "app")
# What each part may not import (the project's own parts, and libraries that belong to a face).
FORBIDDEN = {
    "cascade": {"analysis", "cascade_cli", "cascade_ui", "app", "tools", "bench", "gradio", "plotly", "duckdb"},
    "analysis": {"cascade_cli", "cascade_ui", "app", "tools", "bench", "gradio"},
    "cascade_cli": {"cascade_ui", "app", "tools", "bench", "gradio"},
    "cascade_ui": {"cascade_cli", "app", "tools", "bench"},
    "tools": {"cascade_cli", "cascade_ui", "app", "bench", "gradio"},
}
FACE_SHIMS = {"cascade.__main__": {"cascade_cli"}}  # python -m cascade -> the command line


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every Python file of the project (tests excluded)."""
    files = {"app": ROOT / "app.py"} if (ROOT / "app.py").is_file() else {}
    for part in PROJECT:
        for path in sorted((ROOT / part).rglob("*.py")) if (ROOT / part).is_dir() else []:
            dotted = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            files[dotted.removesuffix(".__init__")] = path
    return files


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module ``name`` imports, anywhere in its source: project modules resolved, others by top name."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:  # ``from cascade import world`` imports the module cascade.world
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return found


def graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: imports_of(name, path, set(files)) for name, path in files.items()}


def test_the_graph_sees_the_whole_tree():
    names = set(graph())
    assert {"app", "cascade_cli", "cascade.search", "analysis.store", "cascade.__main__"} <= names
    assert "cascade_cli" in graph()["cascade.__main__"]


def test_nothing_imports_upwards():
    violations = []
    for name, imported in graph().items():
        part = name.split(".")[0]
        allowed = FACE_SHIMS.get(name, set())
        for target in imported:
            if target.split(".")[0] in FORBIDDEN.get(part, set()) - allowed:
                violations.append(f"{name} imports {target}")
    assert not violations, "\n".join(sorted(violations))


def test_no_import_circles():
    edges = graph()
    project = {name: {t for t in targets if t in edges} for name, targets in edges.items()}
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:  # depth-first search; grey nodes on the stack close a cycle
        state[node] = "grey"
        for nxt in sorted(project[node]):
            if state.get(nxt) == "grey":
                cycles.append(" -> ".join(stack[stack.index(nxt) :] + [node, nxt]))
            elif nxt not in state:
                visit(nxt, stack + [node])
        state[node] = "black"

    for node in sorted(project):
        if node not in state:
            visit(node, [])
    assert not cycles, "\n".join(cycles)


def test_a_planted_circle_is_found(tmp_path, monkeypatch):
    """The checker itself: two modules that import each other (lazily) must be reported."""
    (tmp_path / "cascade").mkdir()
    (tmp_path / "cascade" / "__init__.py").write_text("")
    (tmp_path / "cascade" / "a.py").write_text("def f():\n    from cascade import b\n")
    (tmp_path / "cascade" / "b.py").write_text("from cascade.a import f\nimport analysis.store\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert graph()["cascade.a"] == {"cascade.b"}
    try:
        test_no_import_circles()
    except AssertionError as err:
        assert "cascade.a -> cascade.b -> cascade.a" in str(err) or "cascade.b -> cascade.a -> cascade.b" in str(err)
    else:
        raise AssertionError("the circle was not found")
    try:
        test_nothing_imports_upwards()
    except AssertionError as err:
        assert "cascade.b imports analysis.store" in str(err)
    else:
        raise AssertionError("the upward import was not found")


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_importing_the_package_loads_no_torch():
    assert not {"torch", "torchvision", "open_clip", "transformers", "duckdb", "numpy"} & _loaded_after(
        "import cascade, cascade.errors, cascade.types, cascade.units"
    )


def test_importing_the_engine_loads_no_model_library():
    loaded = _loaded_after("import cascade.search, cascade.encoders, cascade.corpus, cascade.cache")
    assert not {"torch", "open_clip", "transformers", "torchvision", "duckdb", "gradio", "plotly"} & loaded


def test_the_command_line_parses_without_torch():
    """``cascade --help`` and a usage error answer in a second: torch loads when a command runs."""
    loaded = _loaded_after(
        "import cascade_cli; cascade_cli.parser().parse_args(['search', 'a dog', '--levels', 'shapes:small'])"
    )
    assert not {"torch", "torchvision", "open_clip", "transformers", "gradio"} & loaded


def test_importing_the_package_installs_nothing():
    """No import hook, no torchvision shim: ``import cascade`` (and the engine) has no side effect."""
    code = (
        "import sys; hooks = list(sys.meta_path); import cascade, cascade.search, cascade.encoders; "
        "assert sys.meta_path == hooks, sys.meta_path; assert 'cascade._torchvision_compat' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


# Libraries that import torchvision, whose import dies on the pinned wheels without the shim.
TORCHVISION_USERS = {"open_clip", "timm", "torchvision", "transformers"}


def _calls_the_shim(path: Path) -> bool:
    """Whether the module's top level (not a function) calls ``ensure_torchvision_compat()``."""
    body = ast.parse(path.read_text()).body
    calls = [node.value.func for node in body if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)]
    return any(isinstance(f, ast.Name) and f.id == "ensure_torchvision_compat" for f in calls)


def test_every_module_that_imports_a_torchvision_user_calls_the_shim_at_its_top():
    files = module_files()
    missing = []
    for name, path in files.items():
        libraries = {imported.split(".")[0] for imported in imports_of(name, path, set(files))}
        if name.startswith("cascade.") and libraries & TORCHVISION_USERS and not _calls_the_shim(path):
            missing.append(name)
    assert not missing, f"call ensure_torchvision_compat() at the top of {missing}"


@pytest.mark.parametrize(
    "module", ["cascade.encoders.open_clip", "cascade.encoders.blip", "cascade.encoders.blip_convert", "cascade.cost"]
)
def test_the_torchvision_shim_has_run_once_a_module_that_needs_it_is_imported(module):
    """Before torchvision is imported, its ``nms`` op exists: defined by the shim where torchvision's own
    extension cannot load (CPU torch), by that extension where it can. Then torchvision imports."""
    code = (
        f"import sys, torch, {module}; assert 'torchvision' not in sys.modules; "
        "torch.ops.torchvision.nms; import torchvision"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


MAX_MODULE_LINES = 400
LONG_MODULE_REASON = "Why one module:"  # a module past the limit says, in its docstring, why it is one concern


def test_no_module_is_long_without_saying_why():
    long = []
    for name, path in module_files().items():
        lines = path.read_text().count("\n")
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        if lines > MAX_MODULE_LINES and LONG_MODULE_REASON not in docstring:
            long.append(f"{name}: {lines} lines")
    assert not long, f"split these along a seam, or give the reason ({LONG_MODULE_REASON!r}): " + ", ".join(long)
