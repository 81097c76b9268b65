"""The authors' conventions (arXiv 2601.21366, code antonioalvarezl/2026-MLP-Attention-Energy)
and meanfield's, side by side; a converter of their perceptron parameters.

Their code (`wgf_circle`, `wgf_sphere`) moves particles by

    dx_i/dt = -(A(x_i) + u(x_i))                     (gradient descent, ascending=false)
    A(x) = (1/n) sum_j exp(beta(<x, x_j> - 1)) P_x x_j,
    u(x) = P_x sum_k omega_k sigma(<a_k, x>),   omega_k = s_k a_k (a "gradient MLP"),

a_k unit vectors (k, d), s_k scalars. meanfield's `MeanField(beta, sign=-1,
shift_kernel=True, perceptron=Perceptron(a, 0, omega_ours))` moves them by

    dx_i/dt = -A(x_i) + P_x sum_k omega_ours_k sigma(<a_k, x>) a_k,

so the two flows are the same exactly when omega_ours = -s (`perceptron_from_authors`).
With ascending=true their flow is +(A + u): sign=+1 and omega_ours = +s.

Energies. Theirs is

    E_theirs = (1/(2 beta)) iint exp(beta(<x, y> - 1)) dmu dmu
               + (1/2) int sum_k s_k psi(<a_k, x>) dmu,
    psi(z) = max(z, 0)^2 (ReLU),   psi(z) = z^2 Phi(z) + z phi(z) (GELU),

and meanfield's `energy` (the function our flow ascends) is

    F_ours = -(1/(2 beta)) iint exp(beta(<x, y> - 1)) dmu dmu
             + (1/2) int sum_k omega_ours_k phi_ours(<a_k, x>) dmu,
    phi_ours(z) = (z^2 - 1) Phi(z) + z phi(z)   (GELU; phi_ours' = 2 z Phi(z) = 2 sigma(z)).

Their GELU "primitive" has derivative psi'(z) = 2 z Phi(z) + phi(z), not 2 sigma(z): it
differs from phi_ours by psi - phi_ours = Phi(z), so on the same state

    F_ours = -E_theirs + (1/2) int sum_k s_k Phi(<a_k, x>) dmu          (GELU)
    F_ours = -E_theirs                                                  (ReLU, exactly)

(`energy_correction` is the last term). Their plotted GELU energy is
therefore not exactly the Lyapunov function of their flow; F_ours is (it increases along
the flow, equivalently -F_ours decreases). Note: issue 21 states the correction with a
minus sign, -(1/2) int sum s Phi; the derivation above and the test
tests/reproduce/test_conventions.py (to 1e-12 on a random state) give the plus sign.

Particles and draws of their d = 2 experiment: angles theta_i from
`numpy.random.default_rng(42).uniform(0, 2 pi, n)`, x_i = (cos theta_i, sin theta_i);
perceptron from `default_rng(777)`: a = normal((k, d)) normalised by rows, then
s = normal((k, 1)) (`authors_draw`). Their Euler step in angles, theta <- theta + dt
omega(theta), is exactly meanfield's method="geodesic" on S^1.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr

from meanfield.dynamics import authors_draw, perceptron_from_authors

__all__ = [
    "authors_draw",
    "authors_particles",
    "energy_correction",
    "perceptron_from_authors",
]


def authors_particles(seed: int = 42, n: int = 1000):
    """The authors' initial angles on S^1: default_rng(seed).uniform(0, 2 pi, n); (n,)."""
    return np.random.default_rng(seed).uniform(0.0, 2.0 * np.pi, size=n)


def energy_correction(X, a, s, activation: str = "gelu", m=None):
    """F_ours + E_theirs on the state (X, m): (1/2) int sum_k s_k Phi(<a_k, x>) dmu for
    GELU, 0 for ReLU (module docstring), so that F_ours = -E_theirs + energy_correction.

    **Arguments:** points `X` (n, d); their `a` (k, d) and `s` (k,); `activation`
    "gelu" or "relu"; masses `m` (n,) (default uniform).

    **Returns:** the correction, a scalar.
    """
    X = jnp.asarray(X)
    n = X.shape[0]
    m = jnp.full((n,), 1.0 / n, X.dtype) if m is None else jnp.asarray(m, X.dtype)
    if activation == "relu":
        return jnp.zeros((), X.dtype)
    z = X @ jnp.asarray(a, X.dtype).T
    return 0.5 * jnp.sum(m * (ndtr(z) @ jnp.asarray(s, X.dtype).reshape(-1)))
