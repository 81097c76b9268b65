"""Perceptron potentials: primitives against activations, drift against autodiff."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import meanfield as mf
from meanfield.dynamics import ACTIVATIONS


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_primitive_derivative_is_twice_the_activation(name):
    sigma, phi = ACTIVATIONS[name]
    s = jnp.linspace(-30.0, 30.0, 2001)
    dphi = jax.vmap(jax.grad(phi))(s)
    np.testing.assert_allclose(dphi, 2 * sigma(s), rtol=1e-12, atol=1e-12)


def test_primitives_closed_forms():
    s = jnp.array([-2.0, -0.5, 0.0, 0.7, 3.0])
    _, relu_phi = ACTIVATIONS["relu"]
    np.testing.assert_allclose(relu_phi(s), np.maximum(s, 0) ** 2)
    _, tanh_phi = ACTIVATIONS["tanh"]
    np.testing.assert_allclose(tanh_phi(s), 2 * np.log(np.cosh(s)), rtol=1e-13, atol=1e-15)
    # Large arguments do not overflow: 2 log cosh s ~ 2|s| - 2 log 2.
    np.testing.assert_allclose(tanh_phi(jnp.array(1e4)), 2e4 - 2 * np.log(2), rtol=1e-14)
    _, gelu_phi = ACTIVATIONS["gelu"]
    assert float(gelu_phi(jnp.array(0.0))) == pytest.approx(-0.5)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_drift_is_half_the_projected_gradient_of_the_potential(getkey, name):
    p = mf.Perceptron.random(getkey(), 4, k=6, activation=name, bias_scale=0.5)
    X = mf.uniform_sphere(getkey(), 7, 4)
    grad_v = jax.vmap(jax.grad(lambda x: p.potential(x[None])[0]))(X)
    np.testing.assert_allclose(p.drift(X), mf.project(X, grad_v) / 2, atol=1e-12)
    np.testing.assert_allclose(jnp.sum(p.drift(X) * X, axis=1), 0, atol=1e-12)


def test_potential_matches_numpy(getkey):
    p = mf.Perceptron.random(getkey(), 3, k=5, activation="relu", bias_scale=1.0)
    X = np.asarray(mf.uniform_sphere(getkey(), 9, 3))
    pre = X @ np.asarray(p.a).T + np.asarray(p.b)
    expect = (np.maximum(pre, 0) ** 2) @ np.asarray(p.omega)
    np.testing.assert_allclose(p.potential(X), expect, rtol=1e-12)


def test_bad_perceptron_input():
    with pytest.raises(ValueError, match="activation"):
        mf.Perceptron(jnp.ones((2, 3)), jnp.zeros(2), jnp.ones(2), activation="sigmoid")
    with pytest.raises(ValueError, match="`b`"):
        mf.Perceptron(jnp.ones((2, 3)), jnp.zeros(3), jnp.ones(2))
    with pytest.raises(ValueError, match="`omega`"):
        mf.Perceptron(jnp.ones((2, 3)), jnp.zeros(2), jnp.ones(5))
    with pytest.raises(ValueError, match="`a`"):
        mf.Perceptron(jnp.ones(3), jnp.zeros(2), jnp.ones(2))
    with pytest.raises(ValueError, match="`omega`.*NaN"):
        mf.Perceptron(jnp.ones((2, 3)), jnp.zeros(2), jnp.array([1.0, jnp.nan]))
