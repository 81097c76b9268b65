"""Masks in the temperature layer: `where=` and -inf scores leave keys out exactly as if the
row were shorter (values and gradients), causal rows equal their prefixes, and rows with too
few live keys are NaN by documented choice."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import meanfield as mf
from meanfield import temperature as T

BETA = 0.7
GRID = jnp.linspace(0.0, 5.0, 17)  # arithmetic: the factorised curve path
GRID_GEOM = jnp.asarray(np.geomspace(0.05, 20.0, 9))  # the general curve path
TS = jnp.asarray([0.0, 0.3, 1.0, 2.5])

# name -> f(scores, where) returning one value per row (or a trailing grid axis).
ROW_FUNCTIONS = {
    "softmax_entropy": lambda s, w: T.softmax_entropy(s, BETA, where=w),
    "entropy_derivative": lambda s, w: T.entropy_derivative(s, BETA, where=w),
    "p_max": lambda s, w: T.p_max(s, BETA, where=w),
    "participation": lambda s, w: T.participation(s, BETA, where=w),
    "log_partition": lambda s, w: T.log_partition(s, BETA, where=w),
    "entropy_curve": lambda s, w: T.entropy_curve(s, GRID, where=w),
    "entropy_curve_geom": lambda s, w: T.entropy_curve(s, GRID_GEOM, where=w),
    "softmax_curves_pmax": lambda s, w: T.softmax_curves(s, GRID, where=w).p_max,
    "softmax_curves_part": lambda s, w: T.softmax_curves(s, GRID_GEOM, where=w).participation,
    "gap_counts": lambda s, w: T.gap_counts(s, TS, where=w),
    "soft_gap_counts": lambda s, w: T.soft_gap_counts(s, TS, 0.1, where=w),
    "critical_beta": lambda s, w: T.critical_beta(s, where=w),
    "critical_beta_ignore": lambda s, w: T.critical_beta(s, where=w, ties="ignore"),
    "soft_critical_beta": lambda s, w: T.soft_critical_beta(s, 0.2, where=w),
    "beta_at_pmax": lambda s, w: T.beta_at_pmax(s, 0.3, where=w),
    "beta_at_pmax_half": lambda s, w: T.beta_at_pmax_half(s, where=w),
    "beta_at_entropy_fraction": lambda s, w: T.beta_at_entropy_fraction(s, 0.4, where=w),
}
SMOOTH = ("softmax_entropy", "soft_critical_beta", "beta_at_entropy_fraction")


def _rows_and_mask(key, rows=4, n=13, live=8):
    """Random rows and a mask with `live` keys per row at random places (the same count in
    every row, so the short rows stack into one (rows, live) batch)."""
    k1, k2 = jax.random.split(key)
    s = 2.0 * jax.random.normal(k1, (rows, n))
    order = jnp.argsort(jax.random.uniform(k2, (rows, n)), axis=-1)
    w = jnp.argsort(order, axis=-1) < live
    return s, w


def _short(s, w):
    """The live entries of each row, in order: (rows, live)."""
    s, w = np.asarray(s), np.asarray(w)
    return jnp.asarray(np.stack([s[i][w[i]] for i in range(s.shape[0])]))


def _critical_beta_reference(row):
    """max_k log k / Delta_(k) by sorting in NumPy (a reference independent of the code)."""
    gaps = np.sort(np.max(row) - np.asarray(row))[1:]
    k = np.arange(1, gaps.size + 1)
    return float(np.max(np.log(k) / gaps))


@pytest.mark.parametrize("name", sorted(ROW_FUNCTIONS))
def test_masked_row_equals_shorter_row(getkey, name):
    f = ROW_FUNCTIONS[name]
    s, w = _rows_and_mask(getkey())
    masked = np.asarray(f(s, w))
    neg_inf = np.asarray(f(jnp.where(w, s, -jnp.inf), None))
    short = np.asarray(f(_short(s, w), None))
    np.testing.assert_allclose(masked, short, rtol=1e-12, atol=1e-14, err_msg=name)
    np.testing.assert_allclose(neg_inf, short, rtol=1e-12, atol=1e-14, err_msg=name)


def test_softmax_probs_and_sorted_gaps_masked(getkey):
    s, w = _rows_and_mask(getkey())
    p = np.asarray(T.softmax_probs(s, BETA, where=w))
    g = np.asarray(T.sorted_gaps(s, where=w))
    live, m = np.asarray(w), 8
    p_short = np.asarray(T.softmax_probs(_short(s, w), BETA))
    g_short = np.asarray(T.sorted_gaps(_short(s, w)))
    np.testing.assert_allclose(p[live].reshape(p_short.shape), p_short, rtol=1e-13)
    assert np.all(p[~live] == 0.0)
    np.testing.assert_allclose(g[:, : m - 1], g_short, rtol=1e-13)
    assert np.all(np.isposinf(g[:, m - 1 :]))


@pytest.mark.parametrize("name", SMOOTH)
def test_gradients_through_the_mask(getkey, name):
    """Gradient of the masked row = gradient of the short row at live keys, exactly 0 at
    masked keys (no NaN even when they hold -inf), and matches central differences."""
    f = ROW_FUNCTIONS[name]
    s, w = _rows_and_mask(getkey(), rows=1, n=11, live=7)
    s, w = s[0], w[0]
    live = np.asarray(w)

    def total(x, where):
        return jnp.sum(f(x, where))

    g_where = np.asarray(jax.grad(total)(s, w))
    g_inf = np.asarray(jax.grad(lambda x: total(jnp.where(w, x, -jnp.inf), None))(s))
    g_short = np.asarray(jax.grad(total)(s[live], None))
    for g in (g_where, g_inf):
        assert np.all(np.isfinite(g)), name
        np.testing.assert_allclose(g[live], g_short, rtol=1e-9, atol=1e-12, err_msg=name)
        assert np.all(g[~live] == 0.0), name
    # Central differences on the live keys of the masked call.
    h = 1e-6
    fd = []
    for j in np.flatnonzero(live):
        e = jnp.zeros_like(s).at[j].set(h)
        fd.append((total(s + e, w) - total(s - e, w)) / (2 * h))
    np.testing.assert_allclose(g_where[live], np.asarray(fd), rtol=1e-5, atol=1e-7, err_msg=name)


def test_gradient_of_critical_beta_through_causal_mask(getkey):
    n = 9
    logits = jax.random.normal(getkey(), (n, n))
    causal = jnp.tril(jnp.ones((n, n), bool))
    x = jnp.where(causal, logits, -jnp.inf)
    g = jax.grad(lambda z: jnp.nansum(mf.critical_beta(z)))(x)
    assert np.all(np.isfinite(np.asarray(g)))
    assert np.all(np.asarray(g)[~np.asarray(causal)] == 0.0)
    # Closed form for row i (prefix of i + 1 keys): beta* = log k* / (s_top - s_(k*)), so
    # d beta*/d s_top = -beta*/Delta and d beta*/d s_(k*) = +beta*/Delta, 0 elsewhere.
    L = np.asarray(logits)
    for i in range(2, n):
        row = L[i, : i + 1]
        order = np.argsort(-row)
        gaps = row[order[0]] - row[order[1:]]
        terms = np.log(np.arange(1, i + 1)) / gaps
        k = int(np.argmax(terms))
        want = np.zeros(n)
        want[order[0]] = -terms[k] / gaps[k]
        want[order[k + 1]] = terms[k] / gaps[k]
        np.testing.assert_allclose(g[i], want, rtol=1e-12, atol=1e-14)


def test_causal_rows_equal_their_prefixes(getkey):
    """The issue's example: causal logits with -inf above the diagonal."""
    n = 24
    logits = jax.random.normal(getkey(), (2, n, n))
    causal = jnp.tril(jnp.ones((n, n), bool))
    masked = jnp.where(causal, logits, -jnp.inf)
    bstar = np.asarray(mf.critical_beta(masked))
    same = np.asarray(mf.critical_beta(logits, where=causal))
    np.testing.assert_array_equal(bstar, same)
    assert np.all(np.isnan(bstar[:, 0]))  # one key: no competitor (documented NaN)
    L = np.asarray(logits)
    for b in range(2):
        for i in range(1, n):
            want = _critical_beta_reference(L[b, i, : i + 1])
            np.testing.assert_allclose(bstar[b, i], want, rtol=1e-13)
    ent = np.asarray(mf.entropy_curve(masked, GRID))
    assert np.all(ent[:, 0] == 0.0)  # one live key: H = 0 at every beta
    i = 7
    np.testing.assert_allclose(
        ent[:, i], mf.entropy_curve(logits[:, i, : i + 1], GRID), rtol=1e-12, atol=1e-14
    )
    # The transformer helper agrees on rows with >= 2 keys (it returns 0 for one key).
    from meanfield.transformer import causal_critical_beta

    np.testing.assert_allclose(causal_critical_beta(logits)[:, 1:], bstar[:, 1:], rtol=1e-12)


def test_rows_with_too_few_live_keys(getkey):
    s, _ = _rows_and_mask(getkey())  # the (4, 13) shape of the other tests: no new compile
    w = np.zeros(s.shape, bool)
    w[0, :] = True
    w[1, 5] = True  # one live key; rows 2 and 3: none
    w = jnp.asarray(w)
    assert np.isfinite(T.critical_beta(s, where=w)[0])
    assert np.all(np.isnan(T.critical_beta(s, where=w)[1:]))
    assert np.all(np.isnan(T.soft_critical_beta(s, 0.1, where=w)[1:]))
    assert np.all(np.isnan(T.beta_at_pmax_half(s, where=w)[1:]))
    assert np.all(np.isnan(T.beta_at_entropy_fraction(s, where=w)[1:]))
    ent = T.softmax_entropy(s, 2.0, where=w)
    assert ent[1] == 0.0 and np.isnan(ent[2])  # one key: H = 0; none: NaN
    assert T.p_max(s, 2.0, where=w)[1] == 1.0
    assert np.all(np.isnan(T.softmax_probs(s, 2.0, where=w)[2]))
    np.testing.assert_array_equal(T.gap_counts(s, jnp.inf, where=w), [12, 0, 0, 0])


def test_mask_errors_and_nan_rules():
    s = jnp.asarray([0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="NaN or \\+inf"):
        T.critical_beta(jnp.asarray([0.0, jnp.nan, 1.0]))
    with pytest.raises(ValueError, match="NaN or \\+inf"):
        T.softmax_entropy(jnp.asarray([0.0, jnp.inf, 1.0]), 1.0)
    # NaN at a live key raises even with a mask; at a masked key it is not inspected.
    bad = jnp.asarray([0.0, jnp.nan, 1.0, 3.0])
    with pytest.raises(ValueError, match="scores"):
        T.critical_beta(bad, where=jnp.asarray([True, True, False, True]))
    np.testing.assert_allclose(
        T.critical_beta(bad, where=jnp.asarray([True, False, True, True])),
        T.critical_beta(jnp.asarray([0.0, 1.0, 3.0])),
    )
    with pytest.raises(ValueError, match="`where`.*broadcast"):
        T.critical_beta(s, where=jnp.ones(4, bool))
    with pytest.raises(ValueError, match="`where`.*boolean"):
        T.critical_beta(s, where=jnp.ones(3))
    # Broadcasting a (n,) mask over a batch.
    batch = jnp.stack([s, 2 * s])
    w = jnp.asarray([True, False, True])
    np.testing.assert_allclose(T.critical_beta(batch, where=w), T.critical_beta(batch[:, ::2]))


def test_masks_under_jit(getkey):
    s, w = _rows_and_mask(getkey())
    f = jax.jit(lambda x, m: T.critical_beta(x, where=m))
    np.testing.assert_allclose(f(s, w), T.critical_beta(s, where=w), rtol=0)
    with pytest.raises(Exception, match="scores"):
        j = int(np.flatnonzero(np.asarray(w[0]))[0])  # a live key
        jax.block_until_ready(f(s.at[0, j].set(jnp.nan), w))
