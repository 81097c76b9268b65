"""Integrators: convergence orders, compilation counts, stopping rule, ensembles, diffrax."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import meanfield as mf


def smooth_model(getkey, d=3):
    p = mf.Perceptron.random(getkey(), d, activation="gelu")
    return mf.MeanField(1.0, sign=-1, perceptron=p)


def final_state(model, X0, T, steps, method):
    return mf.integrate(model, X0, dt=T / steps, steps=steps, method=method).final


@pytest.mark.parametrize(
    "method, order, step_counts",
    [("euler", 1, [16, 32, 64, 128]), ("geodesic", 1, [16, 32, 64, 128]), ("rk4", 4, [4, 8, 16])],
)
def test_order_of_convergence(getkey, method, order, step_counts):
    model = smooth_model(getkey)
    X0 = mf.uniform_sphere(getkey(), 8, 3)
    T = 1.0
    reference = final_state(model, X0, T, 2048, "rk4")
    errors = [
        float(jnp.max(jnp.abs(final_state(model, X0, T, s, method) - reference)))
        for s in step_counts
    ]
    slopes = -np.diff(np.log(errors)) / np.diff(np.log(step_counts))
    assert np.all(np.abs(slopes - order) < 0.25), (errors, slopes)


class CompileCounter(logging.Handler):
    def __init__(self, name):
        super().__init__()
        self.name, self.count = name, 0

    def emit(self, record):
        msg = record.getMessage()
        if msg.startswith("Compiling") and f"jit({self.name})" in msg:
            self.count += 1


def test_beta_sweep_compiles_once(getkey):
    X0 = mf.uniform_sphere(getkey(), 16, 3)
    counter = CompileCounter("integrate_scan")
    logger = logging.getLogger("jax")
    logger.addHandler(counter)
    try:
        with jax.log_compiles(True):
            finals = [
                mf.integrate(mf.MeanField(b, sign=1), X0, dt=0.1 / b, steps=20).final
                for b in np.linspace(0.5, 5.0, 10)
            ]
    finally:
        logger.removeHandler(counter)
    assert counter.count == 1
    assert not np.allclose(finals[0], finals[-1])


def test_save_every_layout(getkey):
    model = mf.MeanField(1.0)
    X0 = mf.uniform_sphere(getkey(), 5, 3)
    traj = mf.integrate(model, X0, dt=0.1, steps=12, save_every=4)
    assert traj.xs.shape == (4, 5, 3)
    np.testing.assert_allclose(traj.ts, [0.0, 0.4, 0.8, 1.2])
    np.testing.assert_array_equal(traj.xs[0], X0)
    full = mf.integrate(model, X0, dt=0.1, steps=12, save_every=1)
    np.testing.assert_allclose(full.xs[::4], traj.xs, atol=1e-15)
    np.testing.assert_allclose(traj.final, full.final, atol=1e-15)
    with pytest.raises(ValueError, match="save_every"):
        mf.integrate(model, X0, dt=0.1, steps=12, save_every=5)


def test_integrate_until_reaches_a_single_cluster(getkey):
    model = mf.MeanField(1.0, sign=1)
    X0 = mf.uniform_sphere(getkey(), 20, 3)
    res = mf.integrate_until(model, X0, dt=0.1, tol=1e-6, max_steps=20_000)
    assert bool(res.converged) and float(res.max_speed) <= 1e-6
    spread = jnp.max(mf.geodesic_distance(res.final[:, None], res.final[None, :]))
    assert spread < 1e-5
    capped = mf.integrate_until(model, X0, dt=0.1, tol=1e-12, max_steps=50, check_every=10)
    assert int(capped.steps) == 50 and not bool(capped.converged)


def test_ensemble_matches_individual_runs(getkey):
    model = mf.MeanField(1.0, sign=1, attention="sa")
    key = getkey()
    betas = jnp.array([0.5, 2.0, 4.0])
    traj = mf.ensemble(model, key, n=6, d=2, seeds=4, dt=0.1, steps=10, betas=betas, save_every=5)
    assert traj.xs.shape == (3, 4, 3, 6, 2)
    X0s = jax.vmap(lambda k: mf.uniform_sphere(k, 6, 2))(jax.random.split(key, 4))
    single = mf.integrate(mf.MeanField(2.0, attention="sa"), X0s[2], dt=0.1, steps=10)
    np.testing.assert_allclose(traj.xs[1, 2, -1], single.final, atol=1e-13)
    no_beta = mf.ensemble(model, key, n=6, d=2, seeds=4, dt=0.1, steps=10)
    assert no_beta.xs.shape == (4, 2, 6, 2)


def test_diffrax_adapter_agrees_with_rk4(getkey):
    pytest.importorskip("diffrax")
    model = smooth_model(getkey)
    X0 = mf.uniform_sphere(getkey(), 8, 3)
    ref = final_state(model, X0, 1.0, 512, "rk4")
    traj = mf.integrate_diffrax(model, X0, t1=1.0, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(traj.xs[-1], ref, atol=1e-8)
    np.testing.assert_allclose(jnp.linalg.norm(traj.xs, axis=-1), 1, atol=1e-12)


def test_float32_by_default_float64_when_enabled(getkey):
    X32 = mf.uniform_sphere(getkey(), 5, 3, dtype=jnp.float32)
    assert mf.integrate(mf.MeanField(1.0), X32, dt=0.1, steps=3).xs.dtype == jnp.float32
    X64 = mf.uniform_sphere(getkey(), 5, 3)
    assert mf.integrate(mf.MeanField(1.0), X64, dt=0.1, steps=3).xs.dtype == jnp.float64


def test_stepper_pair_reproduces_integrate(getkey):
    model = mf.MeanField(2.0, sign=-1, attention="sa")
    X0 = mf.uniform_sphere(getkey(), 10, 3)
    init_fn, step_fn = mf.stepper(model, dt=0.05, method="rk4")
    X = init_fn(X0)
    step_fn = jax.jit(step_fn)
    for _ in range(8):
        X = step_fn(X)
    ref = mf.integrate(model, X0, dt=0.05, steps=8, method="rk4").final
    np.testing.assert_allclose(X, ref, atol=1e-14)
    with pytest.raises(ValueError, match="`X0` rows must lie"):
        init_fn(2 * X0)
