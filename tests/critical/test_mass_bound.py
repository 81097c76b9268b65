"""The d = 2 mass bound, its limit 0.5742, the concavity angle and the global maximiser."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import meanfield as mf
from meanfield.critical import (
    MASS_BOUND_LIMIT,
    concavity_angle,
    global_maximiser,
    mass_bound,
    stability_report,
)


def test_mass_bound_limit_and_monotonicity(getkey):
    np.testing.assert_allclose(MASS_BOUND_LIMIT, 0.5742, atol=1e-4)
    np.testing.assert_allclose(mass_bound(800.0), MASS_BOUND_LIMIT, rtol=1e-14)
    np.testing.assert_allclose(mass_bound(3.0), MASS_BOUND_LIMIT, rtol=1e-14)  # C = 0: constant
    p = mf.Perceptron.random(getkey(), 2)
    C = float(p.lipschitz_constant())
    np.testing.assert_allclose(C, 2 * np.sum(np.abs(p.omega)))  # unit a_k
    betas = [0.5, 1, 3, 10, 30]
    vals = [mass_bound(b, p) for b in betas]
    assert np.all(np.diff(vals) < 0) and vals[-1] > MASS_BOUND_LIMIT
    np.testing.assert_allclose(mass_bound(200.0, p), MASS_BOUND_LIMIT, rtol=1e-6)
    b = 3.0
    direct = (2 * np.exp(b - 1.5) + C) / (2 * np.exp(b - 1.5) + 0.375 * np.exp(b - 0.125))
    np.testing.assert_allclose(mass_bound(b, p), direct, rtol=1e-14)
    np.testing.assert_allclose(mass_bound(b, p, shift_kernel=True), mass_bound(1e-9, p), rtol=1e-6)
    with pytest.raises(ValueError, match="beta"):
        mass_bound(0.0)


@pytest.mark.parametrize("beta", [0.01, 0.3, 1.0, 7.0, 50.0])
def test_concavity_angle_is_where_the_kernel_second_derivative_changes_sign(beta):
    tc = float(concavity_angle(beta))
    K2 = jax.grad(jax.grad(lambda t: jnp.exp(beta * jnp.cos(t))))
    assert float(K2(0.999 * tc)) < 0 < float(K2(1.001 * tc))
    np.testing.assert_allclose(np.cos(tc), (np.sqrt(1 + 4 * beta**2) - 1) / (2 * beta), rtol=1e-9)


@pytest.mark.slow
def test_global_maximiser_is_the_dirac_at_argmax_v(getkey):
    p = mf.Perceptron.random(getkey(), 3, activation="relu")
    model = mf.MeanField(2.0, sign=1, perceptron=p)
    gm = global_maximiser(model, getkey())
    assert float(gm.residual) <= 1e-10
    Y = mf.uniform_sphere(getkey(), 4000, 3)
    assert float(p.potential(gm.X)[0]) >= float(jnp.max(p.potential(Y)))
    rep = stability_report(model, gm.X, gm.m)
    assert rep.stable
    # F at the maximiser beats F at random measures and random Diracs
    F = float(model.energy(gm.X, gm.m))
    assert float(model.energy(Y[:1], jnp.ones(1))) <= F
    assert float(model.energy(Y[:50])) <= F
    with pytest.raises(ValueError, match="s = \\+1"):
        global_maximiser(mf.MeanField(2.0, sign=-1))
