"""The documentation site (mkdocs.yml, docs/): every public name has an API entry, every
page and tutorial is in the nav, and `mkdocs build --strict` passes (zero warnings: no
broken links, no unresolved cross-references, no page missing from the nav's files).

The build needs the `docs` extra (`pip install -e ".[docs]"`) and is skipped without it;
the checks on the Markdown sources always run. Tutorials that were not executed into
docs/tutorials/ are rendered without outputs by docs/hooks.py, so the build does not
execute the notebooks (tests/test_notebooks.py does).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
API = DOCS / "api"
MKDOCS_YML = (ROOT / "mkdocs.yml").read_text()

# Every public namespace and the API page that documents it.
PAGES = {
    "meanfield": "index.md",
    "meanfield.sphere": "sphere.md",
    "meanfield.kernels": "kernels.md",
    "meanfield.dynamics": "dynamics.md",
    "meanfield.integrate": "integrate.md",
    "meanfield.atoms": "atoms.md",
    "meanfield.critical": "critical.md",
    "meanfield.temperature": "temperature.md",
    "meanfield.transformer": "transformer.md",
    "meanfield.studies.limit": "studies.md",
    "meanfield.studies.localisation": "studies.md",
    "meanfield.studies.temperature": "studies.md",
    "meanfield.plot": "plot.md",
    "meanfield.runs": "runs.md",
    "meanfield.reproduce": "reproduce.md",
}
DIRECTIVE = re.compile(r"^::: *([\w.]+)[ \t]*\n((?:[ \t]+.*\n|[ \t]*\n)*)", re.M)


def module_file(name: str) -> Path:
    path = ROOT / Path(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def public_names(name: str) -> list[str]:
    """`__all__` of the module (read from its source, no import), or, for a module without
    one, its top-level public definitions and assignments."""
    tree = ast.parse(module_file(name).read_text())
    defined = []
    for node in tree.body:
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        for t in targets:
            if isinstance(t, ast.Name) and t.id == "__all__":
                return list(ast.literal_eval(node.value))
            if isinstance(t, ast.Name):
                defined.append(t.id)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.append(node.name)
    return [n for n in defined if not n.startswith("_")]


def directives(text: str) -> dict[str, str]:
    """`::: identifier` -> its (indented) options block."""
    return {m.group(1): m.group(2) for m in DIRECTIVE.finditer(text)}


def covered(module: str, name: str, text: str) -> bool:
    found = directives(text)
    if f"{module}.{name}" in found:
        return True
    if module in found:
        options = found[module]
        members = re.search(r"members:\s*(.*)", options)
        if members is None or members.group(1).strip() in ("", "true"):
            return True  # the whole module, filtered by __all__
        listed = members.group(1)
        if listed.startswith("[") and name in re.findall(r"\w+", listed):
            return True
        block = options[members.end() :]
        if re.search(rf"^\s*-\s*{re.escape(name)}\s*$", block, re.M):
            return True
    return f"`{name}`" in text  # a hand-written entry (the top-level table)


@pytest.mark.parametrize("module", sorted(PAGES))
def test_every_public_name_is_on_its_api_page(module):
    text = (API / PAGES[module]).read_text()
    names = public_names(module)
    assert names, module
    missing = [n for n in names if not covered(module, n, text)]
    assert not missing, f"docs/api/{PAGES[module]} does not document {module}: {missing}"


def test_every_page_and_tutorial_is_in_the_nav():
    pages = [p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")]
    pages = [p for p in pages if not p.startswith("tutorials/")]
    missing = [p for p in pages if f" {p}" not in MKDOCS_YML]
    assert not missing, f"pages not in the mkdocs.yml nav: {missing}"
    for api_page in set(PAGES.values()):
        assert f"api/{api_page}" in MKDOCS_YML
    notebooks = sorted(p.stem for p in (ROOT / "notebooks").glob("*.py") if p.stem != "execute")
    assert notebooks
    for stem in notebooks:
        assert f"tutorials/{stem}.ipynb" in MKDOCS_YML, f"{stem} is not a tutorial in the nav"


def _ids(html: str) -> set[str]:
    return set(re.findall(r'id="(meanfield[\w.]*)"', html))


def test_mkdocs_build_strict(tmp_path):
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        pytest.importorskip(module, reason="needs the docs extra: pip install -e '.[docs]'")
    pytest.importorskip("mkdocs_jupyter", reason="needs the docs extra")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stderr[-6000:]}"
    assert "WARNING" not in proc.stderr, proc.stderr[-6000:]

    # Every name of every namespace has its entry (an anchor) in the built API pages.
    for module, page in PAGES.items():
        if module == "meanfield":
            continue
        ids = _ids((site / "api" / page.removesuffix(".md") / "index.html").read_text())
        missing = [n for n in public_names(module) if f"{module}.{n}" not in ids]
        assert not missing, f"site/api/{page}: no entry for {module}.{missing}"

    # The top-level page links every top-level name to its entry.
    top = (site / "api" / "index.html").read_text()
    mf = importlib.import_module("meanfield")
    for name in mf.__all__:
        if isinstance(getattr(mf, name), types.ModuleType):
            assert f"<code>{name}</code>" in top, name
            continue
        link = rf'<a[^>]*href="[^"]*#meanfield\.[\w.]+\.{name}"'
        assert re.search(link, top), f"site/api/index.html does not link {name}"

    # The tutorials are pages, with their figures when they were executed.
    for p in (ROOT / "notebooks").glob("*.py"):
        if p.stem != "execute":
            assert (site / "tutorials" / p.stem / "index.html").is_file(), p.stem


def test_plain_blocks_extension():
    """docs/griffe_plain_blocks.py: plain sections and RST tables become code blocks;
    Markdown bullets are left alone."""
    pytest.importorskip("griffe", reason="needs the docs extra")
    spec = importlib.util.spec_from_file_location("plain", DOCS / "griffe_plain_blocks.py")
    plain = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plain)
    text = "Head.\n\nFields:\n    a: one.\n    b: two.\nAfter.\n\n====  ====\nx     y\n====  ====\n"
    out = plain.plain_blocks(text)
    assert "**Fields:**\n\n    a: one.\n    b: two.\n" in out
    assert "\n    ====  ====\n    x     y\n    ====  ====\n" in out
    markdown = "**Arguments:**\n\n- `x`: a point.\n    continued.\n\n**Returns:** (n,)."
    assert plain.plain_blocks(markdown) == markdown
