"""Tiled kernel: row blocks x key blocks with an online (flash-attention style) log-sum-exp.

For each block of block_q queries, the key blocks are visited in turn (lax.scan) carrying
the running maximum m, the running sum s and the running weighted sum a:

    m' = max(m, max_j S_ij),   s' = s e^{m - m'} + sum_j e^{S_ij - m'},
    a' = a e^{m - m'} + sum_j e^{S_ij - m'} v_j,        L = m + log s,  Y = a / s.

Memory O((nq + nk) d + block_q block_k): never more than one tile of scores. Ragged
sizes are padded (keys with log-weight -inf, queries dropped from the result).
"""

from __future__ import annotations

from typing import ClassVar

import jax.numpy as jnp
from jax import lax

from ._base import (
    AbstractKernel,
    Stats,
    accumulation_dtype,
    check_block_sizes,
    check_precision,
    dot_nn,
    dot_nt,
    pad_rows,
)

# On a 2-core AMD EPYC, 512 x 1024 tiles were the fastest of those tried (benchmarks/);
# on an H100 4096 x 4096 tiles were 4x faster than 512 x 1024 (see select.py).
BLOCK_Q = 512
BLOCK_K = 1024


class Tiled(AbstractKernel):
    """(L, Y) tile by tile, memory O(n d + block_q block_k).

    **Arguments:**

    - `block_q`, `block_k`: tile sizes (clipped to the problem size).
    - `precision`: "highest" (default), "high" or "default" for float32 products.
    """

    name: ClassVar[str] = "tiled"
    block_q: int = BLOCK_Q
    block_k: int = BLOCK_K
    precision: str = "highest"

    def __check_init__(self):
        check_block_sizes(self, "block_q", "block_k")
        check_precision(self.precision)

    def stats(self, Q, K, V, beta, log_w) -> Stats:
        nq, nk = Q.shape[0], K.shape[0]
        block_q = min(self.block_q, nq)
        block_k = min(self.block_k, nk)
        dtype = jnp.result_type(Q, K, V)
        acc = accumulation_dtype(dtype)
        beta = jnp.asarray(beta, acc)
        Qb = pad_rows(Q.astype(dtype), block_q).reshape(-1, block_q, Q.shape[1])
        Kb = pad_rows(K.astype(dtype), block_k).reshape(-1, block_k, K.shape[1])
        Vb = pad_rows(V.astype(acc), block_k).reshape(-1, block_k, V.shape[1])
        Wb = pad_rows(log_w.astype(acc), block_k, value=-jnp.inf).reshape(-1, block_k)
        precision = self.precision

        def row_block(q):
            def body(carry, kvw):
                m_old, s_old, a_old = carry
                k, v, w = kvw
                scores = beta * dot_nt(q, k, precision, acc) + w[None, :]
                m_new = jnp.maximum(m_old, jnp.max(scores, axis=1))
                # Rows that have seen only -inf so far keep a finite reference point.
                m_ref = jnp.where(jnp.isfinite(m_new), m_new, 0.0)
                scale = jnp.exp(m_old - m_ref)
                p = jnp.exp(scores - m_ref[:, None])
                s_new = s_old * scale + jnp.sum(p, axis=1)
                a_new = a_old * scale[:, None] + dot_nn(p, v, precision, acc)
                return (m_new, s_new, a_new), None

            init = (
                jnp.full((q.shape[0],), -jnp.inf, acc),
                jnp.zeros((q.shape[0],), acc),
                jnp.zeros((q.shape[0], V.shape[1]), acc),
            )
            (m, s, a), _ = lax.scan(body, init, (Kb, Vb, Wb))
            m_ref = jnp.where(jnp.isfinite(m), m, 0.0)
            return m_ref + jnp.log(s), a / s[:, None]

        L, Y = lax.map(row_block, Qb)
        return Stats(L.reshape(-1)[:nq], Y.reshape(-1, V.shape[1])[:nq].astype(dtype))
