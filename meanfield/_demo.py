"""The README's main job: a short tour that writes real figures and numbers.

Sections (each a function returning a dict of numbers and writing figures into `out`):
1. Clustering on the circle (SA, attractive): angles versus time and the energy staircase.
2. Repulsion with a perceptron on S^2 (USA): flow to a stationary configuration,
   energy monotonicity checked along the way.
3. A beta sweep on the circle (an ensemble of seeds x betas in one jitted program).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from . import plot
from ._dynamics import MeanField
from ._integrate import ensemble, integrate, integrate_until
from ._perceptron import Perceptron
from ._sphere import uniform_sphere


def _non_decreasing(values, rtol: float = 1e-5) -> bool:
    """True if the sequence never drops by more than rtol * max|value| (float32 rounding)."""
    values = np.asarray(values, dtype=np.float64)
    return bool(np.all(np.diff(values) >= -rtol * np.max(np.abs(values))))


def circle_clustering(out: Path, key, n: int, steps: int) -> dict:
    model = MeanField(9.0, sign=1, attention="sa")
    X0 = uniform_sphere(key, n, 2)
    traj = integrate(model, X0, dt=0.1, steps=steps, save_every=10)
    energies = jax.vmap(model.energy)(traj.xs)
    plot.save(
        plot.circle_trajectory(traj, title=f"SA on S^1, beta = 9, n = {n}"),
        out / "circle_angles.png",
    )
    plot.save(
        plot.energy_curve(traj.ts, energies, title="Energy staircase (SA, beta = 9)"),
        out / "circle_energy.png",
    )
    final = np.asarray(traj.final)
    gaps = np.sort(np.arccos(np.clip(final @ final.T, -1, 1))[np.triu_indices(n, 1)])
    return {
        "n": n,
        "beta": 9.0,
        "steps": steps,
        "dt": 0.1,
        "energy_initial": float(energies[0]),
        "energy_final": float(energies[-1]),
        "energy_non_decreasing": _non_decreasing(energies),
        "distinct_positions_final": int(
            1 + np.sum(np.diff(np.sort(np.arctan2(final[:, 1], final[:, 0]))) > 1e-2)
        ),
        "min_pair_angle_final": float(gaps[0]),
    }


def sphere_repulsion(out: Path, key, n: int) -> dict:
    k1, k2 = jr.split(key)
    perceptron = Perceptron.random(k1, 3, activation="relu")
    model = MeanField(3.0, sign=-1, attention="usa", perceptron=perceptron)
    X0 = uniform_sphere(k2, n, 3)
    res = integrate_until(model, X0, dt=0.05, tol=1e-4, max_steps=20_000)
    traj = integrate(model, X0, dt=0.05, steps=400, save_every=4)
    energies = jax.vmap(model.energy)(traj.xs)
    fig = plot.sphere_scatter(X0, title="S^2: initial (grey) and stationary (blue)", color="0.6")
    plot.sphere_scatter(
        res.x, ax=fig.axes[0], color="C0", title="S^2, repulsive USA + ReLU perceptron, beta = 3"
    )
    plot.save(fig, out / "sphere_final.png")
    plot.save(
        plot.energy_curve(traj.ts, energies, title="Energy, repulsive USA on S^2"),
        out / "sphere_energy.png",
    )
    plot.save(
        plot.cosine_histogram(res.x, title="Cosine similarities at stationarity"),
        out / "sphere_cosines.png",
    )
    return {
        "n": n,
        "beta": 3.0,
        "sign": -1,
        "activation": "relu",
        "steps_to_stationarity": int(res.steps),
        "converged": bool(res.converged),
        "max_speed_final": float(res.max_speed),
        "energy_initial": float(model.energy(X0)),
        "energy_final": float(model.energy(res.x)),
        "energy_non_decreasing": _non_decreasing(energies),
    }


def beta_sweep(out: Path, key, n: int, seeds: int, steps: int) -> dict:
    betas = jnp.geomspace(0.1, 30.0, 12)
    model = MeanField(1.0, sign=1, attention="sa")
    traj = ensemble(model, key, n=n, d=2, seeds=seeds, dt=0.1, steps=steps, betas=betas)
    finals = np.asarray(traj.final)  # (betas, seeds, n, 2)
    # Order parameter |mean x|^2 = mean_{ij} <x_i, x_j>: 1 for one cluster, ~1/n when spread.
    order = np.sum(finals.mean(axis=2) ** 2, axis=-1)
    fig = plot.sweep_curve(
        betas,
        order.mean(1),
        band=(order.min(1), order.max(1)),
        ylabel="|mean x|^2 at t = %g" % (0.1 * steps),
        title=f"SA on S^1: {seeds} seeds x {len(betas)} betas, n = {n}",
    )
    plot.save(fig, out / "beta_sweep.png")
    return {
        "betas": [float(b) for b in betas],
        "seeds": seeds,
        "n": n,
        "t_final": 0.1 * steps,
        "order_parameter_mean": [float(v) for v in order.mean(1)],
    }


REPORT = """# meanfield demo

Machine: {device}, JAX {jax}; total time {seconds:.1f} s.

## 1. Clustering on the circle (SA, attractive, beta = 9)
Energy {c[energy_initial]:.4f} -> {c[energy_final]:.4f}
(non-decreasing: {c[energy_non_decreasing]}).

![angles](circle_angles.png)
![energy](circle_energy.png)

## 2. Repulsion with a ReLU perceptron on S^2 (USA, beta = 3)
Stationary (max speed {s[max_speed_final]:.2e}) after {s[steps_to_stationarity]} steps;
energy {s[energy_initial]:.4f} -> {s[energy_final]:.4f}.

![final](sphere_final.png)
![energy](sphere_energy.png)
![cosines](sphere_cosines.png)

## 3. Beta sweep on the circle (one jitted ensemble)
![sweep](beta_sweep.png)
"""


def run_demo(out, *, quick: bool = False, seed: int = 0) -> dict:
    """Run the demo, write figures, `summary.json` and `report.md` into `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    k1, k2, k3 = jr.split(jr.PRNGKey(seed), 3)
    summary = {
        "circle": circle_clustering(out, k1, n=32 if quick else 64, steps=500 if quick else 3000),
        "sphere": sphere_repulsion(out, k2, n=64 if quick else 256),
        "sweep": beta_sweep(
            out, k3, n=16 if quick else 32, seeds=4 if quick else 16, steps=100 if quick else 500
        ),
    }
    seconds = time.perf_counter() - start
    summary["meta"] = {
        "seconds": seconds,
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
        "seed": seed,
        "quick": quick,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "report.md").write_text(
        REPORT.format(
            device=summary["meta"]["device"],
            jax=jax.__version__,
            seconds=seconds,
            c=summary["circle"],
            s=summary["sphere"],
        )
    )
    return summary
