"""clustering-phase-diagram: the (t, beta) diagram of clustering of Geshkovski, Letrouit,
Polyanskiy and Rigollet, "A mathematical perspective on Transformers", arXiv 2312.10794,
for n = 32 particles on the circle.

No public code produces this figure (borjanG/2023-transformers is another experiment: the
R^d dynamics with A e^{Vt}), so the setup is the paper's as stated: self-attention (SA,
softmax-normalised, V = Q = K = I) on S^1, n = 32 particles uniform at t = 0, and for
each (t, beta) the fraction of realisations whose particles form a single cluster. Ours:
`mf.ensemble` (one compiled program over seeds and betas), RK4 with dt = 0.1, single
cluster = every pair within angle 1e-2 (one `mf.cluster` atom of diameter <= 1e-2), 128
realisations (quick: 8). There is no reference number to compare: the report gives the
diagram and, per beta, t_1/2, the first time at which half the realisations are one
cluster, with the paper's qualitative statement (one cluster for every beta as t -> inf;
the time to reach it grows with beta, metastably) checked on our numbers.
"""

from __future__ import annotations

import jax.numpy as jnp
import jax.random as jr
import numpy as np

import meanfield as mf

from ._report import Result, Row, pyplot

N = 32
BETAS = (0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0)
QUICK_BETAS = (0.5, 1.0, 2.0)
DT, T_MAX, SAVE_EVERY = 0.1, 100.0, 10
TOL = 1e-2


def single_cluster_fraction(xs, tol: float = TOL):
    """Fraction of realisations that are one cluster (max pairwise angle <= tol).

    **Arguments:** `xs` (..., seeds, saves, n, d). **Returns:** (..., saves).
    """
    G = jnp.einsum("...id,...jd->...ij", xs, xs)
    one = jnp.min(G, axis=(-1, -2)) >= jnp.cos(tol)
    return jnp.mean(one, axis=-2)


def diagram(betas, seeds: int, t_max: float = T_MAX, key=None):
    """(betas, saves) single-cluster fractions and the save times."""
    key = jr.PRNGKey(0) if key is None else key
    model = mf.MeanField(1.0, sign=1, attention="sa")
    steps = int(round(t_max / DT))
    traj = mf.ensemble(
        model,
        key,
        n=N,
        d=2,
        seeds=seeds,
        dt=DT,
        steps=steps,
        betas=jnp.asarray(betas),
        method="rk4",
        save_every=SAVE_EVERY,
    )
    frac = np.asarray(single_cluster_fraction(traj.xs))
    ts = np.asarray(traj.ts).reshape(-1, frac.shape[-1])[0]  # the same for every run
    return frac, ts


def half_time(frac_row, ts):
    """First saved time at which the fraction is >= 1/2 (None if never)."""
    hit = np.flatnonzero(frac_row >= 0.5)
    return float(ts[hit[0]]) if hit.size else None


def figure(frac, ts, betas):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    b = np.asarray(betas)
    im = ax.pcolormesh(b, ts, frac.T, shading="nearest", vmin=0, vmax=1, cmap="viridis")
    fig.colorbar(im, ax=ax, label="fraction in a single cluster")
    halves = [half_time(f, ts) for f in frac]
    ax.plot(b, [np.nan if h is None else h for h in halves], "w.-", label="t_1/2")
    ax.set_xlabel("beta")
    ax.set_ylabel("t")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(f"SA on S^1, n = {N}: (t, beta) diagram of clustering")
    return fig


def run(quick: bool = False) -> Result:
    """The entry. Full: 10 betas, 128 realisations, t <= 100; quick: 3 betas, 8, t <= 20.

    **Returns:** a `Result`.
    """
    betas = QUICK_BETAS if quick else BETAS
    seeds = 8 if quick else 128
    t_max = 20.0 if quick else T_MAX
    frac, ts = diagram(betas, seeds, t_max)
    halves = [half_time(f, ts) for f in frac]
    rows = [
        Row("per beta", f"beta = {b:g}: t_1/2 (half the realisations in one cluster)", h)
        for b, h in zip(betas, halves, strict=True)
    ]
    rows += [
        Row("per beta", f"beta = {b:g}: fraction in one cluster at t = {ts[-1]:g}", float(f[-1]))
        for b, f in zip(betas, frac, strict=True)
    ]
    known = [h for h in halves if h is not None]
    rows.append(
        Row(
            "the paper's statement",
            "t_1/2 is non-decreasing in beta (where reached)",
            bool(all(a <= b for a, b in zip(known, known[1:], strict=False))),
            True,
        )
    )
    notes = [
        "No peer code or table for this figure: 'theirs' holds the paper's qualitative "
        "statements only; the numbers are ours.",
        "Realisations: mf.ensemble with jax.random.PRNGKey(0) (uniform on S^1).",
    ]
    return Result(
        rows=rows,
        summary=dict(betas=list(betas), t_half=halves, seeds=seeds, t_max=t_max),
        notes=notes,
        arrays=dict(betas=np.asarray(betas), ts=ts, single_cluster_fraction=frac),
        figures={"phase_diagram.png": figure(frac, ts, betas)},
        config=dict(n=N, betas=list(betas), seeds=seeds, dt=DT, t_max=t_max, tol=TOL),
    )
