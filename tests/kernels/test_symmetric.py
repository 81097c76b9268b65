"""Symmetric: one exponential per unordered pair, and the fall-back to Tiled when a row sum
leaves the normal range (the bounded exponent has no running maximum)."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import meanfield as mf
from meanfield.kernels import KernelError, Symmetric, Tiled, log_masses, select_kernel
from tests import reference as ref


def _cloud(key, n, d=3, zero_every=5):
    X = mf.uniform_sphere(key, n, d)
    w = jr.uniform(jr.fold_in(key, 1), (n,), minval=0.1).at[::zero_every].set(0.0)
    return X, log_masses(w / w.sum())


def _reference(X, beta, log_w):
    Xh = np.asarray(X, np.float64)
    L, Y = ref.attention_stats(Xh, Xh, Xh, beta, np.asarray(log_w, np.float64))
    return L, ref.project(Xh, Y)


# n, block, chunk: one block; odd and even block counts (the pair at offset nb / 2 is
# owned twice and halved); strips cut in several pieces, with a chunk that is not a
# multiple of the block; a ragged last block.
SHAPES = [(5, 8, 8), (37, 4, 4), (40, 8, 8), (50, 7, 3), (97, 16, 40)]


@pytest.mark.parametrize("n, block, chunk", SHAPES)
def test_statistics_match_the_reference_for_every_strip_layout(getkey, n, block, chunk):
    X, log_w = _cloud(getkey(), n)
    kernel = Symmetric(block, chunk)
    stats, energy = jax.jit(kernel.tangent_stats), jax.jit(kernel.log_interaction)
    for beta in (0.5, 9.0):
        L, T = stats(X, beta, log_w)
        L0, T0 = _reference(X, beta, log_w)
        np.testing.assert_allclose(np.asarray(L), L0, rtol=0, atol=1e-12 * beta)
        np.testing.assert_allclose(np.asarray(T), T0, rtol=0, atol=1e-12)
        total = jax.scipy.special.logsumexp(jnp.asarray(L0) + log_w)
        np.testing.assert_allclose(energy(X, beta, log_w), total, rtol=1e-13)


def test_points_off_the_sphere_keep_the_bounded_exponent(getkey):
    # RK4 stages evaluate slightly off the sphere; h_i = beta |x_i|^2 / 2 absorbs it.
    X, log_w = _cloud(getkey(), 30)
    X = X * jr.uniform(getkey(), (30, 1), minval=0.9, maxval=1.1)
    L, T = jax.jit(Symmetric(8, 8).tangent_stats)(X, 5.0, log_w)
    L0, Y0 = jax.jit(Tiled(8, 8).stats)(X, X, X, 5.0, log_w)
    np.testing.assert_allclose(L, L0, rtol=1e-13)
    np.testing.assert_allclose(T, mf.project(X, Y0), atol=1e-13)


def _lonely_query():
    """Zero-mass particle 0 antipodal to a massive cluster: at beta = 1000 its row sum
    exp(-beta |x_0 - x_j|^2 / 2) ~ e^{-2000} underflows in the bounded form."""
    cluster = mf.retract(jnp.array([[-1.0, 0.0, 0.0]]) + 0.01 * jnp.eye(3)[None, 1:].sum(1))
    X = jnp.concatenate([jnp.array([[1.0, 0.0, 0.0]]), jnp.tile(cluster, (9, 1))])
    X = mf.retract(X + 1e-3 * jr.normal(jr.PRNGKey(0), X.shape).at[0].set(0.0))
    log_w = log_masses(jnp.array([0.0] + [1 / 9] * 9))
    return X, log_w


@pytest.mark.parametrize("beta", [1000.0, -800.0])  # underflow; overflow (E up to e^1600)
def test_rows_outside_the_normal_range_fall_back_to_the_tiled_answer(beta):
    X, log_w = _lonely_query()
    kernel = Symmetric(4, 4)
    L, T = jax.jit(kernel.tangent_stats)(X, beta, log_w)  # traced beta: the cond decides
    L0, Y0 = jax.jit(Tiled(4, 4).stats)(X, X, X, beta, log_w)
    assert np.all(np.isfinite(np.asarray(L))) and np.all(np.isfinite(np.asarray(T)))
    np.testing.assert_allclose(L, L0, rtol=1e-13)
    np.testing.assert_allclose(T, mf.project(X, Y0), atol=1e-13)
    e = jax.jit(kernel.log_interaction)(X, beta, log_w)
    e0 = jax.jit(Tiled(4, 4).log_interaction)(X, beta, log_w)
    np.testing.assert_allclose(e, e0, rtol=1e-13)


def test_an_ensemble_falls_back_as_a_whole_when_one_system_needs_it(getkey):
    X, log_w = _lonely_query()
    Xs = jnp.stack([X, mf.uniform_sphere(getkey(), 10, 3)])
    betas = jnp.array([1000.0, 2.0])  # only the first system leaves the range
    L, T = jax.jit(Symmetric(4, 4).batched_tangent_stats)(Xs, betas, log_w)
    tiled = jax.jit(Tiled(4, 4).tangent_stats)
    for s in range(2):
        L0, T0 = tiled(Xs[s], betas[s], log_w)
        np.testing.assert_allclose(L[s], L0, rtol=1e-13)
        np.testing.assert_allclose(T[s], T0, atol=1e-13)


def test_float32_stays_within_the_float64_answer(getkey):
    X, log_w = _cloud(getkey(), 300)
    L0, T0 = _reference(X, 4.0, log_w)
    stats = jax.jit(Symmetric(32, 64).tangent_stats)
    L, T = stats(X.astype(jnp.float32), 4.0, log_w.astype(jnp.float32))
    assert L.dtype == T.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(L, np.float64), L0, rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(T, np.float64), T0, rtol=0, atol=1e-5)


@pytest.mark.parametrize("field", ["block", "chunk"])
@pytest.mark.parametrize("value", [0, -3, 2.5, True])
def test_bad_sizes_are_refused_by_name(field, value):
    with pytest.raises(KernelError, match=f"Symmetric `{field}`"):
        Symmetric(**{field: value})


def test_auto_picks_it_for_large_self_interaction_on_the_cpu():
    def pick(n, d, backend="cpu", **kw):
        return select_kernel(n, d, dtype=jnp.float32, backend=backend, native=False, **kw)

    assert pick(2048, 3, self_interaction=True) == Symmetric()
    assert pick(2048, 16, self_interaction=True) == Symmetric()
    assert pick(4096, 64, self_interaction=True) == Symmetric()
    assert pick(1024, 8, self_interaction=True) == Symmetric()
    assert pick(768, 3, self_interaction=True) == Tiled()
    assert pick(1024, 16, self_interaction=True) == Tiled()
    # where the products dominate the halved exponentials do not pay
    assert pick(2048, 64, self_interaction=True) == Tiled()
    assert pick(8192, 256, self_interaction=True) == Tiled()
    assert pick(8192, 3) == Tiled()  # cross sums: no symmetry
    assert pick(8192, 3, nk=4096, self_interaction=True) == Tiled()
    assert pick(8192, 3, self_interaction=True, backend="gpu") != Symmetric()
    if jax.default_backend() == "cpu":
        model = mf.MeanField(2.0).resolve_kernel(4096, 16, dtype=jnp.float32)
        assert model.kernel == Symmetric()  # beyond the fused loop's d <= 8
