"""Energy F_s, its first variation and the USA velocity as its Riemannian gradient."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import meanfield as mf
from tests import reference as ref


def random_masses(key, n):
    w = jr.uniform(key, (n,), minval=0.1, maxval=1.0)
    return w / w.sum()


def riemannian_gradient(model, X, m):
    g = jax.grad(lambda Y: model.energy(Y, m))(X)
    return mf.project(X, g)


@pytest.mark.parametrize("sign", [1, -1])
@pytest.mark.parametrize("beta", [0.5, 3.0, 10.0])
@pytest.mark.parametrize("activation", [None, "relu", "gelu", "tanh"])
def test_usa_velocity_is_riemannian_gradient_of_energy_uniform(getkey, sign, beta, activation):
    n, d = 12, 3
    p = None if activation is None else mf.Perceptron.random(getkey(), d, activation=activation)
    model = mf.MeanField(beta, sign=sign, attention="usa", perceptron=p)
    X = mf.uniform_sphere(getkey(), n, d)
    grad = riemannian_gradient(model, X, None)
    np.testing.assert_allclose(n * grad, model.velocity(X), atol=1e-10 * np.exp(beta))


@pytest.mark.parametrize("shift_kernel", [False, True])
def test_usa_velocity_is_gradient_weighted_masses(getkey, shift_kernel):
    n, d = 9, 4
    p = mf.Perceptron.random(getkey(), d, activation="gelu", bias_scale=0.3)
    model = mf.MeanField(2.0, sign=-1, perceptron=p, shift_kernel=shift_kernel)
    X = mf.uniform_sphere(getkey(), n, d)
    m = random_masses(getkey(), n)
    grad = riemannian_gradient(model, X, m)
    np.testing.assert_allclose(grad / m[:, None], model.velocity(X, m), atol=1e-10)


def test_first_variation_gradient_is_velocity(getkey):
    n, d = 10, 3
    p = mf.Perceptron.random(getkey(), d, activation="tanh")
    model = mf.MeanField(1.5, sign=1, perceptron=p)
    X = mf.uniform_sphere(getkey(), n, d)
    m = random_masses(getkey(), n)
    grad_phi = jax.grad(lambda Y: jnp.sum(model.first_variation(Y, jax.lax.stop_gradient(X), m)))
    np.testing.assert_allclose(mf.project(X, grad_phi(X)), model.velocity(X, m), atol=1e-12)


@pytest.mark.parametrize("sign", [1, -1])
def test_energy_and_velocities_match_numpy_reference(getkey, sign):
    n, d, beta = 30, 5, 2.5
    p = mf.Perceptron.random(getkey(), d, activation="relu")
    X = mf.uniform_sphere(getkey(), n, d)
    m = random_masses(getkey(), n)
    Xn, mn = np.asarray(X), np.asarray(m)
    usa = mf.MeanField(beta, sign=sign, perceptron=p)
    np.testing.assert_allclose(
        usa.energy(X, m), ref.energy(Xn, mn, beta, sign, np.asarray(p.potential(X))), rtol=1e-12
    )
    drift = np.asarray(p.drift(X))
    np.testing.assert_allclose(
        usa.velocity(X, m), ref.usa_velocity(Xn, mn, beta, sign) + drift, atol=1e-12
    )
    sa = mf.MeanField(beta, sign=sign, attention="sa", perceptron=p)
    np.testing.assert_allclose(
        sa.velocity(X, m), ref.sa_velocity(Xn, mn, beta, sign) + drift, atol=1e-12
    )


def test_log_energy_is_consistent_and_finite_at_huge_beta(getkey):
    X = mf.uniform_sphere(getkey(), 20, 3)
    model = mf.MeanField(3.0, sign=-1)
    np.testing.assert_allclose(-jnp.exp(model.log_energy(X)), model.energy(X), rtol=1e-13)
    big = mf.MeanField(1000.0, sign=1)
    log_e = big.log_energy(X)
    assert np.isfinite(log_e)
    from scipy.special import logsumexp

    Xn = np.asarray(X)
    expect = logsumexp(1000.0 * Xn @ Xn.T - 2 * np.log(20)) - np.log(2000.0)
    np.testing.assert_allclose(log_e, expect, rtol=1e-13)
    # The diagonal alone gives a lower bound: iint K dmu dmu >= e^beta sum m_i^2 = e^beta / n.
    assert log_e >= 1000.0 - np.log(20) - np.log(2000.0)
    assert np.isfinite(big.rescaled_energy(X))
    with pytest.raises(ValueError, match="overflows"):
        big.energy(X)


def test_float32_large_beta_rescaled_path_has_no_nan(getkey):
    X = mf.uniform_sphere(getkey(), 64, 3, dtype=jnp.float32)
    for beta in (100.0, 1000.0):
        model = mf.MeanField(beta, sign=1, rescaled_time=True)
        assert np.all(np.isfinite(model.velocity(X)))
        assert np.isfinite(model.log_energy(X)) and np.isfinite(model.rescaled_energy(X))
        traj = mf.integrate(model, X, dt=0.1, steps=20)
        assert np.all(np.isfinite(traj.xs))
        sa = mf.MeanField(beta, sign=-1, attention="sa")
        assert np.all(np.isfinite(sa.velocity(X)))
    with pytest.raises(ValueError, match="beta.*overflow"):
        mf.MeanField(100.0).velocity(X)


def test_rescaled_time_scales_velocity(getkey):
    X = mf.uniform_sphere(getkey(), 8, 3)
    p = mf.Perceptron.random(getkey(), 3)
    a = mf.MeanField(4.0, perceptron=p).velocity(X)
    b = mf.MeanField(4.0, perceptron=p, rescaled_time=True).velocity(X)
    np.testing.assert_allclose(b, np.exp(-4.0) * a, atol=1e-14)


def test_shift_kernel_weakens_only_the_interaction(getkey):
    X = mf.uniform_sphere(getkey(), 8, 3)
    p = mf.Perceptron.random(getkey(), 3)
    plain = mf.MeanField(4.0, sign=-1).velocity(X)
    shifted = mf.MeanField(4.0, sign=-1, perceptron=p, shift_kernel=True).velocity(X)
    np.testing.assert_allclose(shifted, np.exp(-4.0) * plain + p.drift(X), atol=1e-14)
    e_plain = mf.MeanField(4.0, sign=-1).energy(X)
    e_shift = mf.MeanField(4.0, sign=-1, shift_kernel=True).energy(X)
    np.testing.assert_allclose(e_shift, np.exp(-4.0) * e_plain, rtol=1e-13)


def test_global_maximisers_closed_forms(getkey):
    # s = +1, no perceptron: the Dirac mass maximises F = (1/2beta) iint K, value e^beta/(2beta).
    beta = 2.0
    dirac = jnp.tile(mf.uniform_sphere(getkey(), 1, 3), (5, 1))
    model = mf.MeanField(beta, sign=1)
    np.testing.assert_allclose(model.energy(dirac), np.exp(beta) / (2 * beta), rtol=1e-14)
    spread = mf.uniform_sphere(getkey(), 5, 3)
    assert model.energy(spread) < model.energy(dirac)
    # s = -1 on the circle: the uniform measure has energy -I_0(beta) / (2 beta).
    from scipy.special import iv

    theta = 2 * jnp.pi * jnp.arange(64) / 64
    circle = mf.angles_to_circle(theta)
    rep = mf.MeanField(beta, sign=-1)
    np.testing.assert_allclose(rep.energy(circle), -iv(0, beta) / (2 * beta), rtol=1e-12)


def test_general_attention_reduces_to_sa_and_has_no_energy(getkey):
    X = mf.uniform_sphere(getkey(), 10, 3)
    sa = mf.MeanField(1.3, sign=-1, attention="sa")
    gen = mf.MeanField(1.3, sign=-1, attention="general")
    np.testing.assert_allclose(gen.velocity(X), sa.velocity(X), atol=1e-14)
    usa = mf.MeanField(1.3, sign=1, attention="usa")
    gen_exp = mf.MeanField(1.3, attention="general", value=jnp.eye(3), weights="exp")
    np.testing.assert_allclose(gen_exp.velocity(X), usa.velocity(X), atol=1e-14)
    p = mf.Perceptron.random(getkey(), 3, k=4)
    mlp = mf.MLP(p.a.T * p.omega, p.a, p.b)
    with_mlp = mf.MeanField(1.3, attention="general", perceptron=mlp)
    with_p = mf.MeanField(1.3, attention="sa", perceptron=p)
    np.testing.assert_allclose(with_mlp.velocity(X), with_p.velocity(X), atol=1e-14)
    B = jr.normal(getkey(), (3, 3))
    V = jr.normal(getkey(), (3, 3))
    gen_bv = mf.MeanField(1.3, attention="general", value=V, query_key=B)
    S = 1.3 * (X @ B) @ X.T
    P = jax.nn.softmax(S, axis=1)
    np.testing.assert_allclose(gen_bv.velocity(X), mf.project(X, P @ X @ V.T), atol=1e-13)
    with pytest.raises(ValueError, match="no energy"):
        gen.energy(X)


@pytest.mark.parametrize("attention", ["usa", "sa", "general"])
@pytest.mark.parametrize("kernel", ["dense", "tiled"])
def test_rescaled_time_rescales_every_attention(getkey, attention, kernel):
    """rescaled_time multiplies the whole velocity (interaction and drift) by e^{-beta}
    for every attention family and kernel, not only USA."""
    d, beta = 3, 3.0
    X = mf.uniform_sphere(getkey(), 10, d)
    kw = dict(attention=attention, kernel=kernel, sign=-1)
    if attention == "general":
        kw = dict(attention=attention, kernel=kernel, value=-jnp.eye(d), query_key=jnp.eye(d))
    else:
        kw["perceptron"] = mf.Perceptron.random(getkey(), d)
    plain = mf.MeanField(beta, **kw).velocity(X)
    rescaled = mf.MeanField(beta, rescaled_time=True, **kw).velocity(X)
    assert float(jnp.max(jnp.abs(plain))) > 1e-3
    np.testing.assert_allclose(rescaled, np.exp(-beta) * plain, atol=1e-14)


def test_log_kernel_shift_has_one_meaning(getkey):
    """log_kernel_shift is log of the kernel's constant factor: -beta with shift_kernel
    (K = e^{beta (<x,y> - 1)}), 0 without; the interaction energies differ by exactly it."""
    X = mf.uniform_sphere(getkey(), 12, 3)
    beta = 3.5
    plain, shifted = mf.MeanField(beta, sign=1), mf.MeanField(beta, sign=1, shift_kernel=True)
    assert float(plain.log_kernel_shift(jnp.float64)) == 0.0
    assert float(shifted.log_kernel_shift(jnp.float64)) == -beta
    np.testing.assert_allclose(shifted.energy(X), np.exp(-beta) * plain.energy(X), rtol=1e-13)
    np.testing.assert_allclose(shifted.log_energy(X), plain.log_energy(X) - beta, rtol=1e-13)


def test_require_energy_is_one_rule(getkey):
    """Energies and critical points refuse the same models: the general system, which is
    also the only one that takes a non-conservative MLP drift."""
    p = mf.Perceptron.random(getkey(), 3)
    mlp = mf.MLP(p.a.T * p.omega, p.a, p.b)
    X = mf.uniform_sphere(getkey(), 6, 3)
    for model in (
        mf.MeanField(1.0, attention="general"),
        mf.MeanField(1.0, attention="general", perceptron=mlp),
    ):
        calls = (
            lambda mdl: mdl.require_energy(),
            lambda mdl: mdl.energy(X),
            lambda mdl: mdl.first_variation(X, X),
            lambda mdl: mf.stationarity_residual(mdl, X),
            lambda mdl: mf.stability_report(mdl, X),
        )
        for call in calls:
            with pytest.raises(ValueError, match="no energy"):
                call(model)
    mf.MeanField(1.0, attention="sa", perceptron=p).require_energy()
