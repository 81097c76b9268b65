"""How weighted exponential sums over point clouds are computed; no physics here.

    L_i = log sum_j w_j exp(beta <q_i, k_j>),   Y_i = sum_j softmax_j(beta <q_i, k_j> + log w_j) v_j

Every backend is an `AbstractKernel` (an equinox Module) with `stats(Q, K, V, beta, log_w)
-> Stats(L, Y)`, `log_sums(Q, K, beta, log_w) -> L`, `tangent_stats(X, beta, log_w)` and
`log_interaction(X, beta, log_w)` and `batched_tangent_stats(Xs, betas, log_w)` (ensembles);
`REGISTRY` maps names to classes and `select_kernel`
is the one "auto" policy (the table in `select.py`). A new backend is one file, one
registry line, and it passes the contract test in tests/kernels/.
"""

from ._base import (
    AbstractKernel,
    KernelError,
    Stats,
    combine_stats,
    empty_stats,
    log_masses,
    max_exponent,
)
from ._harmonics import error_bound as spectral_error_bound
from ._harmonics import spectral_order
from .attention import Attention
from .centred import Centred
from .dense import Dense
from .flash import Flash
from .fused import Fused
from .lanes import Lanes
from .native import available as native_available
from .ring import Ring, default_mesh
from .select import REGISTRY, centred_beta_threshold, kernel_from, resolve_kernel, select_kernel
from .spectral import Spectral
from .symmetric import Symmetric
from .tiled import Tiled

__all__ = [
    "REGISTRY",
    "AbstractKernel",
    "Attention",
    "Centred",
    "Dense",
    "Flash",
    "Fused",
    "KernelError",
    "Lanes",
    "Ring",
    "Spectral",
    "Stats",
    "Symmetric",
    "Tiled",
    "centred_beta_threshold",
    "combine_stats",
    "default_mesh",
    "empty_stats",
    "kernel_from",
    "log_masses",
    "max_exponent",
    "native_available",
    "resolve_kernel",
    "select_kernel",
    "spectral_error_bound",
    "spectral_order",
]
