"""Spectral kernel summation on S^1 and S^2 against the dense pairwise sums."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import ive

import meanfield as mf
from meanfield.integrate import with_beta
from meanfield.kernels._harmonics import (
    _sphere_field_and_grad,
    circle_bessel,
    error_bound,
    spectral_order,
    spectral_sums,
    sphere_bessel,
)

ROUNDING_FLOOR = 1e-13  # documented floor of the spectral sums in float64


def random_measure(key, n, d):
    kx, km = jax.random.split(key)
    X = mf.uniform_sphere(kx, n, d)
    m = jax.random.uniform(km, (n,), minval=0.1, maxval=1.0)
    return X, m / m.sum()


def dense_sums(Y, X, m, beta):
    """(f e^{-beta}, grad_S f e^{-beta} / beta) by brute force in NumPy."""
    Y, X, m = map(np.asarray, (Y, X, m))
    K = np.exp(beta * (Y @ X.T - 1)) * m[None, :]
    f = K.sum(1)
    g = K @ X
    return f, g - np.sum(g * Y, axis=1, keepdims=True) * Y


@pytest.mark.parametrize("beta", [0.1, 1.0, 10.0, 100.0])
def test_bessel_values_match_scipy(beta):
    K = spectral_order(beta, 2, 1e-12)
    np.testing.assert_allclose(
        circle_bessel(beta, K, jnp.float64), ive(np.arange(K + 1), beta), atol=1e-15
    )
    L = spectral_order(beta, 3, 1e-12)
    si = np.sqrt(np.pi / (2 * beta)) * ive(np.arange(L + 1) + 0.5, beta)
    np.testing.assert_allclose(sphere_bessel(beta, L, jnp.float64), si, rtol=1e-12)


def _loose_tolerance_slow(betas, loose=1e-6, fast=(1.0, 100.0)):
    """(tol, beta) grid where the loose tolerance runs in CI only at `fast` betas: its
    lower-order check compiles a second expansion, and two betas cover both regimes."""
    return [
        pytest.param(tol, beta, marks=pytest.mark.slow)
        if tol == loose and beta not in fast
        else (tol, beta)
        for tol in (loose, 1e-12)
        for beta in betas
    ]


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("tol, beta", _loose_tolerance_slow([0.1, 1.0, 10.0, 100.0]))
def test_spectral_sums_within_their_error_bound(getkey, d, beta, tol):
    X, m = random_measure(getkey(), 150, d)
    order = spectral_order(beta, d, tol)
    bound = error_bound(beta, d, order)
    assert bound <= tol
    f, g = spectral_sums(X, X, m, beta, order)
    f_ref, g_ref = dense_sums(X, X, m, beta)
    err_f = float(np.max(np.abs(np.asarray(f) - f_ref)))
    err_g = float(np.max(np.abs(np.asarray(g) / beta - g_ref)))
    assert err_f <= bound + ROUNDING_FLOOR
    assert err_g <= bound + ROUNDING_FLOOR
    if tol == 1e-6:
        # The bound is not vacuous: one order lower is worse than the tolerance.
        lower = spectral_sums(X, X, m, beta, max(order - 3, 1))[1]
        assert float(np.max(np.abs(np.asarray(lower) / beta - g_ref))) > 1e-3 * tol


# A pairwise-covering half of d x attention x beta runs in CI; the rest is marked slow.
_MODEL_CASES = [
    pytest.param(
        d,
        attention,
        beta,
        marks=[pytest.mark.slow] * ((d == 3) + (attention == "sa") + (beta == 20.0) & 1),
    )
    for d in (2, 3)
    for attention in ("usa", "sa")
    for beta in (0.5, 20.0)
]


@pytest.mark.parametrize("d, attention, beta", _MODEL_CASES)
def test_model_with_spectral_kernel_matches_dense(getkey, d, attention, beta):
    X, m = random_measure(getkey(), 120, d)
    p = mf.Perceptron.random(getkey(), d, activation="gelu")
    spec = mf.MeanField(beta, sign=-1, attention=attention, perceptron=p, kernel="spectral")
    dense = mf.MeanField(beta, sign=-1, attention=attention, perceptron=p, kernel="dense")
    bound = error_bound(beta, d, spec.select(120, d).order) + ROUNDING_FLOOR
    v_err = np.abs(np.asarray(spec.velocity(X, m) - dense.velocity(X, m))).max(axis=1)
    if attention == "usa":
        assert np.all(v_err <= bound * np.exp(beta))
    else:
        # SA divides by f(x_i) >= m_i e^beta: the error bound is amplified by e^beta / f(x_i).
        f_ref, _ = dense_sums(X, X, m, beta)
        assert np.all(v_err <= 2 * bound / f_ref)
    np.testing.assert_allclose(
        spec.energy(X, m), dense.energy(X, m), atol=bound * np.exp(beta) / beta
    )
    np.testing.assert_allclose(
        spec.first_variation(X[:7], X, m),
        dense.first_variation(X[:7], X, m),
        atol=bound * np.exp(beta) / beta,
    )


def test_energy_non_decreasing_with_spectral_kernel(getkey):
    p = mf.Perceptron.random(getkey(), 2, activation="tanh")
    model = mf.MeanField(4.0, sign=-1, perceptron=p, kernel="spectral")
    X0 = mf.uniform_sphere(getkey(), 200, 2)
    traj = mf.integrate(model, X0, dt=0.002, steps=300, method="rk4", save_every=3)
    F = jax.vmap(model.energy)(traj.xs)
    assert F[-1] > F[0]
    assert np.all(np.diff(F) >= -1e-11 * np.abs(F).max())


@pytest.mark.parametrize("d", [2, 3])
def test_single_cluster_equilibrium_same_as_dense(getkey, d):
    X0 = mf.uniform_sphere(getkey(), 64, d)
    runs = {}
    for kernel in ("spectral", "dense"):
        model = mf.MeanField(2.0, sign=1, attention="sa", kernel=kernel)
        runs[kernel] = mf.integrate_until(model, X0, dt=0.2, tol=1e-9, max_steps=20_000)
        assert bool(runs[kernel].converged)
    spread = mf.geodesic_distance(runs["spectral"].final[:, None], runs["spectral"].final[None])
    assert float(jnp.max(spread)) < 1e-6
    np.testing.assert_allclose(runs["spectral"].final, runs["dense"].final, atol=1e-6)


def test_beta_sweep_with_traced_beta(getkey):
    X, m = random_measure(getkey(), 100, 2)
    betas = jnp.array([1.0, 5.0, 12.0])
    model = mf.MeanField(float(betas.max()), attention="sa", kernel="spectral")  # order for max
    vs = jax.vmap(lambda b: with_beta(model, b).vector_field(0.0, X, m))(betas)
    for b, v in zip(betas, vs, strict=True):
        ref = mf.MeanField(float(b), attention="sa", kernel="dense").velocity(X, m)
        np.testing.assert_allclose(v, ref, atol=1e-9)


def test_auto_picks_spectral_only_when_it_pays():
    model = mf.MeanField(10.0, attention="sa")
    resolved = model.resolve_kernel(100_000, 2)
    assert isinstance(resolved.kernel, mf.kernels.Spectral)
    assert resolved.kernel.order >= spectral_order(10.0, 2, model.spectral_tol)
    assert not isinstance(model.resolve_kernel(1_000, 2).kernel, mf.kernels.Spectral)
    assert not isinstance(model.resolve_kernel(100_000, 5).kernel, mf.kernels.Spectral)
    assert isinstance(model.resolve_kernel(100_000, 3).kernel, mf.kernels.Spectral)
    dense = mf.MeanField(10.0, kernel="dense").resolve_kernel(100_000, 2)
    assert dense.kernel == mf.kernels.Dense()
    # Nearby betas share the rounded order, hence one compiled program.
    orders = {mf.MeanField(b).resolve_kernel(100_000, 2).kernel.order for b in (3.0, 5.0, 8.0)}
    assert len(orders) == 1


def test_bad_spectral_input(getkey):
    with pytest.raises(ValueError, match="spectral_tol"):
        mf.MeanField(1.0, kernel="spectral", spectral_tol=0.0)
    with pytest.raises(ValueError, match="spectral_tol"):
        mf.MeanField(1.0, kernel="spectral", spectral_tol=-1e-3)
    with pytest.raises(ValueError, match=r"d in \(2, 3\)"):
        mf.MeanField(1.0, kernel="spectral").velocity(mf.uniform_sphere(getkey(), 5, 4))
    with pytest.raises(ValueError, match="memory budget"):
        mf.MeanField(1e9, kernel="spectral", rescaled_time=True)
    with pytest.raises(ValueError, match="spectral_order"):
        mf.MeanField(1.0, kernel="spectral", spectral_order=0)
    with pytest.raises(ValueError, match="usa.*sa"):
        mf.MeanField(1.0, kernel="spectral", attention="general").velocity(
            mf.uniform_sphere(getkey(), 5, 2)
        )


def test_hand_written_harmonic_gradient_equals_autodiff(getkey):
    Y = mf.uniform_sphere(getkey(), 40, 3)
    L = 12
    wc, ws = jax.random.normal(getkey(), (2, L + 1, L + 1))
    _, grad = _sphere_field_and_grad(Y, wc, ws, L)
    value = lambda y: _sphere_field_and_grad(y[None], wc, ws, L)[0][0]
    np.testing.assert_allclose(grad, jax.vmap(jax.grad(value))(Y), atol=1e-12)
