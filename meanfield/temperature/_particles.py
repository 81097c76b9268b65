"""The bridge to particle systems: the score rows beta <x_i, x_j> of points on the sphere
(`score_rows`) and beta*_n of every query row (`critical_beta_of_particles`), blocked
over rows.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, ArrayLike, Float

from .._validation import check_nonneg, check_particles, check_ties
from ._gaps import _critical_beta_core


def _drop_diagonal(G, rows):
    """Remove entry (i, rows_i) from each row of G (b, n) -> (b, n - 1)."""
    n = G.shape[-1]
    j = jnp.arange(n - 1)[None, :]
    idx = j + (j >= rows[:, None])
    return jnp.take_along_axis(G, idx, axis=-1)


@functools.partial(jax.jit, static_argnames=("include_self",))
def _score_rows_core(X, beta, include_self: bool):
    G = beta * (X @ X.T)
    if include_self:
        return G
    return _drop_diagonal(G, jnp.arange(X.shape[0]))


def score_rows(X: ArrayLike, beta: ArrayLike = 1.0, *, include_self: bool = False):
    """Per-query score rows beta <x_i, x_j> of particles X (n, d) on the unit sphere.

    Returns (n, n - 1) with the self-score excluded (default; the self-score beta is always
    the maximum and would hide the competition between the other keys, whose critical scale
    follows the n^(2/(d-1)) law), or (n, n) with ``include_self=True``. Dense: O(n^2) memory;
    use `critical_beta_of_particles` for large n.

    **Arguments:**

    - `X`: (n, d) particles on the unit sphere, n >= 3.
    - `beta`: inverse temperature, a finite scalar >= 0 (default 1.0).
    - `include_self`: keep the self-score beta <x_i, x_i> = beta (default False).

    **Returns:** an array of shape (n, n - 1) (row i: beta <x_i, x_j>, j != i, in order), or
    (n, n) with ``include_self=True``.

    **Raises:** `ValueError` if `X` is not (n, d) with n >= 3, contains NaN or inf, or has
    rows off the unit sphere (tolerance sqrt(eps)), or if `beta` is not a finite scalar
    >= 0.
    """
    X = check_particles(X)
    b = check_nonneg(beta, X.dtype, "beta")
    if b.ndim:
        raise ValueError("`beta` must be a scalar here.")
    return _score_rows_core(X, b, include_self)


@functools.partial(jax.jit, static_argnames=("include_self", "block", "ties"))
def _particles_core(X, include_self: bool, block: int, ties: str):
    n = X.shape[0]
    nblocks = -(-n // block)
    pad = nblocks * block - n
    idx = jnp.concatenate([jnp.arange(n), jnp.zeros((pad,), jnp.int32)]).reshape(nblocks, block)

    def one(rows):
        G = X[rows] @ X.T  # (block, n)
        if not include_self:
            G = _drop_diagonal(G, rows)
        return _critical_beta_core(G, ties=ties)

    return lax.map(one, idx).reshape(-1)[:n]


def critical_beta_of_particles(
    X: ArrayLike, *, include_self: bool = False, block: int = 256, ties: str = "inf"
) -> Float[Array, " n"]:
    """beta*_n of every query row of the scores <x_i, x_j> of particles X (n, d).

    Processed in blocks of `block` queries (memory O(block n)); self-scores excluded by
    default (see `score_rows`), so each query sees n - 1 keys. For X uniform on S^{d-1} the
    median over queries follows ``predicted_critical_beta("sphere_cosine", n - 1, d=d)``.

    **Arguments:**

    - `X`: (n, d) particles on the unit sphere, n >= 3.
    - `include_self`: keep the self-score <x_i, x_i> = 1 in each row (default False).
    - `block`: queries per block, a positive integer (default 256; capped at n).
    - `ties`: "inf" (default) or "ignore", as in `critical_beta`.

    **Returns:** an array of shape (n,), beta*_n of row i of the scores <x_i, x_j> (beta = 1;
    the scale of beta <x_i, x_j> is beta*_n / beta).

    **Raises:** `ValueError` if `ties` is not "inf" or "ignore", or if `X` is not (n, d)
    with n >= 3, contains NaN or inf, or has rows off the unit sphere.
    """
    check_ties(ties)
    X = check_particles(X)
    return _particles_core(X, include_self, int(min(block, X.shape[0])), ties)
