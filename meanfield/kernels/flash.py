"""Flash kernel: a Pallas flash-attention kernel for (L, Y) with log-weights.

Forward (one program per block of block_q queries; keys visited block_k at a time):

    S = (beta Q_b) K_j^T + log w_j,    m' = max(m, max_j S),   c = e^{m - m'},
    s' = c s + sum_j e^{S - m'},       a' = c a + e^{S - m'} V_j,
    L = m + log s,   Y = a / s.

Keys of weight zero get a huge finite negative log-weight (no inf inside the kernel);
rows that only ever see such keys come out with L = -inf. Scores accumulate in float32
(float64 for float64 inputs); float32 products run at `precision` ("highest": IEEE, no
TF32). Feature widths are zero-padded to a power of two >= 16 and the point counts to
the block sizes (Triton's tile constraints).

Backward (jax.custom_vjp), recomputing p_ij = e^{S_ij - L_i} tile by tile in plain JAX
(memory O(n d + tile)): with cotangents (gL, gY) and delta_i = <gY_i, Y_i>,

    gS_ij = p_ij (gL_i + <gY_i, v_j> - delta_i),
    g(beta Q)_i = sum_j gS_ij k_j,   gK_j = sum_i gS_ij (beta q_i),
    gV_j = sum_i p_ij gY_i,          g(log w)_j = sum_i gS_ij,

and beta's gradient follows from beta Q by the chain rule. On a CPU the kernel runs in
Pallas interpret mode (the same kernel body, for tests); on a GPU it is compiled by
Triton.
"""

from __future__ import annotations

import functools
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from ._base import (
    AbstractKernel,
    KernelError,
    Stats,
    accumulation_dtype,
    check_precision,
    default_backend,
    dot_nn,
    dot_nt,
    lax_precision,
    pad_rows,
)

MAX_HEAD = 256
BACKWARD_BLOCK = 512


def _power_of_two(x: int, low: int = 16) -> int:
    return max(low, 1 << (max(x, 1) - 1).bit_length())


class Flash(AbstractKernel):
    """(L, Y) by a fused Pallas kernel with an online log-sum-exp.

    **Arguments:**

    - `block_q`, `block_k`: tile sizes (powers of two; clipped for small problems).
    - `interpret`: run the kernel in Pallas interpret mode; None: everywhere but on a GPU.
    - `precision`: "highest" (default; IEEE float32 products), "high" or "default".
    - `num_warps`, `num_stages`: Triton launch parameters on a GPU.
    """

    name: ClassVar[str] = "flash"
    max_dim: ClassVar[int] = MAX_HEAD
    block_q: int = 64
    block_k: int = 64
    interpret: bool | None = None
    precision: str = "highest"
    num_warps: int = 4
    num_stages: int = 2

    def __check_init__(self):
        for field in ("block_q", "block_k"):
            value = getattr(self, field)
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or value < 16
                or value & (value - 1)
            ):
                raise KernelError(f"Flash `{field}` must be a power of two >= 16; got {value!r}.")
        check_precision(self.precision)

    def _interpret(self) -> bool:
        return default_backend() != "gpu" if self.interpret is None else bool(self.interpret)

    def stats(self, Q, K, V, beta, log_w) -> Stats:
        dtype = jnp.result_type(Q, K, V)
        (nq, d), (nk, e) = Q.shape, V.shape
        self.check(nq, d, dtype, nk=nk, e=e)
        acc = accumulation_dtype(dtype)
        mask = -0.7 * float(jnp.finfo(acc).max)
        block_q = min(self.block_q, _power_of_two(nq))
        block_k = min(self.block_k, _power_of_two(nk))
        D, E = _power_of_two(d), _power_of_two(e)
        qs = (jnp.asarray(beta, acc) * Q.astype(acc)).astype(dtype)
        qs = jnp.pad(pad_rows(qs, block_q), ((0, 0), (0, D - d)))
        k = jnp.pad(pad_rows(K.astype(dtype), block_k), ((0, 0), (0, D - d)))
        v = jnp.pad(pad_rows(V.astype(dtype), block_k), ((0, 0), (0, E - e)))
        lw = jnp.maximum(log_w.astype(acc), mask)
        lw = pad_rows(lw, block_k, value=mask)
        config = _Config(
            block_q,
            block_k,
            self._interpret(),
            self.precision,
            mask,
            self.num_warps,
            self.num_stages,
        )
        L, Y = _flash(config, qs, k, v, lw)
        L = jnp.where(0.5 * mask < L, L, -jnp.inf)[:nq]
        return Stats(L, Y[:nq, :e].astype(dtype))


class _Config(NamedTuple):
    """Static parameters of one flash call (hashable: custom_vjp's non-differentiable arg)."""

    block_q: int
    block_k: int
    interpret: bool
    precision: str
    mask: float
    num_warps: int = 4
    num_stages: int = 2


def _forward_kernel(q_ref, k_ref, v_ref, w_ref, L_ref, Y_ref, *, config, acc):
    block_k = config.block_k
    n_blocks = k_ref.shape[0] // block_k
    precision = lax_precision(config.precision)
    q = q_ref[...]
    block_q = q.shape[0]

    def body(j, carry):
        m, s, a = carry
        keys = pl.dslice(j * block_k, block_k)
        k = k_ref[keys, :]
        v = v_ref[keys, :]
        w = w_ref[keys]
        S = jnp.dot(q, k.T, precision=precision, preferred_element_type=acc) + w[None, :]
        m_new = jnp.maximum(m, jnp.max(S, axis=1))
        corr = jnp.exp(m - m_new)
        p = jnp.exp(S - m_new[:, None])
        s = s * corr + jnp.sum(p, axis=1)
        pv = jnp.dot(p.astype(v.dtype), v, precision=precision, preferred_element_type=acc)
        return m_new, s, a * corr[:, None] + pv

    init = (
        jnp.full((block_q,), -jnp.inf, acc),
        jnp.zeros((block_q,), acc),
        jnp.zeros((block_q, v_ref.shape[1]), acc),
    )
    m, s, a = lax.fori_loop(0, n_blocks, body, init)
    L_ref[...] = (m + jnp.log(s)).astype(L_ref.dtype)
    Y_ref[...] = (a / s[:, None]).astype(Y_ref.dtype)


def _forward(config, qs, k, v, lw):
    nq, D = qs.shape
    nk, E = v.shape
    acc = lw.dtype
    kwargs = {}
    if not config.interpret:
        from jax.experimental.pallas import triton as plgpu

        kwargs["compiler_params"] = plgpu.CompilerParams(
            num_warps=config.num_warps, num_stages=config.num_stages
        )
    bq = config.block_q
    return pl.pallas_call(
        functools.partial(_forward_kernel, config=config, acc=acc),
        grid=(nq // bq,),
        in_specs=[
            pl.BlockSpec((bq, D), lambda i: (i, 0)),
            pl.BlockSpec((nk, D), lambda i: (0, 0)),
            pl.BlockSpec((nk, E), lambda i: (0, 0)),
            pl.BlockSpec((nk,), lambda i: (0,)),
        ],
        out_specs=[pl.BlockSpec((bq,), lambda i: (i,)), pl.BlockSpec((bq, E), lambda i: (i, 0))],
        out_shape=[
            jax.ShapeDtypeStruct((nq,), acc),
            jax.ShapeDtypeStruct((nq, E), qs.dtype),
        ],
        interpret=config.interpret,
        name="meanfield_flash_stats",
        **kwargs,
    )(qs, k, v, lw)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _flash(config, qs, k, v, lw):
    L, Y = _forward(config, qs, k, v, lw)
    return L, Y


def _flash_fwd(config, qs, k, v, lw):
    L, Y = _forward(config, qs, k, v, lw)
    return (L, Y), (qs, k, v, lw, L, Y)


def _blocks(x, block):
    return pad_rows(x, block).reshape(-1, block, *x.shape[1:])


def _flash_bwd(config, res, cotangents):
    qs, k, v, lw, L, Y = res
    gL, gY = cotangents
    acc = lw.dtype
    precision = config.precision
    nq, nk = qs.shape[0], k.shape[0]
    qs_a, k_a, v_a = qs.astype(acc), k.astype(acc), v.astype(acc)
    gL, gY = gL.astype(acc), gY.astype(acc)
    delta = jnp.sum(gY * Y.astype(acc), axis=1)
    bq, bk = min(BACKWARD_BLOCK, nq), min(BACKWARD_BLOCK, nk)

    def tile(q, Lq, gLq, gYq, dq, kk, vv, ww):
        """p and gS of a (query block, key block) tile."""
        S = dot_nt(q, kk, precision, acc) + ww[None, :]
        p = jnp.exp(S - Lq[:, None])
        gS = p * (gLq[:, None] + dot_nt(gYq, vv, precision, acc) - dq[:, None])
        return p, gS

    query_blocks = tuple(
        _blocks(x, bq) for x in (qs_a, L, gL, gY, delta)
    )  # padded rows: gL = gY = 0, so they contribute nothing
    key_blocks = tuple(_blocks(x, bk) for x in (k_a, v_a, lw))

    def rows(qb):
        q, Lq, gLq, gYq, dq = qb

        def body(gq, kb):
            _, gS = tile(q, Lq, gLq, gYq, dq, *kb)
            return gq + dot_nn(gS, kb[0], precision, acc), None

        gq, _ = lax.scan(body, jnp.zeros_like(q), key_blocks)
        return gq

    def cols(kb):
        kk, vv, ww = kb

        def body(carry, qb):
            gk, gv, gw = carry
            p, gS = tile(*qb, kk, vv, ww)
            gk = gk + dot_nn(gS.T, qb[0], precision, acc)
            gv = gv + dot_nn(p.T, qb[3], precision, acc)
            return (gk, gv, gw + jnp.sum(gS, axis=0)), None

        init = (jnp.zeros_like(kk), jnp.zeros_like(vv), jnp.zeros_like(ww))
        out, _ = lax.scan(body, init, query_blocks)
        return out

    gq = lax.map(rows, query_blocks).reshape(-1, qs.shape[1])[:nq]
    gk, gv, gw = lax.map(cols, key_blocks)
    gk = gk.reshape(-1, k.shape[1])[:nk]
    gv = gv.reshape(-1, v.shape[1])[:nk]
    gw = gw.reshape(-1)[:nk]
    return gq.astype(qs.dtype), gk.astype(k.dtype), gv.astype(v.dtype), gw.astype(lw.dtype)


_flash.defvjp(_flash_fwd, _flash_bwd)
