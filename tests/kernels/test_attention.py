"""The Attention kernel (jax.nn.dot_product_attention with an extra key).

The extra-key / residual derivations are exact in float64 with an exact reference
attention; through XLA's `jax.nn.dot_product_attention`, whose softmax is always float32,
to float32 accuracy; the implementation is chosen from the backend and dtype (no
try/except fallback), and float64 is refused.
"""

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import meanfield as mf
from meanfield import kernels
from meanfield.kernels import Attention, Dense, log_masses
from meanfield.kernels.attention import default_implementation


def _inputs(key, nq, nk, d=4, e=3, same=False):
    K = mf.uniform_sphere(jr.fold_in(key, 1), nk, d)
    Q = K if same else mf.uniform_sphere(jr.fold_in(key, 2), nq, d)
    V = K if same and e == d else jr.normal(jr.fold_in(key, 3), (nk, e))
    w = jr.uniform(jr.fold_in(key, 4), (nk,)).at[::5].set(0.0)
    return Q, K, V, log_masses(w / w.sum())


@pytest.mark.parametrize("normaliser", ["extra_key", "residual"])
@pytest.mark.parametrize("nq, nk, same", [(37, 53, False), (301, 301, True)])
def test_attention_derivation_is_exact_in_float64(getkey, normaliser, nq, nk, same):
    Q, K, V, log_w = _inputs(getkey(), nq, nk, same=same)
    kernel = Attention("reference", normaliser, block_q=64)
    for beta in (0.1, 3.0, 50.0, 200.0):
        L0, Y0 = Dense().stats(Q, K, V, beta, log_w)
        L, Y = kernel.stats(Q, K, V, beta, log_w)
        # L is a logarithm: compare absolutely (= the relative error of e^L).
        np.testing.assert_allclose(L, L0, rtol=0, atol=1e-12 * max(1.0, beta))
        np.testing.assert_allclose(Y, Y0, rtol=1e-10, atol=1e-10 * float(jnp.max(jnp.abs(Y0))))


@pytest.mark.parametrize("normaliser", ["extra_key", "residual"])
def test_attention_xla_float32_matches_dense(getkey, normaliser):
    # XLA's dot_product_attention takes the softmax in float32: float32 accuracy only.
    Q, K, V, log_w = _inputs(getkey(), 301, 301, d=3, e=3, same=True)
    f32 = lambda x: x.astype(jnp.float32)
    for beta in (0.1, 3.0, 50.0, 200.0):
        L0, Y0 = Dense().stats(Q, K, V, beta, log_w)
        kernel = Attention("xla", normaliser, block_q=128)
        L, Y = kernel.stats(f32(Q), f32(K), f32(V), beta, f32(log_w))
        assert L.dtype == jnp.float32 and Y.dtype == jnp.float32
        np.testing.assert_allclose(L, L0, rtol=0, atol=1e-5 * max(1.0, beta))
        np.testing.assert_allclose(Y, Y0, rtol=0, atol=1e-5 * float(jnp.max(jnp.abs(Y0))))


def test_bfloat16_inputs_stay_bfloat16_inside_the_kernel(getkey):
    # The log-weight floor is built in the input dtype: a NumPy scalar promoted bfloat16
    # log-weights to float32, which cuDNN refuses ("value dtype should be float32").
    from meanfield.kernels.attention import _finite_log_w

    lw = jnp.array([0.0, -jnp.inf], jnp.float32)
    assert _finite_log_w(lw, jnp.bfloat16).dtype == jnp.bfloat16
    Q, K, V, log_w = (x.astype(jnp.bfloat16) for x in _inputs(getkey(), 30, 30, same=True, e=4))
    L, Y = Attention("xla").stats(Q, K, V, 2.0, log_w)
    assert L.dtype == jnp.float32 and Y.dtype == jnp.bfloat16
    L0, Y0 = Dense().stats(*(x.astype(jnp.float64) for x in (Q, K, V)), 2.0, log_w.astype(float))
    np.testing.assert_allclose(L, L0, atol=3e-2)
    np.testing.assert_allclose(np.asarray(Y, np.float64), Y0, atol=3e-2)


def test_implementation_is_chosen_from_backend_and_dtype():
    assert default_implementation(jnp.bfloat16, backend="gpu") == "cudnn"
    assert default_implementation(jnp.float16, backend="gpu") == "cudnn"
    assert default_implementation(jnp.float32, backend="gpu") == "xla"
    assert default_implementation(jnp.bfloat16, backend="cpu") == "xla"
    assert Attention().prepare(10, 3, jnp.bfloat16) == Attention("xla")  # no GPU here


def test_attention_refuses_float64_and_bad_arguments(getkey):
    Q, K, V, log_w = _inputs(getkey(), 40, 70)
    with pytest.raises(kernels.KernelError, match="Attention.*float64"):
        Attention().stats(Q, K, V, 20.0, log_w)
    with pytest.raises(kernels.KernelError, match="normaliser"):
        Attention(normaliser="nope")
    with pytest.raises(kernels.KernelError, match="implementation"):
        Attention(implementation="triton")
