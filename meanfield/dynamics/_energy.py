"""Mean-field attention energy of a weighted atomic measure mu = sum_i m_i delta_{x_i}.

    F_s[mu] = (s / (2 beta)) iint K_beta(x, y) dmu(x) dmu(y) + (1/2) int v dmu,
    K_beta(x, y) = exp(beta <x, y>)     (or exp(beta(<x, y> - 1)) with shift_kernel)

The interaction double integral is computed in the log domain by the model's kernel
(`kernel.log_interaction`: logsumexp_{ij}(beta <x_i, x_j> + log m_i + log m_j)), so it is
finite for any beta; only the final exponential can overflow, and then a clear error is
raised (`safe_exp`).
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._validation import is_concrete
from ..kernels import max_exponent


def perceptron_energy(X: Float[Array, "n d"], m: Float[Array, " n"], perceptron) -> Array:
    """(1/2) int v dmu = (1/2) sum_i m_i v(x_i); zero without a perceptron."""
    if perceptron is None:
        return jnp.zeros((), X.dtype)
    return 0.5 * jnp.sum(m * perceptron.potential(X))


def safe_exp(log_value, what: str):
    """exp(log_value), raising a clear error (eagerly or via error_if) if it overflows."""
    if is_concrete(log_value):
        limit = max_exponent(jnp.result_type(log_value))
        if float(log_value) > limit:
            raise ValueError(
                f"The {what} is exp({float(log_value):.4g}), which overflows "
                f"{jnp.result_type(log_value)}. Use `log_energy`, `rescaled_energy`, "
                "`shift_kernel=True`, or enable float64 (jax_enable_x64)."
            )
        return jnp.exp(log_value)
    value = jnp.exp(log_value)
    return eqx.error_if(
        value,
        ~jnp.isfinite(value),
        f"The {what} overflows its dtype; use log_energy, rescaled_energy or shift_kernel.",
    )
