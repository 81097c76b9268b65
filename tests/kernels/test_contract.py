"""The kernel contract, for every kernel in `kernels.REGISTRY`.

Each kernel's statistics (L, Y) against the NumPy reference (tests/reference.py) and
against Dense: values at ragged sizes with zero-mass keys, cross-attention where
supported, large beta, float64 / float32 / bfloat16 with the output dtypes checked
explicitly, the self-attention tangents, and gradients of the energy. Spectral is an
approximation: its error bound is the claim, checked at loose tolerances where the
comparison is not swamped by rounding (so a dropped harmonic degree fails).
"""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import meanfield as mf
from meanfield import kernels
from tests import reference as ref

SMALL = {
    "dense": lambda: kernels.Dense(),
    "tiled": lambda: kernels.Tiled(16, 32),
    "centred": lambda: kernels.Centred(16, 16),
    "spectral": lambda: kernels.Spectral(1e-12),
    "attention": lambda: kernels.Attention(block_q=32),
    "flash": lambda: kernels.Flash(16, 16),
    "ring": lambda: kernels.Ring(kernels.Tiled(16, 32)),
    "lanes": lambda: kernels.Lanes(),
    "symmetric": lambda: kernels.Symmetric(8, 16),
    "fused": lambda: kernels.Fused(),
}
PAIRWISE = [name for name in SMALL if name != "spectral"]
DTYPES = {"float64": jnp.float64, "float32": jnp.float32, "bfloat16": jnp.bfloat16}


def supports(kernel, dtype) -> bool:
    try:
        kernel.check(8, 3, dtype)
    except kernels.KernelError:
        return False
    return True


def test_every_registered_kernel_is_under_contract():
    assert set(SMALL) == set(kernels.REGISTRY)
    for name, make in SMALL.items():
        assert isinstance(make(), kernels.REGISTRY[name])
        assert make().name == name


def _inputs(key, nq, nk, d=4, e=3):
    K = mf.uniform_sphere(jr.fold_in(key, 1), nk, d)
    Q = mf.uniform_sphere(jr.fold_in(key, 2), nq, d)
    V = jr.normal(jr.fold_in(key, 3), (nk, e))
    w = jr.uniform(jr.fold_in(key, 4), (nk,)).at[::5].set(0.0)  # zero-mass keys
    return Q, K, V, kernels.log_masses(w / w.sum())


def _tolerances(dtype, beta):
    """(atol on L, atol on Y relative to max |Y|) for a dtype; L is compared absolutely
    (= the relative error of e^L)."""
    scale = max(1.0, beta)
    return {
        "float64": (1e-12 * scale, 1e-10),
        "float32": (3e-6 * scale, 3e-5),
        "bfloat16": (1.5e-2 * scale, 4e-2),
    }[dtype]


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("name", PAIRWISE)
def test_cross_attention_stats_match_reference(getkey, name, dtype):
    kernel = SMALL[name]()
    dt = DTYPES[dtype]
    Q, K, V, log_w = _inputs(getkey(), 37, 53)  # ragged against every block size
    Q, K, V = (x.astype(dt) for x in (Q, K, V))
    if not supports(kernel, dt):
        with pytest.raises(kernels.KernelError, match=type(kernel).__name__):
            kernel.check(37, 4, dt)
        return
    for beta in (0.1, 3.0, 50.0, 200.0):
        L, Y = kernel.stats(Q, K, V, beta, log_w)
        assert L.dtype == jnp.promote_types(dt, jnp.float32), (name, dtype)
        assert Y.dtype == dt and L.shape == (37,) and Y.shape == (37, 3)
        L0, Y0 = ref.attention_stats(
            *(np.asarray(x, np.float64) for x in (Q, K, V)), beta, np.asarray(log_w)
        )
        atol_L, rtol_Y = _tolerances(dtype, beta)
        np.testing.assert_allclose(np.asarray(L, np.float64), L0, rtol=0, atol=atol_L)
        np.testing.assert_allclose(
            np.asarray(Y, np.float64), Y0, rtol=0, atol=rtol_Y * np.max(np.abs(Y0))
        )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(SMALL))
def test_self_attention_tangents_match_reference(getkey, name, dtype):
    kernel = SMALL[name]()
    dt = DTYPES[dtype]
    d = 3
    X = mf.uniform_sphere(getkey(), 45, d).astype(dt)
    m = jr.uniform(getkey(), (45,)).at[::7].set(0.0)
    log_w = kernels.log_masses(m / m.sum())
    if not supports(kernel, dt):
        return
    kernel = kernel.prepare(45, d, dt, beta=6.0)
    L, T = kernel.tangent_stats(X, 6.0, log_w)
    Xh = np.asarray(X, np.float64)
    L0, Y0 = ref.attention_stats(Xh, Xh, Xh, 6.0, np.asarray(log_w))
    T0 = ref.project(Xh, Y0)
    atol_L, rtol_Y = _tolerances(dtype, 6.0)
    if not kernel.exact:  # Spectral: its bound, relative to e^beta, on f and grad f / beta
        atol_L, rtol_Y = max(atol_L, 1e-9), max(rtol_Y, 1e-9)
    np.testing.assert_allclose(np.asarray(L, np.float64), L0, rtol=0, atol=atol_L)
    np.testing.assert_allclose(np.asarray(T, np.float64), T0, rtol=0, atol=rtol_Y)
    np.testing.assert_allclose(np.sum(Xh * np.asarray(T, np.float64), axis=1), 0, atol=rtol_Y)
    if kernel.supports_values or name == "spectral":
        L1, Y1 = kernel.stats(X, X, X, 6.0, log_w)  # the full mean, radial part included
        np.testing.assert_allclose(np.asarray(Y1, np.float64), Y0, rtol=0, atol=rtol_Y)


@pytest.mark.parametrize("name", list(SMALL))
def test_energy_gradient_matches_dense(getkey, name):
    kernel = SMALL[name]()
    dt = jnp.float64 if supports(kernel, jnp.float64) else jnp.float32
    X = mf.uniform_sphere(getkey(), 40, 3).astype(dt)
    log_w = kernels.log_masses(jnp.full((40,), 1 / 40, dt))
    kernel = kernel.prepare(40, 3, dt, beta=4.0)

    def energy(kern):
        return lambda X, beta: kern.log_interaction(X, beta, log_w)

    g, gb = jax.grad(energy(kernel), argnums=(0, 1))(X, jnp.asarray(4.0, dt))
    g0, gb0 = jax.grad(energy(kernels.Dense()), argnums=(0, 1))(X, jnp.asarray(4.0, dt))
    tol = {jnp.float64: 1e-9, jnp.float32: 1e-4}[dt]
    # Riemannian gradients: off the sphere the harmonic expansion extends differently.
    g, g0 = mf.project(X, g), mf.project(X, g0)
    np.testing.assert_allclose(g, g0, rtol=0, atol=tol * float(jnp.max(jnp.abs(g0))))
    np.testing.assert_allclose(gb, gb0, rtol=tol)


def test_dense_energy_gradient_matches_finite_differences(getkey):
    X = mf.uniform_sphere(getkey(), 12, 3)
    log_w = kernels.log_masses(jnp.full((12,), 1 / 12))
    f = lambda X: kernels.Dense().log_interaction(X, 2.5, log_w)
    g = jax.grad(f)(X)
    E = jr.normal(getkey(), X.shape)
    h = 1e-6
    fd = (f(X + h * E) - f(X - h * E)) / (2 * h)
    np.testing.assert_allclose(jnp.sum(g * E), fd, rtol=1e-7)


@pytest.mark.parametrize("name", PAIRWISE)
def test_value_gradients_match_dense(getkey, name):
    # d/dQ, d/dK, d/dV, d/dlog w, d/dbeta of a function of (L, Y): the backward passes.
    kernel = SMALL[name]()
    dt = jnp.float64 if supports(kernel, jnp.float64) else jnp.float32
    Q, K, V, log_w = _inputs(getkey(), 21, 27)
    Q, K, V = (x.astype(dt) for x in (Q, K, V))
    log_w = jnp.log(jnp.exp(log_w) + 0.01).astype(dt)

    def loss(kern):
        def f(Q, K, V, beta, log_w):
            L, Y = kern.stats(Q, K, V, beta, log_w)
            return jnp.sum(L**2) + jnp.sum(jnp.sin(Y))

        return jax.grad(f, argnums=(0, 1, 2, 3, 4))

    beta = jnp.asarray(3.0, dt)
    tol = {jnp.float64: 1e-10, jnp.float32: 2e-4}[dt]
    for a, b in zip(
        loss(kernel)(Q, K, V, beta, log_w), loss(kernels.Dense())(Q, K, V, beta, log_w), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=0, atol=tol * max(1.0, float(jnp.max(jnp.abs(b)))))


@pytest.mark.parametrize("name", [n for n in PAIRWISE if n != "attention"])
def test_far_query_with_huge_beta_stays_finite(name):
    # The online max keeps a query far from every key finite (exp of -2000 underflows).
    # (Attention's extra key underflows here by design: see kernels/attention.py.)
    Q = jnp.array([[1.0, 0.0]])
    K = jnp.array([[-1.0, 0.0], [0.0, -1.0]])
    log_w = jnp.log(jnp.array([0.5, 0.5]))
    L, Y = SMALL[name]().stats(Q, K, K, 1000.0, log_w)
    np.testing.assert_allclose(L, -np.log(2.0), atol=1e-12)  # beta * 0 + log(1/2)
    np.testing.assert_allclose(Y, [[0.0, -1.0]], atol=1e-12)


@pytest.mark.parametrize("name", PAIRWISE)
def test_keys_of_zero_total_weight_give_minus_infinity(getkey, name):
    kernel = SMALL[name]()
    dt = jnp.float64 if supports(kernel, jnp.float64) else jnp.float32
    Q, K, V, _ = _inputs(getkey(), 5, 9)
    L, _ = kernel.stats(*(x.astype(dt) for x in (Q, K, V)), 2.0, jnp.full((9,), -jnp.inf))
    assert np.all(np.isneginf(np.asarray(L)))


@pytest.mark.parametrize(
    "d, tol", [(2, 1e-6), (3, 1e-6), pytest.param(3, 1e-9, marks=pytest.mark.slow)]
)
def test_spectral_error_bound_is_the_claim(getkey, d, tol):
    # At a loose tolerance the truncation error is far above rounding, so the bound is
    # checked for what it says: error <= bound (and a dropped degree would exceed it).
    n, beta = 300, 10.0
    X = mf.uniform_sphere(getkey(), n, d)
    Y = mf.uniform_sphere(getkey(), 50, d)
    m = jr.uniform(getkey(), (n,))
    log_w = kernels.log_masses(m / m.sum())
    spec = kernels.Spectral(tol).prepare(n, d, jnp.float64, beta=beta)
    bound = kernels.spectral_error_bound(beta, d, spec.order) + 1e-13
    assert bound <= tol + 1e-13
    dense = kernels.Dense()
    scale = np.exp(-beta)
    err_f = np.max(
        np.abs(np.exp(spec.log_sums(Y, X, beta, log_w)) - np.exp(dense.log_sums(Y, X, beta, log_w)))
    )
    assert err_f * scale <= bound
    L, T = spec.tangent_stats(X, beta, log_w)
    L0, T0 = dense.tangent_stats(X, beta, log_w)
    grad_err = np.max(np.abs(np.exp(L)[:, None] * T - np.exp(L0)[:, None] * T0))
    assert grad_err * scale <= bound  # |grad_S f| / beta, with grad_S f = beta e^L T
    e_spec = np.exp(spec.log_interaction(X, beta, log_w))
    e_dense = np.exp(dense.log_interaction(X, beta, log_w))
    assert abs(e_spec - e_dense) * scale <= bound
    # one order lower is not within tol: the check above has teeth
    lower = kernels.Spectral(tol, spec.order - 1)
    low_err = abs(np.exp(lower.log_interaction(X, beta, log_w)) - e_dense) * scale
    coarse_err = (
        np.max(
            np.abs(
                np.exp(lower.log_sums(Y, X, beta, log_w))
                - np.exp(dense.log_sums(Y, X, beta, log_w))
            )
        )
        * scale
    )
    assert max(low_err, coarse_err) > 1e-3 * tol


def test_model_velocity_and_energy_agree_across_kernels(getkey):
    X = mf.uniform_sphere(getkey(), 150, 3)
    m = jr.uniform(getkey(), (150,))
    m = m / m.sum()
    for attention, sign in (("usa", -1), ("sa", 1)):
        if True:
            dense = mf.MeanField(7.0, sign=sign, attention=attention, kernel="dense")
            v0, e0 = dense.velocity(X, m), dense.energy(X, m)
            for name in ("tiled", "centred", "flash", "ring", "symmetric", "fused"):
                model = mf.MeanField(7.0, sign=sign, attention=attention, kernel=SMALL[name]())
                np.testing.assert_allclose(model.velocity(X, m), v0, rtol=1e-11, atol=1e-11)
                np.testing.assert_allclose(model.energy(X, m), e0, rtol=1e-12)


@pytest.mark.parametrize("name", PAIRWISE)  # spectral fixes its order from one beta
def test_batched_tangent_stats_are_the_per_system_ones(getkey, name):
    """An ensemble's one-pass statistics (`batched_tangent_stats`, systems with their own
    beta) equal each system's `tangent_stats`, whatever the backend does inside."""
    kernel = SMALL[name]()
    if not supports(kernel, jnp.float64):
        pytest.skip(f"{name} has no float64")
    Xs = jax.vmap(lambda k: mf.uniform_sphere(k, 24, 3))(jr.split(getkey(), 5))
    betas = jnp.array([0.5, 1.0, 2.0, 4.0, 8.0])
    w = jr.uniform(getkey(), (24,)).at[::7].set(0.0)
    log_w = kernels.log_masses(w / w.sum())
    L, T = kernel.batched_tangent_stats(Xs, betas, log_w)
    for s in range(5):
        L0, T0 = kernels.Dense().tangent_stats(Xs[s], betas[s], log_w)
        np.testing.assert_allclose(np.asarray(L[s]), np.asarray(L0), rtol=1e-10)
        np.testing.assert_allclose(np.asarray(T[s]), np.asarray(T0), rtol=1e-8, atol=1e-12)
