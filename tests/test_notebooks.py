"""Execute every notebook in notebooks/ (jupytext percent .py files) at small sizes."""

import os
import pathlib
import runpy

import matplotlib
import pytest

NOTEBOOKS = sorted((pathlib.Path(__file__).parent.parent / "notebooks").glob("*.py"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, monkeypatch):
    matplotlib.use("Agg")
    monkeypatch.setenv("MEANFIELD_NB_N", "24")
    monkeypatch.delenv("DISPLAY", raising=False)
    namespace = runpy.run_path(str(path), run_name="__main__")
    import matplotlib.pyplot as plt

    assert plt.get_fignums(), f"{path.name} drew no figure"
    plt.close("all")
    assert os.environ["MEANFIELD_NB_N"] == "24" and namespace
