"""The authors' S^1 pipeline (wgf_circle, arXiv 2601.21366) on meanfield's dynamics.

- `arc_clusters`: their greedy arc clustering (`analysis._cluster_sizes`): sort the angles,
  cut the circle at the largest gap, walk around; a cluster takes every angle within
  `threshold` of its *first* angle (not single linkage as `mf.cluster`). Masses, circular
  mean locations, spread (last - first angle) per cluster; fixed shapes, jit-able.
- `run_to_stop_rule`: their `_simulate_until_convergence` with meanfield's geodesic step
  (exactly their angle Euler step): every `save_every` steps the greedy cluster count is
  appended to a window; stop when the last `window` counts are equal, the largest spread
  is <= spread_factor * threshold and max_i |dx_i/dt| <= drift_tol; at most max_steps.
  One `lax.while_loop` of `lax.scan`s, compiled once (beta and the state are traced).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax

import meanfield as mf
from meanfield.integrate import with_beta

TWO_PI = 2.0 * jnp.pi


def authors_threshold(beta, cluster_scale: float = 0.5, d: int = 2):
    """Their clustering threshold min(cluster_scale / sqrt(beta), pi / (2 d)) (radians)."""
    return jnp.minimum(cluster_scale / jnp.sqrt(beta), jnp.pi / (2.0 * d))


def arc_clusters(theta, threshold) -> dict:
    """Greedy arc clusters of angles `theta` (n,) at `threshold` (their clustering).

    **Returns:** a dict of fixed-shape arrays: `count` (), `masses` (n,) (fractions,
    sorted decreasing, ties by increasing location; padding 0), `locations` (n,)
    (circular means in [0, 2 pi); padding 0), `spread` () the largest last-minus-first
    angle of a cluster, `labels` (n,) the cluster of every input angle (sorted order).
    """
    n = theta.shape[0]
    order = jnp.argsort(jnp.mod(theta, TWO_PI))
    angles = jnp.mod(theta, TWO_PI)[order]
    gaps = jnp.diff(jnp.concatenate([angles, angles[:1] + TWO_PI]))
    start = (jnp.argmax(gaps) + 1) % n
    idx = (start + jnp.arange(n)) % n
    linear = angles[idx] + jnp.where(start + jnp.arange(n) >= n, TWO_PI, 0.0)

    def walk(carry, a):
        first, label, spread = carry
        new = a - first > threshold
        first = jnp.where(new, a, first)
        label = label + new.astype(label.dtype)
        spread = jnp.maximum(spread, a - first)
        return (first, label, spread), label

    init = (linear[0], jnp.asarray(0), jnp.zeros((), theta.dtype))
    (_, last, spread), labels = lax.scan(walk, init, linear)
    count = last + 1
    w = jnp.full((n,), 1.0 / n, theta.dtype)
    masses = jax.ops.segment_sum(w, labels, num_segments=n)
    c = jax.ops.segment_sum(jnp.cos(linear), labels, num_segments=n)
    s = jax.ops.segment_sum(jnp.sin(linear), labels, num_segments=n)
    valid = jnp.arange(n) < count
    locations = jnp.where(valid, jnp.mod(jnp.arctan2(s, c), TWO_PI), 0.0)
    key_order = jnp.lexsort((locations, jnp.where(valid, -masses, jnp.inf)))
    back = jnp.zeros(n, labels.dtype).at[idx].set(labels)
    out_labels = jnp.zeros(n, labels.dtype).at[order].set(back)
    return dict(
        count=count,
        masses=masses[key_order],
        locations=locations[key_order],
        spread=spread,
        labels=out_labels,
    )


@eqx.filter_jit
def _stop_rule(
    model, X0, beta, dt, threshold, drift_tol, spread_factor, max_steps, save_every, window
):
    m = jnp.full((X0.shape[0],), 1.0 / X0.shape[0], X0.dtype)
    mdl = with_beta(model, beta)

    def field(X):
        return mdl.vector_field(0.0, X, m)

    def stats(X):
        cl = arc_clusters(mf.sphere.circle_angles(X), threshold)
        speed = jnp.max(jnp.linalg.norm(field(X), axis=-1))
        return cl["count"], cl["spread"], speed

    def cond(state):
        _, k, counts, filled, done = state
        return (~done) & (k < max_steps)

    def body(state):
        X, k, counts, filled, _ = state
        X, _ = lax.scan(
            lambda Y, _: (mf.exp_map(Y, dt * field(Y)), None), X, None, length=save_every
        )
        count, spread, speed = stats(X)
        counts = jnp.roll(counts, -1).at[-1].set(count)
        filled = jnp.minimum(filled + 1, window)
        same = jnp.all(counts == counts[-1])
        done = (filled == window) & same & (spread <= spread_factor * threshold)
        done = done & (speed <= drift_tol)
        return X, k + save_every, counts, filled, done

    counts0 = jnp.full((window,), -1, jnp.asarray(0).dtype)
    init = (X0, jnp.asarray(0), counts0, jnp.asarray(0), jnp.asarray(False))
    X, k, _, _, done = lax.while_loop(cond, body, init)
    return X, k, done


def run_to_stop_rule(
    model: mf.MeanField,
    X0,
    beta: float,
    *,
    dt: float = 0.1,
    cluster_scale: float = 0.5,
    drift_tol: float = 1e-4,
    spread_factor: float = 1.0,
    max_steps: int = 200_000,
    save_every: int = 10,
    window: int = 5,
) -> dict:
    """Integrate (geodesic steps of size dt) to the authors' stop rule and cluster.

    **Arguments:** `model` (a `MeanField` on S^1; its beta is replaced by `beta`), `X0`
    (n, 2) initial points; the rule's parameters as in their config.json (module
    docstring).

    **Returns:** a dict: `X` (n, 2) final state, `steps`, `converged`, `threshold`, and
    the `arc_clusters` of the final angles trimmed to `count` (`masses`, `locations`
    as lists), `spread`.
    """
    X0 = jnp.asarray(X0)
    # A kernel instance stays (pass a resolved model to share one compilation over betas).
    model = model.resolve_kernel(*X0.shape, dtype=X0.dtype)
    dtype = X0.dtype
    threshold = authors_threshold(jnp.asarray(beta, dtype), cluster_scale, X0.shape[1])
    X, k, done = _stop_rule(
        model,
        X0,
        jnp.asarray(beta, dtype),
        jnp.asarray(dt, dtype),
        threshold,
        jnp.asarray(drift_tol, dtype),
        jnp.asarray(spread_factor, dtype),
        int(max_steps),
        int(save_every),
        int(window),
    )
    cl = arc_clusters(mf.sphere.circle_angles(X), threshold)
    count = int(cl["count"])
    return dict(
        X=X,
        steps=int(k),
        converged=bool(done),
        threshold=float(threshold),
        atoms=count,
        masses=[float(v) for v in cl["masses"][:count]],
        locations=[float(v) for v in cl["locations"][:count]],
        spread=float(cl["spread"]),
    )


def step_n(model: mf.MeanField, X0, beta: float, *, dt: float, steps: int):
    """`steps` geodesic steps of size dt from X0 (the authors' angle Euler steps)."""
    X0 = jnp.asarray(X0)
    model = with_beta(model, beta)
    return mf.integrate(model, X0, dt=dt, steps=steps, method="geodesic").final


def circular_difference(a, b):
    """Signed angle a - b wrapped to (-pi, pi]."""
    return jnp.mod(jnp.asarray(a) - jnp.asarray(b) + jnp.pi, TWO_PI) - jnp.pi
