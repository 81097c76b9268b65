"""The table of reproductions: name -> `Entry` (title, citation, reference code, setup,
run function). `meanfield reproduce --list` prints it."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable


@dataclasses.dataclass(frozen=True)
class Entry:
    """One published experiment: `name` (the CLI's NAME), `title`, `citation` (paper),
    `source` (reference code with its commit, or the statement reproduced), `module`
    (meanfield.reproduce.<module>, whose docstring is the setup and whose `run(quick)`
    returns a `Result`), `full_time` and `quick_time` (rough wall times, 2-core CPU)."""

    name: str
    title: str
    citation: str
    source: str
    module: str
    full_time: str
    quick_time: str

    @property
    def setup(self) -> str:
        doc = importlib.import_module(f"meanfield.reproduce.{self.module}").__doc__ or ""
        return doc.strip()

    @property
    def run(self) -> Callable:
        return importlib.import_module(f"meanfield.reproduce.{self.module}").run


MLP_REPO = (
    "https://github.com/antonioalvarezl/2026-MLP-Attention-Energy "
    "(commit 667bf3cd49218d6328aeb6962a131aeb9a517b49, wgf_circle)"
)

ENTRIES: dict[str, Entry] = {
    e.name: e
    for e in (
        Entry(
            "perceptron-localisation",
            "Localisation by a perceptron on the circle: atoms, masses, locations per beta",
            "Alvarez-Lopez, Geshkovski, Ruiz-Balet, arXiv 2601.21366 (d = 2 experiment)",
            MLP_REPO,
            "perceptron_localisation",
            "~20 min",
            "~8 s",
        ),
        Entry(
            "perceptron-seed-independence",
            "Atom locations and masses against the particle seed and n",
            "Alvarez-Lopez, Geshkovski, Ruiz-Balet, arXiv 2601.21366 (locations independent "
            "of the initial data)",
            MLP_REPO,
            "perceptron_seed_independence",
            "~3 min",
            "~8 s",
        ),
        Entry(
            "temperature-laws",
            "Critical inverse temperature beta*_n of six score families against their laws",
            "Karakida, Hayase, arXiv 2605.12697",
            "the paper's laws (no public code): mf.predicted_critical_beta",
            "temperature_laws",
            "~6 min",
            "~6 s",
        ),
        Entry(
            "clustering-phase-diagram",
            "(t, beta) diagram of clustering, n = 32 on the circle",
            "Geshkovski, Letrouit, Polyanskiy, Rigollet, arXiv 2312.10794",
            "the paper's setup as stated (no public code for this figure; "
            "borjanG/2023-transformers is another experiment)",
            "clustering_phase_diagram",
            "~5 min",
            "~5 s",
        ),
        Entry(
            "metastability-staircase",
            "Energy staircase of n = 5 particles under normalised gradient steps",
            "Geshkovski, Koubbi, Polyanskiy, Rigollet, Dynamic metastability in the "
            "self-attention model (2024)",
            "https://github.com/HugoKoubbi/2024-transformers-dotm (commit "
            "4aa178ae9e5d6f56dda435ff6ae129011cb93719, staircase.py time_rescale_3)",
            "metastability_staircase",
            "~20 s",
            "~4 s",
        ),
    )
}
