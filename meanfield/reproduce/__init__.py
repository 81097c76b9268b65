"""Reproductions: published experiments replayed with their exact setup, our numbers beside
theirs (`meanfield reproduce NAME`, `meanfield reproduce --list`).

Each entry of `ENTRIES` (name -> `Entry`) is one module of this package whose docstring
states the setup (seeds, draws, dt, stop rule and clustering as the original code has
them) and whose `run(quick=False)` returns a `Result`: rows (quantity, ours, theirs,
difference), notes, arrays and the figure; `write_result` saves it as a run folder
(`mf.save_run`) with report.md. The reference numbers come from running the peers' public
code (tests/fixtures/make_reproduce_fixtures.py, which records their commits) and are
stored in tests/fixtures/reproduce/.

    import meanfield.reproduce as rep
    result = rep.ENTRIES["metastability-staircase"].run(quick=True)
    rep.write_result(rep.ENTRIES["metastability-staircase"], result, "stairs",
                     seconds=0.0, quick=True, overwrite=False)

`conventions` maps the perceptron paper's parameters and energies to meanfield's
(`perceptron_from_authors`; docs/conventions.md).
"""

from . import conventions
from ._circle import arc_clusters
from ._references import load_reference
from ._registry import ENTRIES, Entry
from ._report import Result, Row, write_result
from .conventions import authors_draw, authors_particles, energy_correction, perceptron_from_authors

__all__ = [
    "ENTRIES",
    "Entry",
    "Result",
    "Row",
    "arc_clusters",
    "authors_draw",
    "authors_particles",
    "conventions",
    "energy_correction",
    "load_reference",
    "perceptron_from_authors",
    "write_result",
]
