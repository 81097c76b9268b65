"""Fused: the native fused loop (rows or systems on the vector lanes), its fall-back, its
derivatives, its build and the policy that picks it."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import meanfield as mf
from meanfield.kernels import Dense, Fused, KernelError, Tiled, log_masses, native, select_kernel
from tests import reference as ref

pytestmark = pytest.mark.skipif(
    not native.available(), reason=f"no native loop here: {native.status()[1]}"
)


def _points(key, shape, on_sphere=True):
    X = jr.normal(key, shape)
    return X / jnp.linalg.norm(X, axis=-1, keepdims=True) if on_sphere else X


def _log_w(key, n, zeros=True):
    w = jr.uniform(key, (n,), minval=0.1)
    if zeros:
        w = w.at[:: max(2, n // 3)].set(0.0)
    return log_masses(w / w.sum())


def _reference(X, beta, log_w):
    X = np.asarray(X, np.float64)
    L, Y = ref.attention_stats(X, X, X, float(beta), np.asarray(log_w, np.float64))
    return L, ref.project(X, Y)


@pytest.mark.parametrize(
    "S, n, d",
    [(1, 1, 2), (1, 5, 3), (1, 17, 2), (1, 700, 3), (3, 33, 8), (40, 32, 2), (20, 9, 5)],
)
def test_batched_stats_match_the_float64_reference(getkey, S, n, d):
    # n below, at and across the vector width, one system split over threads (700) and
    # many systems one per task; every d the loop is compiled for is covered below.
    Xs = _points(getkey(), (S, n, d))
    betas = jnp.linspace(-2.0, 25.0, S) if S > 1 else jnp.array([6.0])
    log_w = _log_w(getkey(), n, zeros=n > 2)
    L, T = Fused().batched_tangent_stats(Xs, betas, log_w)
    for s in range(S):
        L0, T0 = _reference(Xs[s], betas[s], log_w)
        np.testing.assert_allclose(np.asarray(L[s]), L0, rtol=0, atol=1e-12 * max(1, betas[s]))
        np.testing.assert_allclose(np.asarray(T[s]), T0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("d", range(1, 9))
def test_every_dimension_and_points_off_the_sphere(getkey, d):
    # The Gaussian form keeps the exponent <= 0 for any points, not only unit vectors.
    X = 1.7 * _points(getkey(), (50, d), on_sphere=False)
    log_w = _log_w(getkey(), 50)
    L, Y = Fused()._sums(X[None], 1.3, log_w, 0)
    L0, Y0 = ref.attention_stats(*(np.asarray(X),) * 3, 1.3, np.asarray(log_w))
    np.testing.assert_allclose(np.asarray(L[0]), L0, rtol=1e-13)
    np.testing.assert_allclose(np.asarray(Y[0]), Y0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("S", [1, 7, 16, 37, 64])
def test_the_lanes_layout_equals_the_batched_one(getkey, S):
    # systems on the vector lanes in whole groups of 16 (float32) / 8 (float64), the rest
    # one at a time: both give the per-system statistics
    Xs = _points(getkey(), (S, 12, 3))
    betas = jnp.linspace(0.0, 30.0, S)
    log_w = _log_w(getkey(), 12)
    L, T = Fused().batched_tangent_stats(Xs, betas, log_w)
    Lp, Tp = Fused().lanes_tangent_stats(jnp.transpose(Xs, (2, 1, 0)), betas, log_w)
    np.testing.assert_allclose(np.asarray(Lp.T), np.asarray(L), rtol=1e-14, atol=1e-13)
    np.testing.assert_allclose(np.transpose(np.asarray(Tp), (2, 1, 0)), T, rtol=0, atol=1e-14)
    L0, T0 = jax.vmap(Dense().tangent_stats, in_axes=(0, 0, None))(Xs, betas, log_w)
    np.testing.assert_allclose(np.asarray(L), np.asarray(L0), rtol=1e-13)
    np.testing.assert_allclose(np.asarray(T), np.asarray(T0), rtol=0, atol=1e-13)


def test_float32_is_within_1e_5_of_float64(getkey):
    X = _points(getkey(), (2048, 3))
    m = jnp.full((2048,), 1 / 2048)
    model = mf.MeanField(4.0, sign=1, attention="usa", kernel=Fused())
    v64 = model.velocity(X, m)
    v32 = model.velocity(X.astype(jnp.float32), m.astype(jnp.float32))
    assert v32.dtype == jnp.float32
    assert float(jnp.max(jnp.abs(v32 - v64)) / jnp.max(jnp.abs(v64))) < 1e-5


def test_far_zero_mass_row_and_overflow_fall_back_to_the_exact_sums():
    # A zero-mass particle opposite all the mass at beta = 1000: its bounded row sum
    # underflows (e^{-2000}), so the call is recomputed by Tiled; at beta = -800 the
    # bounded exponent overflows. Both match the reference instead of -inf / nan.
    X = jnp.array([[1.0, 0.0], [0.99, jnp.sqrt(1 - 0.99**2)], [-1.0, 0.0]])
    log_w = jnp.log(jnp.array([0.5, 0.5, 0.0]))
    for beta in (1000.0, -800.0):
        L, T = Fused().tangent_stats(X, beta, log_w)
        L0, T0 = _reference(X, beta, log_w)
        np.testing.assert_allclose(np.asarray(L), L0, rtol=1e-12)
        np.testing.assert_allclose(np.asarray(T), T0, rtol=0, atol=1e-12)
    # one system of a batch needing it: the whole batch is exact
    Xs = jnp.stack([X, X[::-1]])
    L, T = Fused().batched_tangent_stats(Xs, jnp.array([1.0, 1000.0]), log_w)
    np.testing.assert_allclose(np.asarray(L[1]), _reference(X[::-1], 1000.0, log_w)[0], rtol=1e-12)


def test_nan_input_gives_nan_not_a_number():
    X = jnp.array([[1.0, 0.0], [jnp.nan, 0.0], [0.0, 1.0]])
    L, T = Fused().tangent_stats(X, 2.0, jnp.log(jnp.full((3,), 1 / 3)))
    assert not np.all(np.isfinite(np.asarray(T)))


def test_derivatives_are_those_of_the_exact_sums(getkey):
    X = _points(getkey(), (30, 3))
    log_w = _log_w(getkey(), 30, zeros=False)

    def energy(kernel):
        return lambda X, beta, log_w: kernel.log_interaction(X, beta, log_w)

    args = (X, jnp.asarray(3.0), log_w)
    g = jax.grad(energy(Fused()), argnums=(0, 1, 2))(*args)
    g0 = jax.grad(energy(Dense()), argnums=(0, 1, 2))(*args)
    for a, b in zip(g, g0, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)
    # forward mode and second order through the tangent statistics (under jit: op by op,
    # the Tiled jvp gives NaN in a few rows with jax 0.10.2, a bug outside this kernel)
    V = jr.normal(getkey(), X.shape)
    f = lambda kernel: lambda X: kernel.tangent_stats(X, 3.0, log_w).Y
    jvp = jax.jit(lambda f, X, V: jax.jvp(f, (X,), (V,))[1], static_argnums=0)
    t, t0 = jvp(f(Fused()), X, V), jvp(f(Dense()), X, V)
    np.testing.assert_allclose(t, t0, rtol=0, atol=1e-12)
    hv = jax.jvp(jax.grad(lambda X: energy(Fused())(X, 3.0, log_w)), (X,), (V,))[1]
    hv0 = jax.jvp(jax.grad(lambda X: energy(Dense())(X, 3.0, log_w)), (X,), (V,))[1]
    np.testing.assert_allclose(hv, hv0, rtol=0, atol=1e-11 * float(jnp.max(jnp.abs(hv0))))
    # and the finite difference of the energy itself
    h = 1e-5
    e = energy(Fused())
    fd = (e(X + h * V, 3.0, log_w) - e(X - h * V, 3.0, log_w)) / (2 * h)
    np.testing.assert_allclose(jnp.sum(g[0] * V), fd, rtol=1e-8)


def test_vmap_of_one_system_is_the_batched_call(getkey):
    Xs = _points(getkey(), (6, 20, 3))
    betas = jnp.linspace(1.0, 6.0, 6)
    log_w = _log_w(getkey(), 20)
    L, T = jax.vmap(Fused().tangent_stats, in_axes=(0, 0, None))(Xs, betas, log_w)
    L0, T0 = Fused().batched_tangent_stats(Xs, betas, log_w)
    np.testing.assert_allclose(np.asarray(L), np.asarray(L0), rtol=1e-14)
    np.testing.assert_allclose(np.asarray(T), np.asarray(T0), rtol=0, atol=1e-15)


@pytest.mark.parametrize(
    "attention, sign, kw",
    [("sa", 1, {}), ("usa", -1, {}), ("usa", 1, {"shift_kernel": True, "rescaled_time": True})],
)
def test_ensemble_equals_the_dense_ensemble(attention, sign, kw):
    model = mf.MeanField(3.0, sign=sign, attention=attention, **kw)
    run = dict(n=10, d=3, seeds=40, dt=0.05, steps=20, save_every=10, betas=[1.0, 3.0])
    assert model.resolve_kernel(10, 3, batch=80).kernel == Fused()  # auto picks it
    for method in ("euler", "rk4"):
        a = mf.ensemble(model, 0, method=method, **run)
        b = mf.ensemble(model.with_kernel(Dense()), 0, method=method, **run)
        np.testing.assert_allclose(np.asarray(a.xs), np.asarray(b.xs), atol=1e-13)


def test_policy_and_the_switch(monkeypatch):
    pick = lambda n, d, **kw: select_kernel(n, d, dtype=jnp.float32, **{"backend": "cpu", **kw})
    assert pick(32, 2, batch=2048, beta=60.0, self_interaction=True) == Fused()  # any beta
    assert pick(4096, 3, self_interaction=True) == Fused()
    assert pick(4096, 8, self_interaction=True) == Fused()
    assert pick(4096, 9, self_interaction=True) != Fused()  # beyond its d
    assert pick(4096, 3) != Fused()  # cross sums
    assert pick(4096, 3, self_interaction=True, backend="gpu") != Fused()
    assert pick(4096, 3, self_interaction=True, native=False) != Fused()
    monkeypatch.setenv("MEANFIELD_NATIVE", "0")
    assert not native.available()
    assert pick(4096, 3, self_interaction=True) != Fused()
    with pytest.raises(KernelError, match="Fused.*MEANFIELD_NATIVE"):
        mf.MeanField(1.0, kernel="fused").velocity(mf.uniform_sphere(0, 8, 3))
    with pytest.raises(KernelError, match="Fused.*head sizes up to 8"):
        Fused().check(10, 9, jnp.float32)


def test_cross_attention_is_the_tiled_computation(getkey):
    Q, K = _points(getkey(), (7, 3)), _points(getkey(), (11, 3))
    V = jr.normal(getkey(), (11, 2))
    log_w = _log_w(getkey(), 11)
    a = Fused().stats(Q, K, V, 2.0, log_w)
    b = Tiled().stats(Q, K, V, 2.0, log_w)
    np.testing.assert_array_equal(a.L, b.L)
    np.testing.assert_array_equal(a.Y, b.Y)


def test_the_build_is_cached_and_a_broken_compiler_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("MEANFIELD_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CXX", "false")  # a "compiler" that always fails
    with pytest.raises(native.NativeUnavailable, match="compiling fused.cc with false failed"):
        native.build()
    assert list(tmp_path.iterdir()) == []  # no half-written library left behind
    monkeypatch.delenv("CXX")
    path = native.build()
    assert path.parent == tmp_path and path.stat().st_size > 0
    assert native.build() == path  # cached: the same file, not rebuilt
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    monkeypatch.setenv("MEANFIELD_CACHE_DIR", str(blocked / "cache"))
    with pytest.raises(native.NativeUnavailable, match="cannot write to the cache folder"):
        native.build()


def test_independent_calls_in_one_program(getkey):
    # XLA may run independent native calls at once on its thread pool: each still splits
    # its rows over the pool (and waits only for the tasks that started) and is exact.
    log_w = log_masses(jnp.full((700,), 1 / 700))
    Xs = [_points(getkey(), (700, 3)) for _ in range(4)]
    both = jax.jit(lambda *X: [Fused().tangent_stats(x, 2.0, log_w).Y for x in X])
    for _ in range(20):
        out = both(*Xs)
    for X, T in zip(Xs, out, strict=True):
        np.testing.assert_allclose(np.asarray(T), _reference(X, 2.0, log_w)[1], atol=1e-12)
