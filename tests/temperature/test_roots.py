"""Implicit scales: they solve their equations, and their derivatives match finite differences."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from meanfield.temperature import (
    beta_at_entropy_fraction,
    beta_at_pmax,
    beta_at_pmax_half,
    p_max,
    softmax_entropy,
)


def test_implicit_scales_solve_their_equations(getkey):
    s = jr.normal(getkey(), (6, 2000))
    b = beta_at_pmax_half(s)
    np.testing.assert_allclose(p_max(s, b), 0.5, rtol=1e-10)
    b9 = beta_at_pmax(s, 0.9)
    np.testing.assert_allclose(p_max(s, b9), 0.9, rtol=1e-10)
    for theta in (0.1, 0.5, 0.9):
        bt = beta_at_entropy_fraction(s, theta)
        np.testing.assert_allclose(softmax_entropy(s, bt), theta * math.log(2000), rtol=1e-9)
    # level <= 1/n: reached at beta = 0.
    assert beta_at_pmax(s[0, :10], 0.05) == 0.0


@pytest.mark.parametrize("kind", ["pmax", "entropy"])
def test_implicit_derivatives_vs_finite_differences(getkey, kind):
    s = 1.5 * jr.normal(getkey(), (3, 500))
    v = jr.normal(getkey(), s.shape)
    if kind == "pmax":
        f = lambda x, lv: beta_at_pmax(x, lv).sum()
        level = 0.7
    else:
        f = lambda x, lv: beta_at_entropy_fraction(x, lv).sum()
        level = 0.4
    h = 1e-6
    gs, gl = jax.grad(f, argnums=(0, 1))(s, level)
    fd_s = (f(s + h * v, level) - f(s - h * v, level)) / (2 * h)
    fd_l = (f(s, level + h) - f(s, level - h)) / (2 * h)
    np.testing.assert_allclose(jnp.vdot(gs, v), fd_s, rtol=1e-6)
    np.testing.assert_allclose(gl, fd_l, rtol=1e-6)
    # Also under jit and vmap.
    gj = jax.jit(jax.grad(f))(s, level)
    np.testing.assert_allclose(gj, gs, rtol=1e-10)
