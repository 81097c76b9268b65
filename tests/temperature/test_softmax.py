"""meanfield.temperature softmax statistics and curves: closed forms at beta = 0 and beta -> inf,
the direct formula, dH/dbeta = -beta Var, invariances, float32 extremes, long rows, bad input."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import meanfield as mf
from meanfield.temperature import (
    beta_at_entropy_fraction,
    beta_at_pmax,
    beta_at_pmax_half,
    critical_beta,
    effective_support,
    entropy_curve,
    entropy_derivative,
    gap_counts,
    log_partition,
    p_max,
    participation,
    predicted_critical_beta,
    sample_scores,
    score_rows,
    soft_critical_beta,
    softmax_curves,
    softmax_entropy,
    softmax_probs,
)


def _entropy_direct(s, beta):
    """Reference: H = -sum p log p from jax.nn.log_softmax (float64, moderate beta)."""
    logp = jax.nn.log_softmax(beta * s, axis=-1)
    return -jnp.sum(jnp.exp(logp) * logp, axis=-1)


def test_entropy_at_zero_is_log_n(getkey):
    s = jr.normal(getkey(), (3, 5, 257))
    np.testing.assert_allclose(softmax_entropy(s, 0.0), math.log(257), rtol=1e-12)
    np.testing.assert_allclose(effective_support(s, 0.0), 257, rtol=1e-12)
    np.testing.assert_allclose(p_max(s, 0.0), 1 / 257, rtol=1e-12)
    np.testing.assert_allclose(participation(s, 0.0), 1 / 257, rtol=1e-12)


def test_entropy_matches_direct_formula(getkey):
    s = 2.0 * jr.normal(getkey(), (4, 300))
    for beta in (0.1, 1.0, 3.7):
        np.testing.assert_allclose(softmax_entropy(s, beta), _entropy_direct(s, beta), rtol=1e-10)
        p = softmax_probs(s, beta)
        np.testing.assert_allclose(p, jax.nn.softmax(beta * s, axis=-1), rtol=1e-10)
        np.testing.assert_allclose(p_max(s, beta), p.max(-1), rtol=1e-12)
        np.testing.assert_allclose(participation(s, beta), (p**2).sum(-1), rtol=1e-10)
        np.testing.assert_allclose(
            log_partition(s, beta), jax.nn.logsumexp(beta * s, axis=-1), rtol=1e-12
        )
    # One beta per row.
    betas = jnp.array([0.0, 0.5, 1.0, 2.0])
    np.testing.assert_allclose(
        softmax_entropy(s, betas), _entropy_direct(s, betas[:, None]), rtol=1e-10
    )


def test_large_beta_unique_max_is_one_hot(getkey):
    s = jr.normal(getkey(), (6, 1000))
    H = softmax_entropy(s, 1e5)
    assert np.all(H >= 0) and np.all(H < 1e-8)
    np.testing.assert_allclose(p_max(s, 1e5), 1.0, atol=1e-12)
    # H decreases monotonically along a grid.
    curve = entropy_curve(s, jnp.linspace(0, 50, 64))
    assert np.all(np.diff(curve, axis=-1) <= 1e-12)


@pytest.mark.parametrize("m", [2, 3, 7])
def test_ties_at_the_top(getkey, m):
    s = jr.normal(getkey(), (500,))
    top = s.max() + 1.0
    s = s.at[jnp.arange(m) * 11].set(top)
    np.testing.assert_allclose(softmax_entropy(s, 1e4), math.log(m), rtol=1e-10)
    np.testing.assert_allclose(p_max(s, 1e4), 1 / m, rtol=1e-10)
    assert gap_counts(s, 0.0) == m - 1
    assert np.isinf(critical_beta(s))
    assert np.isfinite(critical_beta(s, ties="ignore"))
    assert np.isinf(beta_at_pmax_half(s))
    # H -> log m: entropy fraction below log m / log n is never reached.
    assert np.isinf(beta_at_entropy_fraction(s, 0.9 * math.log(m) / math.log(500)))
    assert np.isfinite(beta_at_entropy_fraction(s, 1.1 * math.log(m) / math.log(500)))


def test_dH_dbeta_is_minus_beta_variance(getkey):
    s = jr.normal(getkey(), (5, 200))
    for beta in (0.0, 0.3, 2.0, 9.0):
        b = jnp.full((5,), beta)
        grad = jax.vmap(jax.grad(lambda row, bb: softmax_entropy(row, bb), argnums=1))(s, b)
        p = jax.nn.softmax(beta * s, axis=-1)
        var = jnp.sum(p * s**2, -1) - jnp.sum(p * s, -1) ** 2
        np.testing.assert_allclose(grad, -beta * var, rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(entropy_derivative(s, beta), -beta * var, rtol=1e-8, atol=1e-12)


def test_curves_match_pointwise(getkey):
    s = jr.normal(getkey(), (2, 3, 700))
    betas = jnp.concatenate([jnp.zeros(1), jnp.geomspace(0.01, 100.0, 99)])
    curves = softmax_curves(s, betas)
    assert curves.entropy.shape == (2, 3, 100)
    for i in (0, 17, 50, 99):
        np.testing.assert_allclose(curves.entropy[..., i], softmax_entropy(s, betas[i]), rtol=1e-10)
        np.testing.assert_allclose(curves.p_max[..., i], p_max(s, betas[i]), rtol=1e-10)
        np.testing.assert_allclose(
            curves.participation[..., i], participation(s, betas[i]), rtol=1e-10
        )
    np.testing.assert_allclose(entropy_curve(s, betas), curves.entropy, rtol=1e-12)


def test_beta_is_traced_no_recompile(getkey):
    s = jr.normal(getkey(), (4, 100))
    softmax_entropy(s, 1.0)
    from meanfield.temperature import _softmax as T  # the jit cache of the one-beta core

    size = T._one_beta_stats._cache_size()
    for beta in (0.5, 2.0, 7.0):
        softmax_entropy(s, beta)
    assert T._one_beta_stats._cache_size() == size


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.sampled_from([3, 64]),  # few shapes: every new shape recompiles
    shift=st.floats(-100, 100),
    sigma=st.floats(0.05, 20.0),
    beta=st.floats(0.0, 30.0),
)
def test_invariances(seed, n, shift, sigma, beta):
    key = jr.PRNGKey(seed)
    s = jr.normal(key, (n,))
    perm = jr.permutation(jr.fold_in(key, 1), n)
    # Shift: nothing changes.
    np.testing.assert_allclose(
        softmax_entropy(s + shift, beta), softmax_entropy(s, beta), rtol=1e-9, atol=1e-9
    )
    np.testing.assert_allclose(critical_beta(s + shift), critical_beta(s), rtol=1e-9)
    # Permutation: nothing changes.
    np.testing.assert_allclose(
        softmax_entropy(s[perm], beta), softmax_entropy(s, beta), rtol=1e-12, atol=1e-12
    )
    np.testing.assert_allclose(critical_beta(s[perm]), critical_beta(s), rtol=1e-12)
    np.testing.assert_allclose(beta_at_pmax_half(s[perm]), beta_at_pmax_half(s), rtol=1e-9)
    # Scale: beta* scales as 1 / sigma; H(beta; sigma s) = H(sigma beta; s).
    np.testing.assert_allclose(critical_beta(sigma * s), critical_beta(s) / sigma, rtol=1e-9)
    np.testing.assert_allclose(
        beta_at_pmax_half(sigma * s), beta_at_pmax_half(s) / sigma, rtol=1e-8
    )
    np.testing.assert_allclose(
        softmax_entropy(sigma * s, beta), softmax_entropy(s, sigma * beta), rtol=1e-9, atol=1e-9
    )


def test_float32_extremes():
    if True:  # float32 inputs are computed in float32 even with x64 enabled
        key = jr.PRNGKey(0)
        s = (1e3 * jr.uniform(key, (4, 5000), jnp.float32)).at[:, 7].set(1e3)
        s = s.at[1, 9].set(1e3)  # a tie in row 1
        assert s.dtype == jnp.float32
        for beta in (0.0, 1.0, 1e2, 1e4):
            H = softmax_entropy(s, beta)
            p = softmax_probs(s, beta)
            assert H.dtype == jnp.float32
            assert np.all(np.isfinite(H)) and np.all(np.isfinite(p))
            assert np.all(H >= -1e-6)
            assert np.all(H <= math.log(5000) + 1e-4)  # noqa: SIM300
            np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-5)
        np.testing.assert_allclose(softmax_entropy(s, 1e4), [0, math.log(2), 0, 0], atol=1e-6)
        curves = softmax_curves(s, jnp.geomspace(1e-3, 1e4, 50).astype(jnp.float32))
        for c in curves:
            assert np.all(np.isfinite(c))
        rows = jnp.array([0, 2, 3])
        assert np.all(np.isfinite(critical_beta(s)[rows])) and np.isinf(critical_beta(s)[1])
        b = beta_at_pmax_half(s[rows])
        assert np.all(np.isfinite(b)) and np.allclose(p_max(s[rows], b), 0.5, rtol=1e-4)


def test_long_row(getkey):
    n = 10**6
    s = jr.normal(getkey(), (n,))
    np.testing.assert_allclose(softmax_entropy(s, 0.0), math.log(n), rtol=1e-12)
    b = critical_beta(s)
    assert 0.3 < b / math.sqrt(2 * math.log(n)) < 3
    np.testing.assert_allclose(
        entropy_curve(s, jnp.array([0.0, 1.0]))[1], softmax_entropy(s, 1.0), rtol=1e-10
    )


@pytest.mark.slow
def test_row_of_ten_million():
    if True:
        n = 10**7
        s = jr.normal(jr.PRNGKey(3), (n,), jnp.float32)
        curve = entropy_curve(s, jnp.linspace(0, 20, 32).astype(jnp.float32))
        assert np.all(np.isfinite(curve)) and abs(float(curve[0]) - math.log(n)) < 1e-4
        assert np.isfinite(critical_beta(s)) and np.isfinite(beta_at_pmax_half(s))


def test_bad_input():
    with pytest.raises(ValueError, match="scores"):
        softmax_entropy(jnp.zeros((3, 0)), 1.0)
    with pytest.raises(ValueError, match="scores"):
        softmax_entropy(jnp.float64(1.0), 1.0)
    with pytest.raises(ValueError, match="scores"):
        critical_beta(jnp.ones((4, 1)))
    with pytest.raises(ValueError, match="scores"):
        softmax_entropy(jnp.array([0.0, jnp.nan]), 1.0)
    with pytest.raises(ValueError, match="scores"):
        critical_beta(jnp.array([0.0, jnp.inf, 1.0]))
    with pytest.raises(ValueError, match="beta"):
        softmax_entropy(jnp.ones(3), -1.0)
    with pytest.raises(ValueError, match="betas"):
        entropy_curve(jnp.ones(3), jnp.array([0.0, -1.0]))
    with pytest.raises(ValueError, match="beta"):
        softmax_entropy(jnp.ones((2, 3)), jnp.ones(5))
    with pytest.raises(ValueError, match="theta"):
        beta_at_entropy_fraction(jnp.arange(4.0), 1.0)
    with pytest.raises(ValueError, match="theta"):
        beta_at_entropy_fraction(jnp.arange(4.0), 0.0)
    with pytest.raises(ValueError, match="level"):
        beta_at_pmax(jnp.arange(4.0), 1.5)
    with pytest.raises(ValueError, match="temperature"):
        soft_critical_beta(jnp.arange(4.0), 0.0)
    with pytest.raises(ValueError, match="ties"):
        critical_beta(jnp.arange(4.0), ties="drop")
    with pytest.raises(ValueError, match="family"):
        sample_scores("cauchy", jr.PRNGKey(0), 10)
    with pytest.raises(ValueError, match="rho"):
        predicted_critical_beta("planted_simplex", 100, rho=1.0)
    with pytest.raises(ValueError, match="unknown parameter"):
        predicted_critical_beta("gaussian", 100, p=2.0)
    with pytest.raises(ValueError, match="X"):
        score_rows(jnp.ones((5, 3)))
    # n = 1 is allowed for the entropy (H = 0) and documented.
    assert softmax_entropy(jnp.array([3.0]), 5.0) == 0.0


def test_traced_bad_input_raises_under_jit():
    f = jax.jit(lambda s: softmax_entropy(s, 1.0))
    with pytest.raises(Exception, match="scores"):
        jax.block_until_ready(f(jnp.array([0.0, jnp.nan, 1.0])))
    g = jax.jit(lambda b: softmax_entropy(jnp.arange(3.0), b))
    with pytest.raises(Exception, match="beta"):
        jax.block_until_ready(g(-1.0))
    assert eqx is not None


def test_arithmetic_grid_fast_path_matches_general_path(getkey):
    from meanfield.temperature._softmax import _arithmetic_grid, _curves_core  # grid detection

    scores = jax.random.normal(getkey(), (3, 500))
    grid = jnp.linspace(0.0, 12.0, 67)
    assert _arithmetic_grid(grid) is not None
    assert _arithmetic_grid(grid.at[5].add(1e-3)) is None
    fast = mf.temperature.softmax_curves(scores, grid)
    slow = _curves_core(scores, grid, with_e2=True)
    for a, b in zip(fast, slow, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(fast.entropy[:, 7], mf.softmax_entropy(scores, grid[7]), rtol=1e-12)
