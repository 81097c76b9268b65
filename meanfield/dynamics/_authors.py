"""The perceptron of the paper's own code (arXiv 2601.21366,
antonioalvarezl/2026-MLP-Attention-Energy)
as a meanfield `Perceptron`: their descent flow is -(A + u), ours with sign = -1 is -A + u,
so omega_ours = -s. docs/conventions.md has the mapping and the energy relation."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ._perceptron import Perceptron

__all__ = ["authors_draw", "perceptron_from_authors"]


def perceptron_from_authors(
    a, s=None, omega=None, activation: str = "gelu", *, ascending: bool = False
) -> Perceptron:
    """The meanfield `Perceptron` whose flow is the authors' (arXiv 2601.21366 code).

    Their gradient MLP u(x) = P_x sum_k s_k sigma(<a_k, x>) a_k enters their descent flow
    -(A + u); meanfield's sign=-1 flow is -A + u_ours, so omega_ours = -s (and +s when
    their `ascending` is true, with sign=+1). Biases are 0 (their MLP has none).

    **Arguments:**

    - `a`: (k, d) input weights (their `MLPParams.a`, unit rows).
    - `s`: (k,) or (k, 1) scalars s_k; or give instead
    - `omega`: (k, d) their output vectors omega_k = s_k a_k (`MLPParams.omega`); s_k is
      recovered as <omega_k, a_k> / |a_k|^2. A non-gradient omega (not parallel to a_k)
      is refused: it is `MLP(W=-omega.T, A=a, b=0)` with attention="general".
    - `activation`: "gelu" (exact, z Phi(z), as theirs) or "relu".
    - `ascending`: their `ascending` flag.

    **Returns:**

    `mf.Perceptron(a, 0, omega_ours, activation)` with omega_ours = -s (descent) or s.
    """
    if activation not in ("gelu", "relu"):
        raise ValueError(f"their code has activations 'gelu' and 'relu'; got {activation!r}")
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"`a` must have shape (k, d); got {a.shape}")
    if (s is None) == (omega is None):
        raise ValueError("give exactly one of `s` (k,) and `omega` (k, d)")
    if omega is not None:
        omega = np.asarray(omega, dtype=np.float64)
        if omega.shape != a.shape:
            raise ValueError(f"`omega` must have the shape of `a` {a.shape}; got {omega.shape}")
        s = np.sum(omega * a, axis=1) / np.sum(a * a, axis=1)
        residual = np.max(np.abs(omega - s[:, None] * a))
        if residual > 1e-12 * max(1.0, float(np.max(np.abs(omega)))):
            raise ValueError(
                "`omega` is not parallel to `a` (a non-gradient MLP); use "
                "mf.MLP(W=-omega.T, A=a, b=0) with attention='general'"
            )
    s = np.asarray(s, dtype=np.float64).reshape(-1)
    if s.shape != (a.shape[0],):
        raise ValueError(f"`s` must have {a.shape[0]} entries; got shape {s.shape}")
    sign = 1.0 if ascending else -1.0
    dtype = jnp.result_type(float)
    return Perceptron(
        jnp.asarray(a, dtype),
        jnp.zeros(a.shape[0], dtype),
        jnp.asarray(sign * s, dtype),
        activation,
    )


def authors_draw(seed: int = 777, d: int = 2, k: int | None = None):
    """The authors' random gradient perceptron: (a (k, d), s (k,)) from default_rng(seed).

    a = normal((k, d)) with unit rows, then s = normal((k, 1)) (their `sample_mlp_params`,
    weight_scale_mode "std", scale 1, gradient_MLP true); k defaults to d as theirs.

    **Arguments:** `seed` of numpy's default_rng; `d` the dimension; `k` neurons (default d).

    **Returns:** `(a, s)`: NumPy arrays (k, d) and (k,); pass them to
    `perceptron_from_authors(a, s=s)`.
    """
    rng = np.random.default_rng(seed)
    k = d if k is None else int(k)
    a = rng.normal(size=(k, d))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    s = rng.normal(scale=1.0, size=(k, 1))
    return a, s[:, 0]
