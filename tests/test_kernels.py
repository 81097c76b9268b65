"""Pairwise sums: tiled equals dense, both equal a NumPy reference."""

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from scipy.special import logsumexp

import meanfield as mf
from meanfield._kernels import (
    attention_stats_dense,
    attention_stats_tiled,
    log_masses,
    resolve_kernel,
)


def numpy_stats(Q, K, V, beta, log_w):
    S = beta * Q @ K.T + log_w[None, :]
    L = logsumexp(S, axis=1)
    return L, np.exp(S - L[:, None]) @ V


@pytest.mark.parametrize("beta", [0.1, 3.0, 50.0, 200.0])
@pytest.mark.parametrize("nq, nk, bq, bk", [(37, 53, 8, 16), (64, 64, 64, 64), (100, 7, 32, 4)])
def test_tiled_equals_dense_and_numpy(getkey, beta, nq, nk, bq, bk):
    Q = mf.uniform_sphere(getkey(), nq, 4)
    K = mf.uniform_sphere(getkey(), nk, 4)
    V = jr.normal(getkey(), (nk, 3))
    w = jr.uniform(getkey(), (nk,))
    w = w.at[::5].set(0.0)  # zero-mass keys
    log_w = log_masses(w / w.sum())
    L_d, Y_d = attention_stats_dense(Q, K, V, beta, log_w)
    L_t, Y_t = attention_stats_tiled(Q, K, V, beta, log_w, block_q=bq, block_k=bk)
    np.testing.assert_allclose(L_t, L_d, rtol=1e-12)
    np.testing.assert_allclose(Y_t, Y_d, rtol=1e-10, atol=1e-12)
    L_n, Y_n = numpy_stats(*map(np.asarray, (Q, K, V)), beta, np.asarray(log_w))
    np.testing.assert_allclose(L_d, L_n, rtol=1e-12)
    np.testing.assert_allclose(Y_d, Y_n, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("attention", ["usa", "sa"])
@pytest.mark.parametrize("sign", [1, -1])
def test_model_velocity_and_energy_same_with_both_kernels(getkey, attention, sign):
    X = mf.uniform_sphere(getkey(), 300, 3)
    m = jr.uniform(getkey(), (300,))
    m = m / m.sum()
    dense = mf.MeanField(7.0, sign=sign, attention=attention, kernel="dense")
    tiled = mf.MeanField(7.0, sign=sign, attention=attention, kernel="tiled")
    np.testing.assert_allclose(tiled.velocity(X, m), dense.velocity(X, m), rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(tiled.energy(X, m), dense.energy(X, m), rtol=1e-12)


def test_far_query_with_huge_beta_stays_finite():
    # The online max keeps a query far from every key finite (exp of -2000 underflows).
    Q = jnp.array([[1.0, 0.0]])
    K = jnp.array([[-1.0, 0.0], [0.0, -1.0]])
    log_w = jnp.log(jnp.array([0.5, 0.5]))
    for fn in (attention_stats_dense, attention_stats_tiled):
        L, Y = fn(Q, K, K, 1000.0, log_w)
        np.testing.assert_allclose(L, -np.log(2.0), atol=1e-12)  # beta * 0 + log(1/2)
        np.testing.assert_allclose(Y, [[0.0, -1.0]], atol=1e-12)


def test_kernel_choice():
    assert resolve_kernel("auto", 100, 100) == "dense"
    assert resolve_kernel("auto", 10_000, 10_000) == "tiled"
    assert resolve_kernel("dense", 10_000, 10_000) == "dense"
    with pytest.raises(ValueError, match="spectral"):
        resolve_kernel("spectral", 10, 10)
