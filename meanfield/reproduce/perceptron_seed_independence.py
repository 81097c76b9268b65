"""perceptron-seed-independence: are the atoms of arXiv 2601.21366's d = 2 experiment
independent of the initial data? Several particle seeds, the same perceptron.

Setup: as perceptron-localisation (the authors' GELU perceptron of default_rng(777),
repulsive USA with kernel exp(beta(cos - 1)), geodesic/angle-Euler dt = 0.1, their stop
rule and greedy clustering) at beta = 5, with particle seeds 42, 43, 44 (angles from
default_rng(seed).uniform(0, 2 pi, n)). Part 1 compares ours with the authors' code at
n = 1000 (quick: n = 100). Part 2 (ours only) repeats it for growing n and reports, per
atom (matched across seeds by nearest location to the seed-42 atoms), the spread over
seeds of its location and mass: whether "locations independent of the initial data"
sharpens as n grows. The default n grid stops at 1000 (minutes on a 2-core CPU);
larger n (3000, 10^4: about 0.1 and 1 s per step there) through `run_scan(ns=...)`,
best on a GPU.
"""

from __future__ import annotations

import numpy as np

import meanfield as mf
from meanfield.integrate import with_beta

from . import _circle
from ._references import load_reference
from ._report import Result, Row, pyplot
from .conventions import authors_particles
from .perceptron_localisation import authors_model

BETA = 5.0
SEEDS = (42, 43, 44)
NS = (100, 300, 1000)
QUICK_NS = (100,)
REFERENCE = "perceptron_seeds"


def run_seeds(n: int, seeds=SEEDS, beta: float = BETA) -> list[dict]:
    """One run to the authors' stop rule per particle seed (same perceptron)."""
    model, _ = authors_model()
    model = with_beta(model, beta).resolve_kernel(n, 2)
    out = []
    for seed in seeds:
        X0 = mf.angles_to_circle(np.asarray(authors_particles(seed, n)))
        r = _circle.run_to_stop_rule(model, X0, beta)
        r.pop("X")
        r["seed"] = seed
        out.append(r)
    return out


def spreads(runs: list[dict], atoms: int = 3) -> dict:
    """Across seeds: the largest location difference (rad, wrapped) and mass range of each
    of the first `atoms` atoms of the first run, matched by nearest location."""
    ref = runs[0]
    k = min(atoms, ref["atoms"])
    loc, mass = np.zeros(k), np.zeros(k)
    for i in range(k):
        locs, masses = [ref["locations"][i]], [ref["masses"][i]]
        for r in runs[1:]:
            d = np.abs(np.asarray(_circle.circular_difference(r["locations"], ref["locations"][i])))
            j = int(np.argmin(d))
            locs.append(ref["locations"][i] + float(d[j]))
            masses.append(r["masses"][j])
        loc[i] = max(locs) - min(locs)
        mass[i] = max(masses) - min(masses)
    return dict(location_spread=loc.tolist(), mass_spread=mass.tolist())


def run_scan(ns=NS, seeds=SEEDS, beta: float = BETA) -> list[dict]:
    """`spreads` of `run_seeds` for every n."""
    rows = []
    for n in ns:
        runs = run_seeds(int(n), seeds, beta)
        rows.append(
            dict(
                n=int(n),
                atoms=[r["atoms"] for r in runs],
                masses=[r["masses"] for r in runs],
                locations=[r["locations"] for r in runs],
                **spreads(runs),
            )
        )
    return rows


def figure(scan: list[dict]):
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    ns = [s["n"] for s in scan]
    k = min(len(s["location_spread"]) for s in scan)
    for i in range(k):
        loc = [max(s["location_spread"][i], 1e-16) for s in scan]
        axes[0].loglog(ns, loc, "o-", label=f"atom {i + 1}")
        axes[1].loglog(
            ns, [max(s["mass_spread"][i], 1e-16) for s in scan], "o-", label=f"atom {i + 1}"
        )
    axes[0].set_ylabel("location spread over seeds (rad)")
    axes[1].set_ylabel("mass spread over seeds")
    for ax in axes:
        ax.set_xlabel("n")
        ax.legend(fontsize=8)
    fig.suptitle(f"beta = {BETA:g}, seeds {', '.join(map(str, SEEDS))}, the authors' perceptron")
    return fig


def run(quick: bool = False) -> Result:
    """The entry. Full: peer comparison at n = 1000, scan over n = 100, 300, 1000;
    quick: n = 100 only (against the peer).

    **Returns:** a `Result`.
    """
    n_peer = 100 if quick else 1000
    ns = QUICK_NS if quick else NS
    scan = run_scan(ns)
    ref = load_reference(REFERENCE)  # read after the (long) runs
    theirs_cases = None if ref is None else ref["reduced" if quick else "full"]
    ours = next((s for s in scan if s["n"] == n_peer), None)
    if ours is None:
        runs = run_seeds(n_peer)
        ours = dict(
            atoms=[r["atoms"] for r in runs],
            masses=[r["masses"] for r in runs],
            locations=[r["locations"] for r in runs],
        )
    rows: list[Row] = []
    sec = f"against the authors' code (beta = {BETA:g}, n = {n_peer})"
    for i, seed in enumerate(SEEDS):
        t = None
        if theirs_cases:
            t = next((c["runs"][0] for c in theirs_cases if c["particle_seed"] == seed), None)
        rows.append(Row(sec, f"seed {seed}: atoms", ours["atoms"][i], t and t["atoms"], 0))
        for j in range(min(3, ours["atoms"][i])):
            rows.append(
                Row(
                    sec,
                    f"seed {seed}: mass {j + 1}",
                    ours["masses"][i][j],
                    t and t["masses"][j],
                    1e-9,
                )
            )
            rows.append(
                Row(
                    sec,
                    f"seed {seed}: location {j + 1} (rad)",
                    ours["locations"][i][j],
                    t and t["locations"][j],
                    1e-9,
                )
            )
    for s in scan:
        for i, (dl, dm) in enumerate(zip(s["location_spread"], s["mass_spread"], strict=True)):
            rows.append(
                Row(f"spread over seeds (n = {s['n']})", f"atom {i + 1}: location (rad)", dl)
            )
            rows.append(Row(f"spread over seeds (n = {s['n']})", f"atom {i + 1}: mass", dm))
    summary = dict(beta=BETA, seeds=list(SEEDS), ns=[s["n"] for s in scan], scan=scan)
    notes = [
        "Atoms are matched across seeds by nearest location to the seed-42 atoms; the "
        "spread is max - min over the seeds.",
        "Part 2 has no peer numbers: it is ours only (the fast kernels, float64).",
    ]
    return Result(
        rows=rows,
        summary=summary,
        notes=notes,
        figures={"seed_independence.png": figure(scan)},
        config=dict(beta=BETA, seeds=list(SEEDS), ns=list(ns), n_peer=n_peer, dt=0.1),
    )
