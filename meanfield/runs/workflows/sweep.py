"""`meanfield sweep`: an ensemble over betas x seeds, cluster counts and the largest mass
over (t, beta), and the figures: both (t, beta) maps and the final largest mass per beta.
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ... import plot
from ...critical import MASS_BOUND_LIMIT, mass_bound
from ...integrate import ensemble, with_beta
from .._progress import Progress
from .._workflow import (
    _cluster_stats,
    _dtype,
    _model_title,
    _save_fig,
    build_model,
    cluster_tolerance,
)


def run_sweep(cfg: dict, out: Path, quiet: bool = False):
    """Ensembles over seeds for every beta (one compilation); cluster statistics in time."""

    kx, kp = jr.split(jr.PRNGKey(cfg["seed"]))
    betas = [float(b) for b in cfg["betas"]]
    model = build_model(cfg, kp, beta=max(betas))
    counts, mass, finals, states = [], [], [], []
    ts = None
    with Progress(len(betas), "sweep over beta", quiet=quiet) as bar:
        for b in betas:
            traj = ensemble(
                with_beta(model, b),
                kx,
                n=cfg["n"],
                d=cfg["d"],
                seeds=cfg["seeds"],
                dt=cfg["dt"],
                steps=cfg["steps"],
                save_every=cfg["save_every"],
                method=cfg["method"],
                dtype=_dtype(cfg),
            )
            c, lm = _cluster_stats(traj.xs, cluster_tolerance(cfg, b))
            counts.append(c)
            mass.append(lm)
            finals.append(np.asarray(traj.xs[:, -1]))
            if cfg["save_states"]:
                states.append(np.asarray(traj.xs))
            ts = traj.ts[0]
            bar.update()
    arrays = {
        "betas": np.asarray(betas, dtype=np.asarray(ts).dtype),
        "ts": ts,
        "counts": np.stack(counts),
        "largest_mass": np.stack(mass),
        "final": np.stack(finals),
    }
    if states:
        arrays["xs"] = np.stack(states)
    bound_applies = cfg["d"] == 2 and cfg["sign"] == -1
    bounds = [
        float(mass_bound(b, model.perceptron, shift_kernel=cfg["shift_kernel"])) for b in betas
    ]
    results = {
        "betas": betas,
        "t_final": float(jnp.asarray(ts)[-1]),
        "clusters_final_mean": [float(c[:, -1].mean()) for c in counts],
        "clusters_final_min": [int(c[:, -1].min()) for c in counts],
        "clusters_final_max": [int(c[:, -1].max()) for c in counts],
        "largest_mass_mean": [float(lm[:, -1].mean()) for lm in mass],
        "largest_mass_max": [float(lm[:, -1].max()) for lm in mass],
        "cluster_tol": [cluster_tolerance(cfg, b) for b in betas],
        "mass_bound_applies": bound_applies,
        "mass_bound": bounds if bound_applies else None,
        "mass_bound_limit": MASS_BOUND_LIMIT,
    }
    if bound_applies:
        results["below_mass_bound"] = bool(
            all(lm[:, -1].max() <= bd for lm, bd in zip(mass, bounds, strict=True))
        )
    files: list[str] = []
    if cfg["plots"]:
        _sweep_figures(cfg, arrays, bounds if bound_applies else None, out, files)
    results["files"] = files
    return arrays, results


def _sweep_figures(cfg, arrays, bounds, out, files) -> None:

    title = _model_title(cfg)
    fig = plot.phase_diagram(
        arrays["ts"],
        arrays["betas"],
        arrays["counts"],
        label="mean number of clusters",
        log=True,
        title=f"Clusters over (t, beta): {title}, {cfg['seeds']} seeds",
    )
    _save_fig(fig, out, "phase_diagram.png", files)
    fig = plot.phase_diagram(
        arrays["ts"],
        arrays["betas"],
        arrays["largest_mass"],
        label="mean largest-cluster mass",
        vmin=0.0,
        vmax=1.0,
        title=f"Largest cluster over (t, beta): {title}, {cfg['seeds']} seeds",
    )
    _save_fig(fig, out, "largest_mass_map.png", files)
    fig = plot.largest_mass(
        arrays["betas"],
        arrays["largest_mass"][:, :, -1],
        bound=bounds,
        limit="auto" if bounds is not None else None,
        title=f"Largest cluster at t = {float(arrays['ts'][-1]):g}: {title}",
    )
    _save_fig(fig, out, "largest_mass.png", files)
