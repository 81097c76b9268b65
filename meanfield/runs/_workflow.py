"""What the workflows share: building the model from a config, the cluster tolerance,
chunked / checkpointed integration, energies and cluster statistics of saved states, and
saving figures.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import plot
from ..atoms import cluster_padded, default_tolerance
from ..dynamics._model import MeanField
from ..dynamics._perceptron import Perceptron
from ..integrate import Trajectory, integrate
from ._checkpoint import integrate_checkpointed


def _dtype(cfg):

    return jnp.float64 if cfg["x64"] else jnp.float32


def build_model(cfg: dict, key, beta=None):
    """The MeanField model of a config (random perceptron drawn from `key`)."""

    perceptron = None
    if cfg["activation"] != "none":
        k = cfg["neurons"] or None
        perceptron = Perceptron.random(
            key, cfg["d"], k=k, activation=cfg["activation"], dtype=_dtype(cfg)
        )
    return MeanField(
        cfg["beta"] if beta is None else beta,
        sign=cfg["sign"],
        attention=cfg["attention"],
        perceptron=perceptron,
        kernel=cfg["kernel"],
        shift_kernel=cfg["shift_kernel"],
        rescaled_time=cfg["rescaled_time"],
    )


def cluster_tolerance(cfg: dict, beta: float) -> float:
    """The config's angular cluster tolerance, or `atoms.default_tolerance(beta)` for "auto"."""

    tol = cfg["cluster_tol"]
    return float(default_tolerance(beta)) if tol == "auto" else float(tol)


@dataclasses.dataclass(frozen=True)
class Checkpointing:
    """Where and how often a workflow checkpoints (`--checkpoint-every`): the folder, the
    steps between checkpoints and the PRNG key kept with the state."""

    directory: Path
    every: int
    key: Any = None


def _divisor_at_least(total: int, low: int) -> int:
    return next(k for k in range(max(low, 1), total + 1) if total % k == 0)


def integrate_chunked(
    model,
    X0,
    *,
    dt,
    steps: int,
    save_every: int,
    method="euler",
    m=None,
    progress=None,
    max_chunks: int = 50,
    checkpoint: Checkpointing | None = None,
):
    """`integrate` run from Python in equal chunks of whole saves, so a progress line can
    advance between jitted chunks (one compilation: every chunk has the same length).
    With `checkpoint`, chunks of `checkpoint.every` steps and the state saved after each
    (`integrate_checkpointed`; resumes from an existing checkpoint).

    Returns a Trajectory with steps // save_every + 1 states, like `integrate` (the same
    bits: chunk boundaries do not change them).
    """

    if steps % save_every:
        raise ValueError(f"steps={steps} must be a multiple of save_every={save_every}")
    if checkpoint is not None:
        return integrate_checkpointed(
            model,
            X0,
            dt=dt,
            steps=steps,
            save_every=save_every,
            method=method,
            m=m,
            checkpoint_dir=checkpoint.directory,
            checkpoint_every=checkpoint.every,
            key=checkpoint.key,
            progress=progress,
        )
    saves = steps // save_every
    per = _divisor_at_least(saves, -(-saves // max_chunks))
    X, parts = X0, [X0[None]]
    if progress is not None:
        progress.total = saves // per
    for _ in range(saves // per):
        traj = integrate(
            model, X, dt=dt, steps=per * save_every, save_every=save_every, method=method, m=m
        )
        parts.append(traj.xs[1:])
        X = traj.xs[-1]
        if progress is not None:
            done = save_every * (len(parts) - 1) * per
            speed = float(jnp.max(jnp.linalg.norm(model.velocity(X, m), axis=-1)))
            t = done * float(dt)
            progress.update(status=f"step {done}/{steps}  t = {t:.4g}  max speed {speed:.2e}")
    xs = jnp.concatenate(parts, axis=0)
    ts = jnp.asarray(dt, X0.dtype) * save_every * jnp.arange(saves + 1, dtype=X0.dtype)
    return Trajectory(ts, xs)


def _energies(model, xs):
    """Energy along saved states (rescaled by e^{-beta} with rescaled_time), or None."""

    try:
        fn = model.rescaled_energy if model.rescaled_time else model.energy
        return jax.vmap(fn)(xs)
    except ValueError:
        return None


@functools.cache
def _cluster_stats_fn():
    """The jitted batch clustering, built once (a function defined per call would be a new
    jit cache entry, i.e. a recompilation, for every beta of a sweep)."""

    @eqx.filter_jit
    def stats(flat, tol):
        n = flat.shape[1]
        m = jnp.full((n,), 1.0 / n, flat.dtype)

        def one(X):
            atoms = cluster_padded(X, m, tol)
            return atoms.count, atoms.largest_mass

        return jax.lax.map(one, flat)

    return stats


def _cluster_stats(xs, tol):
    """Cluster counts and largest cluster mass of every state in xs (..., n, d)."""

    stats = _cluster_stats_fn()
    lead = xs.shape[:-2]
    counts, mass = stats(xs.reshape((-1,) + xs.shape[-2:]), jnp.asarray(tol, xs.dtype))
    return np.asarray(counts).reshape(lead), np.asarray(mass).reshape(lead)


def _non_decreasing(values, rtol: float = 1e-5) -> bool:
    """True if the sequence never drops by more than rtol * max|value|."""
    values = np.asarray(values, dtype=np.float64)
    return bool(np.all(np.diff(values) >= -rtol * np.max(np.abs(values))))


def _save_fig(fig, out: Path, name: str, files: list) -> None:

    plot.save(fig, out / name)
    files.append(name)


def _model_title(cfg) -> str:
    sign = "attractive" if cfg["sign"] == 1 else "repulsive"
    extra = "" if cfg["activation"] == "none" else f" + {cfg['activation']} perceptron"
    beta = f"beta = {cfg['beta']:g}, " if "beta" in cfg else ""
    return f"{cfg['attention'].upper()} {sign}{extra}, {beta}n = {cfg['n']}"
