"""Centred kernel: self-attention velocities with relative precision per particle.

The tangent part of the softmax mean of self-attention is written in difference form,

    T_i = P_{x_i} sum_j p_ij (x_j - x_i),      p_ij = softmax_j(beta <x_i, x_j> + log w_j),

which equals P_{x_i} Y_i because sum_j p_ij = 1 and P_{x_i} x_i = 0 on the sphere. Each
term is exactly zero for the particle itself and for bit-identical cluster-mates, so the
result keeps its relative precision whatever the size of the forces. The usual form, Y_i
first and the projection after, leaves a round-off floor of about eps |Y_i| on every
velocity: at large beta, after two particles merge, the forces between clusters
(~e^{-beta (1 - cos gap)}) fall below that floor (beta (1 - cos gap) > ~37 in float64)
and the metastable dynamics would be driven by round-off, with wrong signs.

Off the sphere (RK4 stages) the two forms differ by (1 - |x|^2)-terms; both keep the
sphere invariant, so integrators keep their order. Work per tile is O(block^2 d) more
than `Tiled` (the differences), so `select_kernel` picks it only at large beta and
moderate n. `stats` for arbitrary (Q, K, V) is the tiled computation.
"""

from __future__ import annotations

from typing import ClassVar

import jax.numpy as jnp
from jax import lax

from ..sphere import project
from ._base import (
    AbstractKernel,
    KernelError,
    Stats,
    accumulation_dtype,
    check_precision,
    dot_nt,
    pad_rows,
)
from .tiled import Tiled


class Centred(AbstractKernel):
    """Tiled statistics; self-attention tangents summed term by term in difference form.

    **Arguments:**

    - `block_q`, `block_k`: tile sizes (a tile holds block_q x block_k x d differences).
    - `precision`: "highest" (default), "high" or "default" for float32 products.
    """

    name: ClassVar[str] = "centred"
    block_q: int = 256
    block_k: int = 256
    precision: str = "highest"

    def __check_init__(self):
        Tiled(self.block_q, self.block_k, self.precision)  # same field checks
        check_precision(self.precision)

    def stats(self, Q, K, V, beta, log_w) -> Stats:
        return Tiled(self.block_q, self.block_k, self.precision).stats(Q, K, V, beta, log_w)

    def tangent_stats(self, X, beta, log_w) -> Stats:
        n, d = X.shape
        dtype = X.dtype
        if jnp.dtype(dtype) != accumulation_dtype(dtype):
            raise KernelError(f"{self!r} needs float32 or float64 points; got {dtype}.")
        block_q, block_k = min(self.block_q, n), min(self.block_k, n)
        beta = jnp.asarray(beta, dtype)
        Qb = pad_rows(X, block_q).reshape(-1, block_q, d)
        Kb = pad_rows(X, block_k).reshape(-1, block_k, d)
        Wb = pad_rows(log_w.astype(dtype), block_k, value=-jnp.inf).reshape(-1, block_k)
        precision = self.precision

        def row_block(q):
            def body(carry, kw):
                m_old, s_old, a_old = carry
                k, w = kw
                scores = beta * dot_nt(q, k, precision, dtype) + w[None, :]
                m_new = jnp.maximum(m_old, jnp.max(scores, axis=1))
                m_ref = jnp.where(jnp.isfinite(m_new), m_new, 0.0)
                scale = jnp.exp(m_old - m_ref)
                p = jnp.exp(scores - m_ref[:, None])
                diff = k[None, :, :] - q[:, None, :]  # exact zero for identical points
                a_new = a_old * scale[:, None] + jnp.sum(p[:, :, None] * diff, axis=1)
                return (m_new, s_old * scale + jnp.sum(p, axis=1), a_new), None

            init = (
                jnp.full((q.shape[0],), -jnp.inf, dtype),
                jnp.zeros((q.shape[0],), dtype),
                jnp.zeros((q.shape[0], d), dtype),
            )
            (m, s, a), _ = lax.scan(body, init, (Kb, Wb))
            m_ref = jnp.where(jnp.isfinite(m), m, 0.0)
            return m_ref + jnp.log(s), a / s[:, None]

        L, D = lax.map(row_block, Qb)
        L, D = L.reshape(-1)[:n], D.reshape(-1, d)[:n]
        return Stats(L, project(X, D))

    def check(self, nq, d, dtype, *, nk=None, e=None):
        super().check(nq, d, dtype, nk=nk, e=e)
        if jnp.dtype(dtype) != accumulation_dtype(dtype):
            raise KernelError(
                f"{self!r} keeps float32 / float64 precision; got {jnp.dtype(dtype)} points."
            )
