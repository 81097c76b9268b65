"""Geometry of the unit sphere S^{d-1} in R^d, batched over leading axes.

All functions act on the last axis and broadcast over the others, so they work on a
single point (d,), a cloud (n, d) or an ensemble (batch, n, d).
"""

from __future__ import annotations

import jax.numpy as jnp
import jax.random as jr
from jax import lax
from jaxtyping import Array, Float, PRNGKeyArray

from ._validation import as_key, check_int

__all__ = [
    "angles_to_circle",
    "circle_angles",
    "exp_map",
    "geodesic",
    "geodesic_distance",
    "log_map",
    "project",
    "retract",
    "uniform_sphere",
]


def project(
    x: Float[Array, "... d"], v: Float[Array, "... d"], axis: int = -1
) -> Float[Array, "... d"]:
    """Tangent projection P_x v = v - <x, v> x.

    **Arguments:** `x` (..., d) points with |x| = 1; `v` (..., d) vectors; `axis`: the
    coordinate axis (default last; the lanes layout (d, n, systems) uses 0).

    **Returns:** the shape of v, the component of v tangent to the sphere at x.
    """
    return v - _inner(x, v, axis) * x


def retract(x: Float[Array, "... d"], axis: int = -1) -> Float[Array, "... d"]:
    """Retraction onto the sphere by normalisation, x / |x|.

    **Arguments:** `x` (..., d) non-zero vectors; `axis`: the coordinate axis (default
    last; an ensemble in the lanes layout (d, n, systems) uses 0).

    **Returns:** unit vectors, the shape of x.
    """
    return x / _norm(x, axis)


def _norm(x: Float[Array, "... d"], axis: int = -1) -> Float[Array, "... 1"]:
    """Euclidean norm along `axis`, kept as a size-1 axis (see `_inner`).

    **Arguments:** `x` an array; `axis` the coordinate axis.

    **Returns:** |x| with `axis` of size 1.
    """
    if axis % x.ndim == x.ndim - 1 or x.shape[axis] > 8:
        return jnp.linalg.norm(x, axis=axis, keepdims=True)
    return jnp.sqrt(_inner(x, x, axis))


def _inner(x: Float[Array, "... d"], v: Float[Array, "... d"], axis: int = -1):
    """<x, v> along `axis`, kept as a size-1 axis.

    A few coordinates on a leading axis (the lanes layout (d, n, systems) of an ensemble)
    are summed plane by plane, x_1 v_1 + ... + x_d v_d elementwise: XLA:CPU's reduction over
    a short leading axis took half of a 2048-system ensemble step (0.85 s against 0.46 s for
    300 steps of n = 32, d = 2).
    """
    axis = axis % x.ndim
    if axis == x.ndim - 1 or x.shape[axis] > 8:
        return jnp.sum(x * v, axis=axis, keepdims=True)
    planes = zip(
        *([lax.index_in_dim(a, k, axis) for k in range(a.shape[axis])] for a in (x, v)),
        strict=True,
    )
    return sum(a * b for a, b in planes)


def exp_map(
    x: Float[Array, "... d"], v: Float[Array, "... d"], axis: int = -1
) -> Float[Array, "... d"]:
    """Riemannian exponential map exp_x(v) = cos|v| x + sin|v| v/|v|.

    Uses sinc so that v = 0 is smooth (and differentiable); the result is renormalised to
    remove rounding drift.

    **Arguments:** `x` (..., d) unit points; `v` (..., d) tangent vectors at x; `axis`
    the coordinate axis (as in `retract`).

    **Returns:** (..., d), the point at geodesic distance |v| from x in direction v.
    """
    norm = _norm(v, axis)
    # jnp.sinc(t) = sin(pi t) / (pi t), so sin|v|/|v| = sinc(|v| / pi).
    y = jnp.cos(norm) * x + jnp.sinc(norm / jnp.pi) * v
    return retract(y, axis)


def log_map(x: Float[Array, "... d"], y: Float[Array, "... d"]) -> Float[Array, "... d"]:
    """Riemannian logarithm log_x(y), the inverse of `exp_map` away from the cut locus.

    **Arguments:** `x`, `y` (..., d) unit points (not antipodal).

    **Returns:** (..., d), the tangent vector at x pointing to y with length dist(x, y)
    (0 where y = x).
    """
    w = project(x, y - x)
    theta = geodesic_distance(x, y)[..., None]
    wn = jnp.linalg.norm(w, axis=-1, keepdims=True)
    safe = jnp.where(wn > 0, wn, 1.0)
    return jnp.where(wn > 0, theta * w / safe, jnp.zeros_like(w))


def geodesic_distance(x: Float[Array, "... d"], y: Float[Array, "... d"]) -> Float[Array, "..."]:
    """Great-circle distance arccos<x, y>, computed as 2 atan2(|x - y|, |x + y|).

    The atan2 form is accurate for nearby and antipodal points alike (arccos is not).

    **Arguments:** `x`, `y` (..., d) unit points (broadcast against each other).

    **Returns:** (...,) angles in [0, pi].
    """
    return 2 * jnp.arctan2(jnp.linalg.norm(x - y, axis=-1), jnp.linalg.norm(x + y, axis=-1))


def geodesic(x: Float[Array, " d"], y: Float[Array, " d"], t: Float[Array, "..."]) -> Array:
    """Points of the minimising geodesic from x (t = 0) to y (t = 1).

    **Arguments:** `x`, `y` (d,) unit points (not antipodal); `t` times, any shape.

    **Returns:** t.shape + (d,), exp_x(t log_x(y)).
    """
    v = log_map(x, y)
    t = jnp.asarray(t)[..., None]
    return exp_map(x, t * v)


def uniform_sphere(key: PRNGKeyArray, n: int, d: int, dtype=None) -> Float[Array, "n d"]:
    """n i.i.d. points uniform on S^{d-1}: normalised standard Gaussians.

    **Arguments:** `key` a PRNG key (or an integer seed); `n` >= 1 points; `d` >= 2 ambient
    dimension; `dtype` (default: float64 when x64 is enabled, else float32).

    **Returns:** (n, d) unit rows.
    """
    key = as_key(key)
    n = check_int(n, "n")
    d = check_int(d, "d", minimum=2)
    z = jr.normal(key, (n, d), dtype=dtype if dtype is not None else jnp.result_type(float))
    return retract(z)


def angles_to_circle(theta: Float[Array, "..."]) -> Float[Array, "... 2"]:
    """Points (cos theta, sin theta) on S^1.

    **Arguments:** `theta` angles, any shape. **Returns:** theta.shape + (2,).
    """
    return jnp.stack([jnp.cos(theta), jnp.sin(theta)], axis=-1)


def circle_angles(x: Float[Array, "... 2"]) -> Float[Array, "..."]:
    """Angle atan2(x_2, x_1) in (-pi, pi] of points on S^1 (inverse of `angles_to_circle`).

    **Arguments:** `x` (..., 2) points. **Returns:** (...,) angles.
    """
    return jnp.arctan2(x[..., 1], x[..., 0])
