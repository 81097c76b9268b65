"""Masses: the default is the uniform measure, and the dynamics depend on the measure
only (a particle split into two coincident halves changes nothing for anybody else)."""

import jax.numpy as jnp
import numpy as np
import pytest

import meanfield as mf


def models(getkey, d):
    p = mf.Perceptron.random(getkey(), d)
    return {
        "usa": mf.MeanField(2.0, sign=1, attention="usa"),
        "sa": mf.MeanField(2.0, sign=-1, attention="sa"),
        "usa+perceptron": mf.MeanField(2.0, sign=-1, perceptron=p),
        "general": mf.MeanField(
            2.0, attention="general", value=jnp.eye(d) * 0.5, query_key=jnp.eye(d)
        ),
    }


@pytest.mark.parametrize("name", ["usa", "sa", "usa+perceptron", "general"])
def test_default_masses_are_uniform(getkey, name):
    n, d = 9, 3
    model = models(getkey, d)[name]
    X = mf.uniform_sphere(getkey(), n, d)
    uniform = jnp.full((n,), 1.0 / n)
    np.testing.assert_allclose(model.velocity(X), model.velocity(X, uniform), atol=1e-15)
    skewed = jnp.linspace(1.0, 3.0, n) / jnp.sum(jnp.linspace(1.0, 3.0, n))
    assert not np.allclose(model.velocity(X), model.velocity(X, skewed), atol=1e-6)
    if name != "general":
        np.testing.assert_allclose(model.energy(X), model.energy(X, uniform), rtol=1e-14)
    a = mf.integrate(model, X, dt=0.05, steps=6).final
    b = mf.integrate(model, X, dt=0.05, steps=6, m=uniform).final
    np.testing.assert_allclose(a, b, atol=1e-14)


@pytest.mark.parametrize("attention", ["usa", "sa"])
def test_splitting_a_particle_leaves_the_others_unchanged(getkey, attention):
    """mu = sum m_i delta_{x_i}: duplicating x_0 with masses m_0 / 2 + m_0 / 2 is the same
    measure, so every velocity (the copies' included) and the energy are unchanged."""
    n, d = 7, 3
    X = mf.uniform_sphere(getkey(), n, d)
    m = jnp.linspace(1.0, 2.0, n)
    m = m / jnp.sum(m)
    X2 = jnp.concatenate([X[:1], X])
    m2 = jnp.concatenate([m[:1] / 2, m[:1] / 2, m[1:]])
    model = mf.MeanField(3.0, sign=1, attention=attention)
    v, v2 = model.velocity(X, m), model.velocity(X2, m2)
    np.testing.assert_allclose(v2[1:], v, atol=1e-14)
    np.testing.assert_allclose(v2[0], v[0], atol=1e-14)
    np.testing.assert_allclose(model.energy(X2, m2), model.energy(X, m), rtol=1e-13)
