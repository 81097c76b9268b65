"""The kernel contract: weighted exponential sums over point clouds.

For queries Q (nq, d), keys K (nk, d), values V (nk, e), log-weights log w (nk,) and an
inverse temperature beta, every kernel computes the statistics

    L_i = log sum_j w_j exp(beta <q_i, k_j>)                     (nq,)
    Y_i = sum_j softmax_j(beta <q_i, k_j> + log w_j) v_j           (nq, e)

so that the USA sum sum_j w_j exp(beta <q_i, k_j>) v_j is exp(L_i) Y_i, the SA sum is Y_i
and the interaction energy iint K dmu dmu is exp(logsumexp_i(log w_i + L_i)). Working with
(L, Y) keeps everything finite for any beta. Keys of weight zero (log w = -inf) contribute
nothing; a row whose keys all have weight zero has L = -inf (its Y is undefined).

`AbstractKernel` is the interface; each backend is one small module (dense, tiled, centred,
spectral, attention, flash, ring). Kernels know no physics: `MeanField` turns statistics
into velocities and energies.

Dtypes: float16 / bfloat16 inputs are accumulated in float32 and L is returned in float32
(a log-normaliser in bfloat16 would lose e^L to 3 digits); Y comes back in the input dtype.
float32 and float64 inputs are computed and returned in their own dtype. float32 products
run at `precision="highest"` by default (no silent TF32 on GPUs); `precision="default"`
opts into the backend's faster products.
"""

from __future__ import annotations

import abc
import math
from typing import ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float

from ..sphere import project

PRECISIONS = {
    "highest": lax.Precision.HIGHEST,
    "high": lax.Precision.HIGH,
    "default": lax.Precision.DEFAULT,
}
LOW_PRECISION = (jnp.dtype(jnp.float16), jnp.dtype(jnp.bfloat16))


class Stats(NamedTuple):
    """Attention statistics of a query set: `L` (nq,) row log-normalisers and `Y` (nq, e)
    softmax-weighted means (see the module docstring)."""

    L: Float[Array, " nq"]
    Y: Float[Array, "nq e"]


class KernelError(ValueError):
    """A kernel was asked for something it cannot do (raised before compiling)."""


class AbstractKernel(eqx.Module):
    """How the weighted exponential sums (L, Y) are computed.

    Subclasses implement `stats`; `log_sums` and `tangent_stats` have generic versions
    that a backend overrides when it can do better. Every field is static configuration
    (block sizes, precision, implementation), so a kernel instance is hashable and part of
    the compiled program, and its repr says exactly what runs.

    Class attributes describe capabilities, checked by `check` before anything compiles:
    `supports_float64`, `supports_values` (arbitrary V; False for kernels whose values
    must be the keys themselves), `max_dim` (largest d and e), `dims` (allowed d, or
    None), `exact` (False for truncated expansions).
    """

    name: ClassVar[str] = "abstract"
    supports_float64: ClassVar[bool] = True
    supports_values: ClassVar[bool] = True
    max_dim: ClassVar[int | None] = None
    dims: ClassVar[tuple[int, ...] | None] = None
    exact: ClassVar[bool] = True

    @abc.abstractmethod
    def stats(
        self,
        Q: Float[Array, "nq d"],
        K: Float[Array, "nk d"],
        V: Float[Array, "nk e"],
        beta,
        log_w: Float[Array, " nk"],
    ) -> Stats:
        """(L, Y) of the module docstring.

        **Arguments:**

        - `Q`, `K`, `V`: queries (nq, d), keys (nk, d), values (nk, e).
        - `beta`: inverse temperature (a scalar, may be traced).
        - `log_w`: log-weights of the keys (nk,); -inf for weight zero.

        **Returns:** `Stats(L, Y)` with L (nq,) and Y (nq, e).
        """

    def log_sums(
        self, Q: Float[Array, "nq d"], K: Float[Array, "nk d"], beta, log_w
    ) -> Float[Array, " nq"]:
        """L_i = log sum_j w_j exp(beta <q_i, k_j>), shape (nq,)."""
        return self.stats(Q, K, K[:, :1], beta, log_w).L

    def log_interaction(self, X: Float[Array, "n d"], beta, log_w) -> Float[Array, ""]:
        """log sum_ij w_i w_j exp(beta <x_i, x_j>): the log of iint K dmu dmu."""
        return jax.nn.logsumexp(self.log_sums(X, X, beta, log_w) + log_w)

    def tangent_stats(self, X: Float[Array, "n d"], beta, log_w) -> Stats:
        """Self-attention of the points X (Q = K = V = X): (L, T) with T_i = P_{x_i} Y_i the
        tangent part of the softmax mean, the direction of the USA / SA velocity."""
        L, Y = self.stats(X, X, X, beta, log_w)
        return Stats(L, project(X, Y))

    def batched_tangent_stats(self, Xs: Float[Array, "S n d"], beta, log_w) -> Stats:
        """`tangent_stats` of S independent systems at once (an ensemble): Xs (S, n, d),
        beta (S,) one per system, log_w (n,) shared -> Stats(L (S, n), T (S, n, d)).
        Generic: a vmap; `Lanes` computes it with the systems on the vector lanes."""
        beta = jnp.broadcast_to(beta, Xs.shape[:1])
        return jax.vmap(self.tangent_stats, in_axes=(0, 0, None))(Xs, beta, log_w)

    # ------------------------------------------------------------------ contract
    def check(self, nq: int, d: int, dtype, *, nk: int | None = None, e: int | None = None):
        """Raise `KernelError` naming this kernel and the reason if it cannot compute the
        statistics of nq queries against nk keys in R^d with values in R^e and `dtype`."""
        e = d if e is None else e
        if jnp.dtype(dtype) == jnp.float64 and not self.supports_float64:
            raise KernelError(f"{self!r} cannot compute in float64: {self._float64_reason()}")
        if self.dims is not None and d not in self.dims:
            raise KernelError(
                f"{self!r} needs points in R^d with d in {self.dims} (the spheres it "
                f"expands on); got d = {d}. Use Tiled or Dense in higher dimensions."
            )
        if self.max_dim is not None and max(d, e) > self.max_dim:
            raise KernelError(
                f"{self!r} supports head sizes up to {self.max_dim}; got d = {d}, e = {e}. "
                "Use Tiled or Attention."
            )

    def _float64_reason(self) -> str:
        return "it computes in float32 or lower; use Dense, Tiled or Centred for float64."

    def prepare(self, nq: int, d: int, dtype, *, beta=None, nk: int | None = None):
        """This kernel, checked and with any size- or beta-dependent choice fixed (called
        once, outside jit, by every entry point). Returns an `AbstractKernel`."""
        self.check(nq, d, dtype, nk=nk)
        return self


# ---------------------------------------------------------------------- shared helpers
def accumulation_dtype(dtype):
    """float32 for float16 / bfloat16 inputs, else the dtype itself."""
    return jnp.promote_types(dtype, jnp.float32)


def log_dtype(dtype):
    """The dtype L is returned in (the accumulation dtype)."""
    return accumulation_dtype(dtype)


def lax_precision(precision: str):
    """`lax.Precision` of a kernel's `precision` field."""
    try:
        return PRECISIONS[precision]
    except KeyError:
        raise KernelError(
            f"`precision` must be one of {tuple(PRECISIONS)}; got {precision!r}."
        ) from None


def check_precision(precision: str) -> str:
    lax_precision(precision)
    return precision


def check_block_sizes(kernel, *fields: str) -> None:
    """Raise `KernelError` naming the kernel and the field unless each is an int >= 1."""
    for field in fields:
        value = getattr(kernel, field)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise KernelError(
                f"{type(kernel).__name__} `{field}` must be a positive integer; got {value!r}."
            )


def bounded_sums_exact(s, log_w):
    """Whether row sums computed with a bounded exponent and no running maximum (the
    Gaussian form of `Symmetric` and `Fused`) are exact to relative precision: every s_i
    in [n tiny / eps, max] of its dtype (below, flushed subnormal terms could cost relative
    precision; above, it overflowed), or no weight at all (every L = -inf anyway).

    **Arguments:** `s` (..., n) row sums; `log_w` the log-weights. **Returns:** a bool scalar.
    """
    finfo = jnp.finfo(s.dtype)
    floor = s.shape[-1] * float(finfo.tiny) / float(finfo.eps)
    return jnp.all((s >= floor) & (s <= float(finfo.max))) | jnp.all(jnp.isneginf(log_w))


def dot_nt(a, b, precision: str, acc_dtype):
    """a @ b.T with f32 (or f64) accumulation at the requested precision."""
    return lax.dot_general(
        a,
        b,
        (((1,), (1,)), ((), ())),
        precision=lax_precision(precision),
        preferred_element_type=acc_dtype,
    )


def dot_nn(a, b, precision: str, acc_dtype):
    """a @ b with f32 (or f64) accumulation at the requested precision."""
    return lax.dot_general(
        a,
        b,
        (((1,), (0,)), ((), ())),
        precision=lax_precision(precision),
        preferred_element_type=acc_dtype,
    )


def pad_rows(x, multiple: int, value=0.0):
    """Pad the leading axis of x up to a multiple of `multiple` with `value` (a scalar, or a
    row of x's trailing shape, e.g. a unit vector so padded points stay on the sphere)."""
    pad = (-x.shape[0]) % multiple
    if pad == 0:
        return x
    fill = jnp.broadcast_to(jnp.asarray(value, x.dtype), (pad,) + x.shape[1:])
    return jnp.concatenate([x, fill], axis=0)


def combine_stats(
    L1: Float[Array, " n"], Y1: Float[Array, "n e"], L2: Float[Array, " n"], Y2: Float[Array, "n e"]
) -> Stats:
    """Merge the statistics of two disjoint key sets (online log-sum-exp).

    L = log(e^{L1} + e^{L2}),  Y = e^{L1 - L} Y1 + e^{L2 - L} Y2.

    A key set of zero total weight has L = -inf and contributes nothing (its Y, possibly
    NaN from 0/0, is ignored); two such sets give L = -inf, Y = 0.

    **Arguments:** `L1`, `L2` (n,) log-normalisers; `Y1`, `Y2` (n, e) weighted means.

    **Returns:** the `Stats` of the union of the two key sets.
    """
    L = jnp.logaddexp(L1, L2)
    ref = jnp.where(jnp.isfinite(L), L, 0.0)
    a1 = jnp.where(jnp.isfinite(L1), jnp.exp(L1 - ref), 0.0)
    a2 = jnp.where(jnp.isfinite(L2), jnp.exp(L2 - ref), 0.0)
    Y1 = jnp.where(jnp.isfinite(L1)[:, None], Y1, 0.0)
    Y2 = jnp.where(jnp.isfinite(L2)[:, None], Y2, 0.0)
    return Stats(L, (a1[:, None] * Y1 + a2[:, None] * Y2).astype(Y1.dtype))


def empty_stats(nq: int, e: int, dtype) -> Stats:
    """Statistics of an empty key set: L = -inf, Y = 0 (the identity of `combine_stats`).

    **Arguments:** `nq` queries, `e` value width, `dtype` of Y.

    **Returns:** `Stats(L (nq,), Y (nq, e))`.
    """
    return Stats(jnp.full((nq,), -jnp.inf, log_dtype(dtype)), jnp.zeros((nq, e), dtype))


def log_masses(m: Float[Array, " n"]) -> Float[Array, " n"]:
    """log m with log 0 = -inf (zero-mass particles feel the field but exert none).

    **Arguments:** `m` (n,) non-negative masses. **Returns:** (n,) log-weights.
    """
    return jnp.where(m > 0, jnp.log(jnp.where(m > 0, m, 1.0)), -jnp.inf)


def max_exponent(dtype) -> float:
    """Largest x with exp(x) finite in `dtype` (about 88.7 in float32, 709.8 in float64).

    **Arguments:** `dtype` a float dtype. **Returns:** a Python float.
    """
    return math.log(float(jnp.finfo(dtype).max))


def is_low_precision(dtype) -> bool:
    return jnp.dtype(dtype) in LOW_PRECISION


def default_backend() -> str:
    """jax.default_backend(), "cpu" | "gpu" | "tpu"."""
    return jax.default_backend()
