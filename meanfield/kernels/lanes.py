"""Lanes kernel: many tiny self-interacting systems at once, one system per SIMD lane.

For S systems of n points in R^d (an ensemble over seeds and betas), the batched
statistics are computed with the systems on the minor (vector) axis and a loop over the
keys j: for each j, one fused pass over the (n, S) array

    E_ij = beta (<x_i, x_j> - 1) + log w_j,   Z_i += e^{E_ij},   A_i += e^{E_ij} x_j,

so every exponential is computed once, nothing of size n^2 S is materialised, and the
vector units run across systems. On the sphere <x_i, x_j> <= 1, so the exponent is
bounded by log w_j without a running max; the self term gives Z_i >= w_i. The price: a
zero-weight row whose keys all sit beyond e^{-2 beta} would underflow, so `prepare`
refuses beta > (max_exponent - 10) / 2 (about 39 in float32).

Then L_i = beta + log Z_i and the tangent mean T_i = P_{x_i} (A_i / Z_i). Measured on the
2-core CPU for 2048 SA systems, n = 32, d = 2, 300 Euler steps (f32): the whole
`ensemble` run took 0.39 s, against 0.92 s for plain vmapped JAX and 4.6 s for batched
NumPy (benchmarks/RESULTS.md). One system at a time (`stats`), it is the dense kernel.
"""

from __future__ import annotations

from typing import ClassVar

import jax.numpy as jnp
from jax import lax

from ._base import AbstractKernel, KernelError, Stats, accumulation_dtype, max_exponent
from .dense import Dense

#: Largest d written per coordinate.
MAX_DIM = 8
#: Keys per iteration of the loop over j (measured: 4 beat 1 and 32 on the 2-core CPU).
UNROLL = 4


class Lanes(AbstractKernel):
    """Batched self-interaction statistics with the systems on the vector lanes.

    For use through `batched_tangent_stats` (ensembles); a single system's `stats` is
    `Dense().stats`. Needs points on the sphere (the bounded exponent) and d <= 8.
    """

    name: ClassVar[str] = "lanes"
    max_dim: ClassVar[int | None] = MAX_DIM

    def stats(self, Q, K, V, beta, log_w) -> Stats:
        return Dense().stats(Q, K, V, beta, log_w)

    def batched_tangent_stats(self, Xs, beta, log_w) -> Stats:
        """Xs (S, n, d) points on the sphere, beta (S,), shared log-weights (n,) ->
        Stats(L (S, n), T (S, n, d)): `lanes_tangent_stats` between two transposes."""
        L, T = self.lanes_tangent_stats(jnp.transpose(Xs, (2, 1, 0)), beta, log_w)
        return Stats(L.T, jnp.transpose(T, (2, 1, 0)))

    def lanes_tangent_stats(self, XP, beta, log_w) -> Stats:
        """The lanes layout itself: XP (d, n, S) coordinate planes of S systems on the
        sphere, beta (S,), log_w (n,) -> Stats(L (n, S), T (d, n, S)) (module docstring).
        An ensemble keeps its state in this layout for the whole run: no transposes."""
        d, n, S = XP.shape
        acc = accumulation_dtype(XP.dtype)
        cols = [XP[k].astype(acc) for k in range(d)]  # d planes (n, S)
        beta = jnp.broadcast_to(jnp.asarray(beta, acc), (S,))
        log_w = log_w.astype(acc)

        def key(j, sums):
            Z, A = sums
            G = sum(c * c[j] for c in cols)  # <x_i, x_j> for every i and system, (n, S)
            P = jnp.exp(beta * (G - 1) + log_w[j])
            return Z + P, tuple(a + P * c[j] for a, c in zip(A, cols, strict=True))

        zero = jnp.zeros((n, S), acc)
        Z, A = lax.fori_loop(0, n, key, (zero, (zero,) * d), unroll=UNROLL)
        Y = [a / Z for a in A]
        r = sum(y * c for y, c in zip(Y, cols, strict=True))
        T = jnp.stack([y - r * c for y, c in zip(Y, cols, strict=True)])
        return Stats(beta[None, :] + jnp.log(Z), T.astype(XP.dtype))

    def prepare(self, nq: int, d: int, dtype, *, beta=None, nk: int | None = None):
        self.check(nq, d, dtype, nk=nk)
        limit = (max_exponent(accumulation_dtype(dtype)) - 10) / 2
        if beta is not None and float(beta) > limit:
            raise KernelError(
                f"{self!r}: beta = {float(beta):.4g} > {limit:.1f}, where the bounded exponent "
                f"beta (<x, y> - 1) can underflow in {jnp.dtype(dtype)}; use Dense or Centred."
            )
        return self
