"""Lanes: the ensemble kernel with one system per vector lane and the bounded exponent."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import meanfield as mf
from meanfield.kernels import Dense, KernelError, Lanes, Tiled, log_masses, select_kernel


def _systems(S=12, n=9, d=3, seed=0, dtype=jnp.float64):
    keys = jax.random.split(jax.random.PRNGKey(seed), S)
    return jax.vmap(lambda k: mf.uniform_sphere(k, n, d, dtype=dtype))(keys)


def test_batched_stats_equal_the_dense_kernel_per_system():
    Xs = _systems()
    betas = jnp.linspace(0.5, 12.0, Xs.shape[0])
    m = jnp.array([0.0, 0.3, 0.1, 0.05, 0.15, 0.1, 0.1, 0.1, 0.1])  # a zero-mass key too
    lw = log_masses(m)
    L, T = Lanes().batched_tangent_stats(Xs, betas, lw)
    L0, T0 = jax.vmap(Dense().tangent_stats, in_axes=(0, 0, None))(Xs, betas, lw)
    np.testing.assert_allclose(np.asarray(L), np.asarray(L0), rtol=1e-13)
    np.testing.assert_allclose(np.asarray(T), np.asarray(T0), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    "attention, sign, kw",
    [("sa", 1, {}), ("usa", -1, {}), ("usa", 1, {"shift_kernel": True, "rescaled_time": True})],
)
def test_ensemble_in_the_lanes_layout_equals_the_dense_ensemble(attention, sign, kw, monkeypatch):
    monkeypatch.setenv("MEANFIELD_NATIVE", "0")  # without the native Fused loop
    model = mf.MeanField(3.0, sign=sign, attention=attention, **kw)
    run = dict(n=10, d=3, seeds=40, dt=0.05, steps=20, save_every=10, betas=[1.0, 3.0])
    assert isinstance(model.resolve_kernel(10, 3, batch=80).kernel, Lanes)  # auto picks it
    for method in ("euler", "rk4"):
        a = mf.ensemble(model, 0, method=method, **run)
        b = mf.ensemble(model.with_kernel(Dense()), 0, method=method, **run)
        assert a.xs.shape == b.xs.shape == (2, 40, 3, 10, 3)
        np.testing.assert_allclose(np.asarray(a.xs), np.asarray(b.xs), atol=1e-13)


def test_float32_lanes_within_1e_5_of_float64():
    Xs = _systems(S=64, n=32, d=2, seed=1)
    model = mf.MeanField(4.0, sign=1, attention="usa", kernel=Lanes())
    m = jnp.full((32,), 1 / 32)
    v64 = model.batched_velocity(Xs, m)
    X32 = mf.retract(Xs.astype(jnp.float32))
    v32 = model.batched_velocity(X32, m.astype(jnp.float32))
    assert v32.dtype == jnp.float32
    rel = float(jnp.max(jnp.abs(v32 - v64)) / jnp.max(jnp.abs(v64)))
    assert rel < 1e-5


def test_selection_and_the_underflow_limit():
    pick = lambda **kw: select_kernel(32, 2, dtype=jnp.float32, backend="cpu", native=False, **kw)
    lanes_kw = dict(batch=2048, beta=4.0, self_interaction=True)
    assert isinstance(pick(**lanes_kw), Lanes)
    assert isinstance(pick(**{**lanes_kw, "batch": 1}), Tiled)  # one system: one tile
    assert isinstance(pick(**{**lanes_kw, "beta": None}), Tiled)  # unknown beta: no bound
    assert isinstance(pick(**{**lanes_kw, "beta": 60.0}), Tiled)  # e^{-2 beta} underflows
    assert not isinstance(pick(**{**lanes_kw, "self_interaction": False}), Lanes)
    gpu = select_kernel(32, 2, dtype=jnp.float32, backend="gpu", **lanes_kw)
    assert not isinstance(gpu, Lanes)  # measured on CPU only
    with pytest.raises(KernelError, match="underflow"):
        Lanes().prepare(32, 2, jnp.float32, beta=60.0)
    Lanes().prepare(32, 2, jnp.float64, beta=60.0)  # float64 has room
