"""O(n d) memory of the tiled kernels, and every kernel equal to dense at ragged sizes.

- A velocity evaluation at n = 30,000, d = 3, float64 with kernel="tiled" runs in a fresh
  interpreter whose peak resident memory (ru_maxrss) stays under 1.5 GB; the dense score
  matrix alone would be 30,000^2 * 8 B = 7.2 GB.
- Model level (tiled, ragged n against the 512 x 1024 blocks): tiled == dense for USA and
  SA, both signs, masses with zeros, beta up to 200 with rescaled time (test_kernels.py
  covers the raw statistics at small blocks).
- The attention-kernel path (`_attention_gpu`): the extra-key / residual derivations are
  exact in float64 with an exact reference attention; through XLA's
  `jax.nn.dot_product_attention`, whose softmax is always float32, to float32 accuracy.
"""

import json
import os
import subprocess
import sys
import textwrap

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import meanfield as mf
from meanfield._attention_gpu import attention_stats_dpa, default_implementation
from meanfield._kernels import attention_stats_dense, attention_stats_tiled, log_masses

PEAK_LIMIT_MB = 1500

LARGE_VELOCITY = textwrap.dedent(
    """
    import json, resource, time
    import jax, jax.numpy as jnp, jax.random as jr, numpy as np
    import meanfield as mf

    n, d = 30_000, 3
    X = mf.uniform_sphere(jr.PRNGKey(0), n, d)
    assert X.dtype == jnp.float64
    model = mf.MeanField(5.0, sign=-1, attention="usa", kernel="tiled")
    t0 = time.perf_counter()
    v = np.asarray(model.velocity(X))
    seconds = time.perf_counter() - t0
    # a few rows against a direct float64 NumPy sum
    Xh = np.asarray(X)
    rows = np.array([0, 1234, n - 1])
    W = np.exp(5.0 * Xh[rows] @ Xh.T) / n
    S = W @ Xh
    ref = -(S - np.sum(Xh[rows] * S, axis=1, keepdims=True) * Xh[rows])
    err = float(np.max(np.abs(v[rows] - ref)) / np.max(np.abs(ref)))
    # VmHWM is the peak of this process's own address space. (ru_maxrss is not: Linux
    # carries the parent's peak across fork + exec, so a big pytest worker inflates it.)
    try:
        with open("/proc/self/status") as f:
            hwm = [ln for ln in f if ln.startswith("VmHWM:")][0]
        peak_mb = int(hwm.split()[1]) / 1024  # kB
    except (OSError, IndexError):
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(dict(peak_mb=peak_mb, err=err, seconds=seconds,
                                      finite=bool(np.all(np.isfinite(v))))))
    """
)


def test_tiled_velocity_at_n_30000_stays_under_1_5_gb():
    env = dict(os.environ, JAX_ENABLE_X64="1", JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run(
        [sys.executable, "-c", LARGE_VELOCITY],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    res = json.loads(line[len("RESULT ") :])
    assert res["finite"]
    assert res["err"] < 1e-12, res
    assert res["peak_mb"] < PEAK_LIMIT_MB, f"peak memory {res['peak_mb']:.0f} MB: {res}"


# --------------------------------------------------------------------------- ragged model
N_RAGGED = 1100  # > one 512-row block and one 1024-key block, divisible by neither


@pytest.fixture(scope="module")
def ragged():
    key = jr.PRNGKey(11)
    X = mf.uniform_sphere(jr.fold_in(key, 0), N_RAGGED, 3)
    m = jr.uniform(jr.fold_in(key, 1), (N_RAGGED,)).at[::9].set(0.0)
    return X, m / m.sum()


@eqx.filter_jit
def _quantities(model, X, m):
    """Velocity, log-energy, rescaled energy, first variation at 17 points (beta traced)."""
    Y = X[:17]
    return (
        model.velocity(X, m),
        model.log_energy(X, m),
        model.rescaled_energy(X, m),
        jnp.exp(-model.beta) * model.first_variation(Y, X, m),
    )


@pytest.mark.parametrize("attention", ["usa", "sa"])
def test_ragged_tiled_model_equals_dense(ragged, attention):
    X, m = ragged
    for beta in (0.5, 30.0, 200.0):
        for sign in (1, -1):
            kw = dict(sign=sign, attention=attention, rescaled_time=True)
            dense = _quantities(mf.MeanField(beta, kernel="dense", **kw), X, m)
            tiled = _quantities(mf.MeanField(beta, kernel="tiled", **kw), X, m)
            for t, d in zip(tiled, dense, strict=True):
                scale = float(jnp.max(jnp.abs(d)))
                assert np.all(np.isfinite(t)), (beta, sign)
                np.testing.assert_allclose(t, d, rtol=1e-12, atol=1e-12 * scale)


# --------------------------------------------------------------------------- attention path
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
    for beta in (0.1, 3.0, 50.0, 200.0):
        L0, Y0 = attention_stats_dense(Q, K, V, beta, log_w)
        L, Y = attention_stats_dpa(
            Q, K, V, beta, log_w, implementation="reference", normaliser=normaliser, block_q=64
        )
        # L is a logarithm: compare absolutely (= the relative error of e^L).
        np.testing.assert_allclose(L, L0, rtol=0, atol=1e-12 * max(1.0, beta))
        np.testing.assert_allclose(Y, Y0, rtol=1e-10, atol=1e-10 * float(jnp.max(jnp.abs(Y0))))


@pytest.mark.parametrize("normaliser", ["extra_key", "residual"])
def test_attention_xla_float32_matches_dense(getkey, normaliser):
    # XLA's dot_product_attention takes the softmax in float32: float32 accuracy only.
    Q, K, V, log_w = _inputs(getkey(), 301, 301, d=3, e=3, same=True)
    f32 = lambda x: x.astype(jnp.float32)
    for beta in (0.1, 3.0, 50.0, 200.0):
        _check_float32(Q, K, V, log_w, beta, normaliser, f32)


def _check_float32(Q, K, V, log_w, beta, normaliser, f32):
    L0, Y0 = attention_stats_dense(Q, K, V, beta, log_w)
    L, Y = attention_stats_dpa(
        f32(Q),
        f32(K),
        f32(V),
        beta,
        f32(log_w),
        implementation="xla",
        normaliser=normaliser,
        block_q=128,
    )
    assert L.dtype == jnp.float32
    np.testing.assert_allclose(L, L0, rtol=0, atol=1e-5 * max(1.0, beta))
    np.testing.assert_allclose(Y, Y0, rtol=0, atol=1e-5 * float(jnp.max(jnp.abs(Y0))))


def test_attention_path_float64_falls_back_to_tiled(getkey):
    Q, K, V, log_w = _inputs(getkey(), 40, 70)
    assert default_implementation(jnp.float64) == "xla"  # no GPU in the test run
    L, Y = attention_stats_dpa(Q, K, V, 20.0, log_w)
    L0, Y0 = attention_stats_tiled(Q, K, V, 20.0, log_w)
    np.testing.assert_array_equal(L, L0)
    np.testing.assert_array_equal(Y, Y0)


def test_attention_path_bad_arguments():
    Q = jnp.ones((2, 3))
    with pytest.raises(ValueError, match="normaliser"):
        attention_stats_dpa(Q, Q, Q, 1.0, jnp.zeros(2), normaliser="nope")
    with pytest.raises(ValueError, match="implementation"):
        attention_stats_dpa(Q, Q, Q, 1.0, jnp.zeros(2), implementation="triton")


def test_cudnn_failure_falls_back_to_xla(getkey, monkeypatch):
    # Pretend to be on a GPU: cuDNN is chosen, fails on this CPU, XLA takes over.
    import meanfield._attention_gpu as gpu

    monkeypatch.setattr(gpu, "default_implementation", lambda dtype: "cudnn")
    Q, K, V, log_w = (x.astype(jnp.float32) for x in _inputs(getkey(), 30, 30, same=True, e=4))
    with pytest.warns(UserWarning, match="cuDNN attention unavailable"):
        L, Y = gpu.attention_stats_dpa(Q, K, V, 2.0, log_w)
    L0, Y0 = gpu.attention_stats_dpa(Q, K, V, 2.0, log_w, implementation="xla")
    np.testing.assert_array_equal(L, L0)
    np.testing.assert_array_equal(Y, Y0)
