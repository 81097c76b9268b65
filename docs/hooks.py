"""mkdocs hook: the tutorials of the nav, executed when available, else without outputs.

The nav lists `tutorials/NAME.ipynb` for every jupytext notebook `notebooks/NAME.py`.
`python notebooks/execute.py --out docs/tutorials` writes them executed (with their
figures); the docs are then built from those files. A tutorial that was not executed is
converted here from its `.py` source without outputs (jupytext only, no kernel, into a
temporary folder, never into docs/), so `mkdocs build --strict` does not depend on running
the notebooks first; an INFO line says which ones.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

log = logging.getLogger("mkdocs.hooks.tutorials")
NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
TUTORIALS = "tutorials"
_tmp: tempfile.TemporaryDirectory | None = None


def notebook_sources() -> list[Path]:
    """The jupytext notebooks (every notebooks/*.py but the execute script)."""
    return sorted(p for p in NOTEBOOKS.glob("*.py") if p.name != "execute.py")


@event_priority(100)  # before mkdocs-jupyter turns .ipynb files into pages
def on_files(files, config):
    global _tmp
    have = {f.src_uri for f in files}
    missing = [p for p in notebook_sources() if f"{TUTORIALS}/{p.stem}.ipynb" not in have]
    if not missing:
        return files
    import jupytext
    import nbformat

    _tmp = tempfile.TemporaryDirectory(prefix="meanfield-tutorials-")
    root = Path(_tmp.name)
    (root / TUTORIALS).mkdir()
    for path in missing:
        nbformat.write(jupytext.read(path), root / TUTORIALS / f"{path.stem}.ipynb")
        files.append(
            File(
                f"{TUTORIALS}/{path.stem}.ipynb",
                src_dir=str(root),
                dest_dir=config["site_dir"],
                use_directory_urls=config["use_directory_urls"],
            )
        )
    log.info(
        "tutorials without outputs (run `python notebooks/execute.py --out docs/tutorials`): %s",
        ", ".join(p.stem for p in missing),
    )
    return files


def on_post_build(config):
    global _tmp
    if _tmp is not None:
        _tmp.cleanup()
        _tmp = None
