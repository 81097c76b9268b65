"""`select_kernel`: the one "auto" policy, and `resolve_kernel` for every entry point.

Selection table for n queries against nk keys in R^d ("pairs" = n nk); the first
matching row wins:

| backend | dtype | problem | kernel |
|---|---|---|---|
| any | any | self-interaction on S^1 / S^2, concrete beta, n >= 16384, and n >= 16 (K+1) (S^1) or 8 (L+1)^2 (S^2) | `Spectral` (order rounded up to 2^k) |
| any | float64 | self-interaction, concrete beta > -log(eps) = 36, n <= 4096 | `Centred` |
| cpu | any | self-interaction, d <= 8, the native loop built here (`native`) | `Fused()` (one native pass, rows or systems on the vector lanes) |
| cpu | any | self-interaction, a batch of >= 64 systems, n <= 128, d <= 8, concrete beta <= (max_exponent - 10) / 2 | `Lanes()` (systems on the vector lanes) |
| cpu | any | pairs <= 512^2, d > 4 | `Dense()` (matmul scores) |
| cpu | any | self-interaction, n >= 1024 and d <= 8, n >= 2048 and d <= 16, or n >= 4096 and d <= 64 | `Symmetric()` (one exponential per unordered pair) |
| cpu | any | larger | `Tiled(512, 1024)` |
| gpu, tpu | any | pairs <= 2^20, or a batch with pairs <= 2^16 each | `Dense("matmul")` |
| gpu | float16, bfloat16 | larger | `Attention("cudnn")` |
| gpu | float32, d and e <= 256 | larger | `Flash()` (Pallas, Triton) |
| tpu | float16, bfloat16 | larger | `Attention("xla")` |
| gpu, tpu | otherwise (float64, wide heads, TPU float32) | larger | `Tiled(4096, 4096)` |

Why: on a 2-core CPU the native fused loop beat every pure-JAX kernel for self-interaction
at d <= 8 at every size measured (n = 16 to 8192 at d = 3, and d = 8: 1.4-3.3x the tiles,
1.3-1.9x the symmetric strips from n = 1024, 1.6-1.8x the lanes layout for 2048 x n = 32 x
d = 2); without it (no compiler, `MEANFIELD_NATIVE=0`) the rows below apply. The 512 x
1024 tiles were the fastest measured, also for small problems at d <= 4 (1.0-1.5x the
dense matmul form single, 1.1-1.4x vmapped; the broadcast-sum scores were 2.5-15x slower on the AVX-512 EPYC of 2026-12-07); for
self-interaction the symmetric strips (half the exponentials) ran 1.15x the tiles at n =
1024 (d <= 8), 1.5x at n = 2048, 1.7x at 4096 and 8192 and 2.1x at 16384 for d = 3, 1.3x
at d = 16, 1.1x at d = 64 from n = 4096 (at d = 64 and n = 2048, or d = 256, where the
products dominate, they did not pay); for ensembles of tiny systems the lanes layout (one
fused pass per key over all systems) ran 2.3x the vmapped dense kernel (2048 x n = 32 x d
= 2); on an H100 the broadcast-sum form blew up XLA:GPU's compile time for ensembles, 4096
x 4096 tiles were 4x faster than 512 x 1024, and cuDNN (bf16) and a Pallas flash kernel
(f32) were 50x and 3-7x faster than the best tiles. Centred keeps forces below e^{-36} to
relative precision (the metastable regime); float32 gets it on request only, its own floor
being 1e-7. float64 never goes to a kernel that cannot do it. Every choice is an instance
whose repr says what it is.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from .._validation import is_concrete
from ._base import (
    AbstractKernel,
    KernelError,
    accumulation_dtype,
    default_backend,
    is_low_precision,
    max_exponent,
)
from ._harmonics import spectral_order
from .attention import Attention
from .centred import Centred
from .dense import Dense
from .flash import MAX_HEAD, Flash
from .fused import MAX_DIM as FUSED_MAX_DIM
from .fused import Fused
from .lanes import MAX_DIM as LANES_MAX_DIM
from .lanes import Lanes
from .native import available as native_available
from .ring import Ring
from .spectral import Spectral
from .symmetric import Symmetric
from .tiled import Tiled

REGISTRY: dict[str, type[AbstractKernel]] = {
    "dense": Dense,
    "tiled": Tiled,
    "centred": Centred,
    "spectral": Spectral,
    "attention": Attention,
    "flash": Flash,
    "ring": Ring,
    "lanes": Lanes,
    "symmetric": Symmetric,
    "fused": Fused,
}

CPU_DENSE_MAX_PAIRS = 512 * 512
CPU_TILED_SMALL_D = 4
ACCELERATOR_DENSE_MAX_PAIRS = 1 << 20
ACCELERATOR_BATCH_MAX_PAIRS = 1 << 16
SPECTRAL_MIN_N = 16384
CENTRED_MAX_N = 4096
LANES_MIN_BATCH = 64
LANES_MAX_N = 128
# (smallest n, largest d) pairs where Symmetric beat Tiled on the 2-core CPU
SYMMETRIC_FIT = ((1024, 8), (2048, 16), (4096, 64))
BACKENDS = ("cpu", "gpu", "tpu")


def centred_beta_threshold(dtype) -> float:
    """beta above which e^{-beta}-sized forces fall below the dtype's round-off floor.

    **Arguments:** `dtype` a float dtype. **Returns:** -log(eps) (36.04 in float64).
    """
    return -math.log(float(jnp.finfo(dtype).eps))


def _spectral_choice(n: int, d: int, beta, tol: float) -> Spectral | None:
    if d not in (2, 3) or n < SPECTRAL_MIN_N or beta is None or not is_concrete(beta):
        return None
    try:
        order = spectral_order(float(beta), d, tol)
    except (ValueError, ImportError):  # beyond the order budget, or no scipy installed
        return None
    order = max(16, 1 << (order - 1).bit_length())  # nearby betas share one compilation
    cost = 16 * (order + 1) if d == 2 else 8 * (order + 1) ** 2
    return Spectral(tol, order) if n >= cost else None


def _symmetric_fit(n, nk, d, e, self_interaction) -> bool:
    if not self_interaction or n != nk or e != d:
        return False
    return any(n >= min_n and d <= max_d for min_n, max_d in SYMMETRIC_FIT)


def _fused_fit(n, nk, d, e, self_interaction, native) -> bool:
    if not self_interaction or n != nk or e != d or d > FUSED_MAX_DIM:
        return False
    return native_available() if native is None else native


def _lanes_fit(n, nk, d, batch, beta, dtype, self_interaction) -> bool:
    if not self_interaction or batch < LANES_MIN_BATCH or n != nk or n > LANES_MAX_N:
        return False
    if d > LANES_MAX_DIM or beta is None or not is_concrete(beta):
        return False
    return float(beta) <= (max_exponent(accumulation_dtype(dtype)) - 10) / 2


def select_kernel(
    n: int,
    d: int,
    *,
    dtype,
    backend: str | None = None,
    batch: int = 1,
    nk: int | None = None,
    e: int | None = None,
    beta=None,
    self_interaction: bool = False,
    spectral_tol: float = 1e-12,
    native: bool | None = None,
) -> AbstractKernel:
    """The kernel for n queries against nk keys (default n) in R^d, values in R^e.

    **Arguments:**

    - `n`, `d`: queries and dimension; `nk`, `e`: keys and value width (default n, d).
    - `dtype`: the dtype of the points.
    - `backend`: "cpu", "gpu" or "tpu" (default `jax.default_backend()`).
    - `batch`: how many such problems run at once (an ensemble's systems).
    - `beta`: the inverse temperature if known (concrete); enables Spectral and Centred.
    - `self_interaction`: queries, keys and values are the same points on the sphere
      (the velocity and energy of a particle system); Spectral and Centred need it.
    - `spectral_tol`: error tolerance for a Spectral choice.
    - `native`: whether `Fused`'s native loop may be used (default: whether it is built and
      loads here, compiling it on first use; `kernels.native_available()`).

    **Returns:** an `AbstractKernel` instance (see the table in the module docstring).
    """
    backend = default_backend() if backend is None else backend
    if backend not in BACKENDS:
        raise KernelError(f"`backend` must be one of {BACKENDS}; got {backend!r}.")
    nk = n if nk is None else nk
    e = d if e is None else e
    dtype = jnp.dtype(dtype)
    if self_interaction:
        spectral = _spectral_choice(n, d, beta, spectral_tol)
        if spectral is not None:
            return spectral
        if (
            dtype == jnp.float64
            and beta is not None
            and is_concrete(beta)
            and float(beta) > centred_beta_threshold(dtype)
            and n <= CENTRED_MAX_N
        ):
            return Centred()
    pairs = n * nk
    if backend == "cpu" and _fused_fit(n, nk, d, e, self_interaction, native):
        return Fused()
    if backend == "cpu" and _lanes_fit(n, nk, d, batch, beta, dtype, self_interaction):
        return Lanes()
    if backend == "cpu":
        if pairs <= CPU_DENSE_MAX_PAIRS and d > CPU_TILED_SMALL_D:
            return Dense()
        if _symmetric_fit(n, nk, d, e, self_interaction):
            return Symmetric()
        return Tiled()
    if pairs <= ACCELERATOR_DENSE_MAX_PAIRS or (batch > 1 and pairs <= ACCELERATOR_BATCH_MAX_PAIRS):
        return Dense(scores="matmul")
    if is_low_precision(dtype):
        return Attention("cudnn" if backend == "gpu" else "xla")
    if backend == "gpu" and dtype == jnp.float32 and max(d, e) <= MAX_HEAD:
        return Flash(block_q=64, block_k=64, interpret=False)
    return Tiled(4096, 4096)


def kernel_from(kernel) -> AbstractKernel | str:
    """A kernel instance from an instance, a REGISTRY name, or "auto" (kept as "auto").

    **Arguments:** `kernel`: an `AbstractKernel`, a key of `REGISTRY` or "auto".

    **Returns:** the instance (a name gives its class with default fields), or "auto".
    Raises `KernelError` listing the registry for anything else.
    """
    if isinstance(kernel, AbstractKernel) or kernel == "auto":
        return kernel
    if isinstance(kernel, str) and kernel in REGISTRY:
        return REGISTRY[kernel]()
    raise KernelError(
        f"`kernel` must be 'auto', a kernel instance or one of {tuple(REGISTRY)}; got {kernel!r}."
    )


def resolve_kernel(kernel, n: int, d: int, *, dtype, beta=None, batch: int = 1, **select_kw):
    """The concrete, checked kernel an entry point runs: "auto" goes to `select_kernel`,
    a name to its REGISTRY class, and the instance is `prepare`d (checked, with any
    beta- or size-dependent choice fixed). Call it once, outside jit.

    **Arguments:** `kernel` (instance, name or "auto"); `n`, `d` the problem; `dtype`;
    `beta` (concrete, if known); `batch` (systems run at once); further `select_kernel`
    keywords (`nk`, `e`, `self_interaction`, `spectral_tol`, `backend`).

    **Returns:** an `AbstractKernel` ready to run.
    """
    kernel = kernel_from(kernel)
    if kernel == "auto":
        kernel = select_kernel(n, d, dtype=dtype, beta=beta, batch=batch, **select_kw)
    return kernel.prepare(n, d, dtype, beta=beta)
