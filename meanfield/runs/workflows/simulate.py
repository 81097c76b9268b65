"""`meanfield simulate`: one system, its trajectory, energy and figures."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.random as jr

from ... import plot
from ...atoms import cluster
from ...sphere import uniform_sphere
from .._progress import Progress
from .._workflow import (
    _dtype,
    _energies,
    _model_title,
    _non_decreasing,
    _save_fig,
    build_model,
    cluster_tolerance,
    integrate_chunked,
)


def run_simulate(cfg: dict, out: Path, quiet: bool = False, checkpoint=None):
    """Simulate one system from uniform initial data; arrays ts, xs, energy.
    `checkpoint` (a `Checkpointing`): save the state periodically, resume from it."""

    kx, kp = jr.split(jr.PRNGKey(cfg["seed"]))
    model = build_model(cfg, kp)
    X0 = uniform_sphere(kx, cfg["n"], cfg["d"], dtype=_dtype(cfg))
    with Progress(1, "simulate", quiet=quiet) as bar:
        traj = integrate_chunked(
            model,
            X0,
            dt=cfg["dt"],
            steps=cfg["steps"],
            save_every=cfg["save_every"],
            method=cfg["method"],
            progress=bar,
            checkpoint=checkpoint,
        )
    energy = _energies(model, traj.xs)
    final = traj.xs[-1]
    tol = cluster_tolerance(cfg, cfg["beta"])
    atoms = cluster(final, tol=tol)
    arrays = {"ts": traj.ts, "xs": traj.xs}
    results = {
        "saves": int(traj.xs.shape[0]),
        "t_final": float(traj.ts[-1]),
        "clusters_final": int(atoms.count),
        "largest_cluster_mass": float(atoms.largest_mass),
        "cluster_tol": tol,
        "max_speed_final": float(
            jax.numpy.max(jax.numpy.linalg.norm(model.velocity(final), axis=1))
        ),
    }
    if energy is not None:
        arrays["energy"] = energy
        results.update(
            energy_initial=float(energy[0]),
            energy_final=float(energy[-1]),
            energy_non_decreasing=_non_decreasing(energy),
        )
    files: list[str] = []
    if cfg["plots"]:
        _simulate_figures(cfg, traj, energy, out, files)
    results["files"] = files
    return arrays, results


def _simulate_figures(cfg, traj, energy, out, files) -> None:

    title = _model_title(cfg)
    d = cfg["d"]
    if d == 2:
        _save_fig(plot.circle_trajectory(traj, title=f"S^1: {title}"), out, "trajectory.png", files)
    if d in (2, 3):
        _save_fig(plot.snapshots(traj, title=f"S^{d - 1}: {title}"), out, "snapshots.png", files)
    if energy is not None:
        label = "e^{-beta} F_s" if cfg["rescaled_time"] else "F_s"
        fig = plot.energy_curve(traj.ts, energy, title=f"Energy: {title}", ylabel=label)
        _save_fig(fig, out, "energy.png", files)
    fig = plot.cosine_histogram(traj.xs[0], label="t = 0", title="Pairwise cosine similarities")
    plot.cosine_histogram(traj.xs[-1], ax=fig.axes[0], label=f"t = {float(traj.ts[-1]):g}")
    _save_fig(fig, out, "cosines.png", files)
    if cfg["animate"] and d in (2, 3):
        plot.animate(traj, out / "trajectory.gif", title=title)
        files.append("trajectory.gif")
