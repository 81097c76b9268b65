"""O(n d) memory of the tiled kernels, and every kernel equal to dense at ragged sizes.

- A velocity evaluation at n = 30,000, d = 3, float64 with kernel="tiled" runs in a fresh
  interpreter whose peak resident memory (ru_maxrss) stays under 1.5 GB; the dense score
  matrix alone would be 30,000^2 * 8 B = 7.2 GB.
- Model level (tiled, ragged n against the 512 x 1024 blocks): tiled == dense for USA and
  SA, both signs, masses with zeros, beta up to 200 with rescaled time (the raw
  statistics at small blocks are in tests/kernels/test_contract.py).
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
