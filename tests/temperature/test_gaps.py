"""Gap counts and beta*_n: brute force, the sup formula, the partition identity, gradients,
the smoothed scale and the counting convention at a threshold exactly on a gap."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from meanfield.temperature import (
    critical_beta,
    gap_counts,
    soft_critical_beta,
    soft_gap_counts,
    sorted_gaps,
)


def _brute_critical_beta(s):
    s = np.sort(np.asarray(s))[::-1]
    gaps = s[0] - s[1:]
    k = np.arange(1, len(gaps) + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.max(np.where(gaps > 0, np.log(k) / gaps, 0.0))


def test_gap_counts_and_sorted_gaps(getkey):
    s = jr.normal(getkey(), (3, 400))
    gaps = sorted_gaps(s)
    assert gaps.shape == (3, 399)
    assert np.all(np.diff(gaps, axis=-1) >= 0) and np.all(gaps > 0)
    t = jnp.array([-1.0, 0.0, 0.1, 0.5, 1.0, 2.5, 100.0])
    counts = gap_counts(s, t)
    delta = s.max(-1, keepdims=True) - s
    brute = (delta[:, None, :] <= t[None, :, None]).sum(-1) - 1
    np.testing.assert_array_equal(counts, np.maximum(brute, 0))
    assert counts[0, -1] == 399
    # Soft counts converge to hard counts away from the jumps.
    soft = soft_gap_counts(s, t[1:], 1e-6)
    np.testing.assert_allclose(soft[..., 1:], counts[..., 2:], atol=1e-3)


def test_partition_identity(getkey):
    """sum_j exp(-beta Delta_j) = 1 + beta int_0^inf exp(-beta t) N(t) dt."""
    s = jr.normal(getkey(), (300,))
    gaps = sorted_gaps(s)
    for beta in (0.5, 2.0, 6.0):
        lhs = jnp.sum(jnp.exp(-beta * (s.max() - s)))
        # Exact integral of the step function: sum_k exp(-beta Delta_(k)) / beta.
        exact = 1 + beta * jnp.sum(jnp.exp(-beta * gaps)) / beta
        np.testing.assert_allclose(lhs, exact, rtol=1e-12)
        # Quadrature of the step function N(t) from gap_counts on a fine grid (midpoint).
        tmax = float(gaps[-1]) + 40.0 / beta
        edges = jnp.linspace(0.0, tmax, 400_001)
        mids = 0.5 * (edges[1:] + edges[:-1])
        integral = jnp.sum(jnp.exp(-beta * mids) * gap_counts(s, mids)) * (edges[1] - edges[0])
        np.testing.assert_allclose(lhs, 1 + beta * integral, rtol=2e-4)


def test_critical_beta_brute_force_and_sup_formula(getkey):
    s = jr.normal(getkey(), (5, 333))
    b = critical_beta(s)
    np.testing.assert_allclose(b, [_brute_critical_beta(row) for row in s], rtol=1e-12)
    # sup_t log N(t)/t is attained at the jump points t = Delta_(k).
    for row, bi in zip(s, b, strict=True):
        t = jnp.sort(row.max() - row)[1:]
        ratio = jnp.log(jnp.maximum(gap_counts(row, t), 1).astype(t.dtype)) / t
        np.testing.assert_allclose(ratio.max(), bi, rtol=1e-12)
        tt = jnp.linspace(1e-3, 5.0, 5000)
        assert jnp.max(jnp.log(jnp.maximum(gap_counts(row, tt), 1).astype(tt.dtype)) / tt) <= bi * (
            1 + 1e-12
        )
    # n = 2: beta* = log 1 / Delta = 0.
    assert critical_beta(jnp.array([0.0, 1.0])) == 0.0


def test_critical_beta_gradient(getkey):
    s = jr.normal(getkey(), (400,))
    g = jax.grad(lambda x: critical_beta(x))(s)
    v = jr.normal(getkey(), s.shape)
    h = 1e-7
    fd = (critical_beta(s + h * v) - critical_beta(s - h * v)) / (2 * h)
    np.testing.assert_allclose(jnp.vdot(g, v), fd, rtol=1e-5)
    assert jnp.count_nonzero(g) == 2  # only the max and the critical competitor move it
    np.testing.assert_allclose(g.sum(), 0.0, atol=1e-10)  # shift invariance


def test_soft_critical_beta_bounds_and_limit(getkey):
    s = jr.normal(getkey(), (4, 500))
    hard = critical_beta(s)
    for temp in (1.0, 0.1, 0.01):
        soft = soft_critical_beta(s, temp)
        assert np.all(soft >= hard) and np.all(soft <= hard + temp * math.log(499) + 1e-12)
    np.testing.assert_allclose(soft_critical_beta(s, 1e-5), hard, rtol=1e-3)
    g = jax.grad(lambda x: soft_critical_beta(x, 0.3).sum())(s)
    v = jr.normal(getkey(), s.shape)
    h = 1e-7
    f = lambda x: soft_critical_beta(x, 0.3).sum()
    np.testing.assert_allclose(jnp.vdot(g, v), (f(s + h * v) - f(s - h * v)) / (2 * h), rtol=1e-5)


def test_gap_count_at_a_threshold_exactly_on_a_gap():
    """N_n(t) counts Delta_j <= t (non-strict): at t equal to a gap that gap is counted.
    Scores with exactly representable gaps 1, 1.5, 3 (and a tie at the top counts as 0)."""
    s = jnp.array([3.0, 2.0, 1.5, 0.0])
    ts = jnp.array([0.0, 0.999, 1.0, 1.5, 2.999, 3.0])
    np.testing.assert_array_equal(gap_counts(s, ts), [0, 0, 1, 2, 2, 3])
    for t, expected in [(1.0, 1), (1.5, 2), (3.0, 3)]:
        assert int(gap_counts(s, t)) == expected
    tied = jnp.array([3.0, 3.0, 2.0])
    np.testing.assert_array_equal(gap_counts(tied, jnp.array([0.0, 1.0])), [1, 2])
    np.testing.assert_allclose(critical_beta(s), math.log(2) / 1.5, rtol=1e-14)


def test_host_path_equals_the_device_formula(getkey):
    # Eager calls (and jit) on the CPU take the host path (sort and reduce in NumPy); the
    # primal of a JVP is the device formula (sort, gaps, terms in XLA). Edge rows: masked
    # keys, a tie at the top, one live key (NaN), no live key (NaN), a batch of (2, 3).
    n = 300
    for dtype in (jnp.float32, jnp.float64):
        s = np.array(jr.normal(getkey(), (2, 3, n)), dtype)
        s[0, 1, :100] = -np.inf  # masked keys
        s[0, 2, 5] = s[0, 2].max()  # maximum attained twice
        s[1, 0, 1:] = -np.inf  # one live key
        s[1, 1, :] = -np.inf  # none
        for ties in ("inf", "ignore"):
            eager = np.asarray(critical_beta(s, ties=ties))
            fn = lambda x, t=ties: critical_beta(x, ties=t)
            compiled = np.asarray(jax.jit(fn)(s))
            device = np.asarray(jax.jvp(fn, (s,), (np.zeros_like(s),))[0])
            assert eager.dtype == device.dtype == dtype and eager.shape == (2, 3)
            np.testing.assert_allclose(eager, device, rtol=4 * np.finfo(dtype).eps)
            np.testing.assert_array_equal(eager, compiled)
            assert np.isnan(eager[1, 0]) and np.isnan(eager[1, 1])
            assert (eager[0, 2] == np.inf) == (ties == "inf")
            live = s[0, 1][s[0, 1] > -np.inf]
            np.testing.assert_allclose(eager[0, 1], _brute_critical_beta(live), rtol=1e-5)
            finite = np.isfinite(eager)
            assert np.all(eager[finite] > 0)
