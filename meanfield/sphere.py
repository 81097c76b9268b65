"""Geometry of the unit sphere S^{d-1} in R^d, batched over leading axes.

All functions act on the last axis and broadcast over the others, so they work on a
single point (d,), a cloud (n, d) or an ensemble (batch, n, d).
"""

from __future__ import annotations

import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from ._validation import check_int


def project(x: Float[Array, "... d"], v: Float[Array, "... d"]) -> Float[Array, "... d"]:
    """Tangent projection P_x v = v - <x, v> x (assumes |x| = 1)."""
    return v - jnp.sum(x * v, axis=-1, keepdims=True) * x


def retract(x: Float[Array, "... d"]) -> Float[Array, "... d"]:
    """Retraction onto the sphere by normalisation, x / |x|."""
    return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


def exp_map(x: Float[Array, "... d"], v: Float[Array, "... d"]) -> Float[Array, "... d"]:
    """Riemannian exponential map exp_x(v) = cos|v| x + sin|v| v/|v| for tangent v.

    Uses sinc so that v = 0 is smooth (and differentiable); the result is renormalised to
    remove rounding drift.
    """
    norm = jnp.linalg.norm(v, axis=-1, keepdims=True)
    # jnp.sinc(t) = sin(pi t) / (pi t), so sin|v|/|v| = sinc(|v| / pi).
    y = jnp.cos(norm) * x + jnp.sinc(norm / jnp.pi) * v
    return retract(y)


def log_map(x: Float[Array, "... d"], y: Float[Array, "... d"]) -> Float[Array, "... d"]:
    """Riemannian logarithm: the tangent vector at x pointing to y with length dist(x, y)."""
    w = project(x, y - x)
    theta = geodesic_distance(x, y)[..., None]
    wn = jnp.linalg.norm(w, axis=-1, keepdims=True)
    safe = jnp.where(wn > 0, wn, 1.0)
    return jnp.where(wn > 0, theta * w / safe, jnp.zeros_like(w))


def geodesic_distance(x: Float[Array, "... d"], y: Float[Array, "... d"]) -> Float[Array, "..."]:
    """Great-circle distance arccos<x, y>, computed as 2 atan2(|x - y|, |x + y|).

    The atan2 form is accurate for nearby and antipodal points alike (arccos is not).
    """
    return 2 * jnp.arctan2(jnp.linalg.norm(x - y, axis=-1), jnp.linalg.norm(x + y, axis=-1))


def geodesic(x: Float[Array, " d"], y: Float[Array, " d"], t: Float[Array, "..."]) -> Array:
    """Points of the minimising geodesic from x (t = 0) to y (t = 1); shape t.shape + (d,)."""
    v = log_map(x, y)
    t = jnp.asarray(t)[..., None]
    return exp_map(x, t * v)


def uniform_sphere(key: PRNGKeyArray, n: int, d: int, dtype=None) -> Float[Array, "n d"]:
    """n i.i.d. points uniform on S^{d-1}: normalised standard Gaussians. Shape (n, d)."""
    n = check_int(n, "n")
    d = check_int(d, "d", minimum=2)
    z = jr.normal(key, (n, d), dtype=dtype if dtype is not None else jnp.result_type(float))
    return retract(z)


def angles_to_circle(theta: Float[Array, "..."]) -> Float[Array, "... 2"]:
    """Points (cos theta, sin theta) on S^1."""
    return jnp.stack([jnp.cos(theta), jnp.sin(theta)], axis=-1)


def circle_angles(x: Float[Array, "... 2"]) -> Float[Array, "..."]:
    """Angle atan2(x_2, x_1) in (-pi, pi] of points on S^1."""
    return jnp.arctan2(x[..., 1], x[..., 0])
