"""The mean-field limit n -> infinity: observables of the flow as the particle count grows.

For n = 10^2 .. 10^6 particles (d = 2) and up to 10^5 (d = 3), i.i.d. uniform initial
conditions and several seeds, integrate the attractive SA flow (or any MeanField) and
record, on a common time grid:

- the energy F_s(t) (its n -> infinity limit is the energy of the continuum flow);
- the number of atoms and the largest atom mass at the final time;
- the first merging time: the first saved time after which the number of heavy clusters
  (mass >= `heavy`) drops below its running maximum.

Large n is affordable because kernel="auto" resolves to the spectral sums on S^1 and S^2
(O(n K) / O(n L^2) per step) and clustering goes through `cell_atoms`, an O(n log n)
coarse-graining (points binned into cells of side h, then the few occupied cells
clustered with `cluster`), instead of all pairs.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ..atoms import cluster_padded
from ..dynamics import MeanField
from ..integrate import integrate
from ..sphere import uniform_sphere

_cluster_jit = jax.jit(cluster_padded)


def cell_atoms(X, tol: float = 0.05):
    """(masses sorted decreasingly) of the atoms of uniform-weight points X, O(n log n).

    Points are binned into cubes of side h = tol / (2 sqrt(d)) (so a cell has diameter
    <= tol / 2); occupied cells are weighted by their counts and clustered with linking
    angle tol. Equal to `cluster(X, tol=...)` up to the cell resolution: two points closer
    than tol / 2 always end in the same atom, two further than about 2 tol never do.
    """
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    h = tol / (2 * np.sqrt(d))
    cells, counts = np.unique(np.floor(X / h).astype(np.int64), axis=0, return_counts=True)
    centres = (cells + 0.5) * h
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    # Pad to a power of two with zero-mass copies of the first centre (they join its atom
    # and add no mass) so that only a handful of shapes is ever compiled.
    size = max(64, 1 << (len(centres) - 1).bit_length())
    weights = np.zeros(size)
    weights[: len(centres)] = counts / n
    padded = np.concatenate([centres, np.repeat(centres[:1], size - len(centres), axis=0)])
    atoms = _cluster_jit(jnp.asarray(padded), jnp.asarray(weights), tol)
    return np.asarray(atoms.masses)[: int(atoms.count)]


def first_merge_time(ts, heavy_counts) -> float:
    """First time the number of heavy clusters falls below its running maximum (nan if never)."""
    heavy_counts = np.asarray(heavy_counts)
    running = np.maximum.accumulate(heavy_counts)
    drops = np.nonzero(heavy_counts < running)[0]
    return float(ts[drops[0]]) if len(drops) else float("nan")


def run_one(
    model, key, n: int, d: int, *, dt: float, steps: int, save_every: int, tol: float, heavy: float
):
    X0 = uniform_sphere(key, n, d)
    traj = integrate(model, X0, dt=dt, steps=steps, save_every=save_every)
    resolved = model.resolve_kernel(n, d)
    energy = np.asarray(jax.vmap(lambda X: resolved.energy(X))(traj.xs))
    masses = [cell_atoms(X, tol) for X in np.asarray(traj.xs)]
    heavy_counts = [int(np.sum(mm >= heavy)) for mm in masses]
    ts = np.asarray(traj.ts)
    return {
        "energy": energy.tolist(),
        "atoms_final": int(len(masses[-1])),
        "largest_mass_final": float(masses[-1][0]),
        "heavy_clusters": heavy_counts,
        "first_merge_time": first_merge_time(ts, heavy_counts),
        "ts": ts.tolist(),
        "kernel": resolved.kernel.name,
    }


def run_study(
    sizes: dict,
    *,
    beta: float = 4.0,
    seeds: int = 3,
    dt: float = 0.1,
    steps: int = 300,
    save_every: int = 10,
    tol: float = 0.05,
    heavy: float = 0.05,
    spectral_tol: float = 1e-8,
    seed: int = 0,
    progress=print,
) -> dict:
    """Run every (d, n, seed); returns a JSON-ready dict with per-n summaries."""
    model = MeanField(beta, sign=1, attention="sa", spectral_tol=spectral_tol)
    out = {
        "beta": beta,
        "dt": dt,
        "steps": steps,
        "save_every": save_every,
        "tol": tol,
        "heavy": heavy,
        "seeds": seeds,
        "attention": "sa",
        "sign": 1,
        "runs": {},
    }
    for d, ns in sizes.items():
        for n in ns:
            start = time.perf_counter()
            keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), n), seeds)
            runs = [
                run_one(
                    model, k, n, d, dt=dt, steps=steps, save_every=save_every, tol=tol, heavy=heavy
                )
                for k in keys
            ]
            energy = np.array([r["energy"] for r in runs])
            merge = np.array([r["first_merge_time"] for r in runs])
            summary = {
                "d": d,
                "n": n,
                "kernel": runs[0]["kernel"],
                "ts": runs[0]["ts"],
                "energy_mean": energy.mean(0).tolist(),
                "energy_std": energy.std(0).tolist(),
                "atoms_final": [r["atoms_final"] for r in runs],
                "largest_mass_final": [r["largest_mass_final"] for r in runs],
                "first_merge_time": merge.tolist(),
                "seconds": time.perf_counter() - start,
            }
            out["runs"][f"d{d}_n{n}"] = summary
            largest = np.round(summary["largest_mass_final"], 3).tolist()
            progress(
                f"d={d} n={n:>8d} kernel={summary['kernel']:8s} "
                f"E(T)={summary['energy_mean'][-1]:.5f}+-{summary['energy_std'][-1]:.1e} "
                f"atoms={summary['atoms_final']} largest={largest} "
                f"t_merge={np.round(merge, 1).tolist()} ({summary['seconds']:.1f} s)"
            )
    return out


def plot_study(result: dict, out: Path) -> list[str]:
    """Energy versus time per n (mean +- std over seeds) and final observables versus n."""
    import matplotlib.pyplot as plt  # an optional extra: only when figures are asked for

    written = []
    for d in sorted({r["d"] for r in result["runs"].values()}):
        runs = sorted((r for r in result["runs"].values() if r["d"] == d), key=lambda r: r["n"])
        fig, axes = plt.subplots(1, 3, figsize=(15, 4))
        for r in runs:
            ts, mean, std = (np.asarray(r[k]) for k in ("ts", "energy_mean", "energy_std"))
            axes[0].plot(ts, mean, label=f"n = {r['n']:.0e}")
            axes[0].fill_between(ts, mean - 2 * std, mean + 2 * std, alpha=0.2)
        axes[0].set(
            xlabel="time t",
            ylabel="energy F(t)",
            title=f"S^{d - 1}: energy, mean +- 2 sd over seeds",
        )
        axes[0].legend(fontsize=8)
        ns = np.array([r["n"] for r in runs])
        for ax, key, label in (
            (axes[1], "largest_mass_final", "largest atom mass at T"),
            (axes[2], "first_merge_time", "first merging time"),
        ):
            vals = np.array([r[key] for r in runs], dtype=float)
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # seeds that never merged
                mean, sd = np.nanmean(vals, 1), np.nanstd(vals, 1)
            ax.errorbar(ns, mean, yerr=sd, fmt="o-", capsize=3)
            ax.set(
                xscale="log",
                xlabel="number of particles n",
                ylabel=label,
                title=f"{label} vs n (beta = {result['beta']})",
            )
            ax.grid(alpha=0.3)
        path = out / f"meanfield_limit_d{d}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(str(path))
    return written


def main(out, *, quick: bool = False, seeds: int | None = None) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if quick:
        sizes, kwargs = {2: [100, 1000], 3: [100, 1000]}, dict(steps=100, seeds=seeds or 2)
    else:
        sizes = {2: [10**2, 10**3, 10**4, 10**5, 10**6], 3: [10**2, 10**3, 10**4, 10**5]}
        kwargs = dict(steps=300, seeds=seeds or 3)
    result = run_study(sizes, **kwargs)
    (out / "meanfield_limit.json").write_text(json.dumps(result, indent=1))
    plot_study(result, out)
    return result
