"""Sharded equals unsharded: ensembles over 8 host devices, ring attention, 2 processes.

The main pytest process has already initialised JAX with one CPU device (conftest), so
the multi-device checks run in a fresh interpreter with
XLA_FLAGS=--xla_force_host_platform_device_count=8; it prints the maximal relative
differences as JSON and the tests assert on them. One subprocess serves all checks.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import jax.random as jr
import numpy as np
import pytest

import meanfield as mf
from meanfield.integrate import sharded_velocity
from meanfield.kernels import default_mesh

RTOL = 1e-12

EIGHT_DEVICES = textwrap.dedent(
    """
    import json
    import jax, jax.numpy as jnp, jax.random as jr, numpy as np
    import meanfield as mf
    from meanfield.kernels import Dense, Ring, Tiled, default_mesh, log_masses
    from meanfield.integrate import integrate_sharded, shard_ensemble, sharded_velocity

    assert jax.device_count() == 8 and jnp.zeros(()).dtype == jnp.float64
    out = {}

    def rel(a, b):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape, (a.shape, b.shape)
        return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))

    key = jr.PRNGKey(0)
    n = 203                                    # not divisible by 8: padded with zero mass
    X = mf.uniform_sphere(jr.fold_in(key, 1), n, 3)
    m = jr.uniform(jr.fold_in(key, 2), (n,)).at[::7].set(0.0)
    m = m / m.sum()

    # ring statistics against dense, rectangular, values of another width
    Q = mf.uniform_sphere(jr.fold_in(key, 3), 45, 3)
    V = jr.normal(jr.fold_in(key, 4), (n, 5))
    for beta in (0.5, 200.0):
        L, Y = Ring(Tiled()).stats(Q, X, V, beta, log_masses(m))
        L0, Y0 = Dense().stats(Q, X, V, beta, log_masses(m))
        out[f"ring_stats_L_{beta}"] = rel(L, L0)
        out[f"ring_stats_Y_{beta}"] = rel(Y, Y0)

    # ring-sharded velocity and 20 Euler steps, both signs, USA (rescaled time) and SA
    for attention, rescaled in (("usa", True), ("sa", False)):
        for sign in (1, -1):
            for beta in (3.0, 200.0):
                model = mf.MeanField(beta, sign=sign, attention=attention,
                                     rescaled_time=rescaled)
                tag = f"{attention}_{sign}_{beta}"
                out["velocity_" + tag] = rel(sharded_velocity(model, X, m),
                                             model.velocity(X, m))
                run = dict(dt=0.05, steps=20, m=m, save_every=10)
                xs = integrate_sharded(model, X, **run).xs
                out["integrate_" + tag] = rel(xs, mf.integrate(model, X, **run).xs)

    # a perceptron drift with RK4, and a general system with B and V, on a 4-device mesh
    k = jr.fold_in(key, 5)
    perc = mf.Perceptron(mf.uniform_sphere(k, 3, 3), jnp.zeros(3),
                         jr.normal(jr.fold_in(k, 1), (3,)), activation="gelu")
    model = mf.MeanField(2.0, sign=-1, perceptron=perc)
    mesh4 = default_mesh(devices=jax.devices()[:4])
    run = dict(dt=0.05, steps=20, method="rk4")
    out["integrate_perceptron_rk4"] = rel(
        integrate_sharded(model, X, mesh=mesh4, **run).xs, mf.integrate(model, X, **run).xs)
    B = jnp.eye(3) + 0.3 * jr.normal(jr.fold_in(k, 2), (3, 3))
    Vm = -jnp.eye(3) + 0.3 * jr.normal(jr.fold_in(k, 3), (3, 3))
    model = mf.MeanField(1.5, attention="general", query_key=B, value=Vm, weights="exp")
    out["velocity_general"] = rel(sharded_velocity(model, X, m), model.velocity(X, m))

    # ensemble: betas x seeds (15 systems on 8 devices: padded batch)
    model = mf.MeanField(3.0, attention="sa")
    kw = dict(n=16, d=2, seeds=5, dt=0.1, steps=10, save_every=5, betas=[1.0, 5.0, 25.0])
    e0, e1 = mf.ensemble(model, key, **kw), shard_ensemble(model, key, **kw)
    out["ensemble_xs"], out["ensemble_ts"] = rel(e1.xs, e0.xs), rel(e1.ts, e0.ts)
    print("RESULT " + json.dumps(out))
    """
)


def run_script(script: str, devices: int = 8, timeout: float = 300, args=()) -> subprocess.Popen:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_ENABLE_X64"] = "1"
    env["JAX_PLATFORMS"] = "cpu"
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def parse_result(proc: subprocess.Popen, timeout: float) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"subprocess failed:\n{err[-4000:]}"
    line = [ln for ln in out.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :])


@pytest.fixture(scope="module")
def eight_devices():
    return parse_result(run_script(EIGHT_DEVICES), timeout=300)


def _check(results: dict, prefix: str):
    cases = {k: v for k, v in results.items() if k.startswith(prefix)}
    assert cases, f"no results named {prefix}*"
    bad = {k: v for k, v in cases.items() if not v <= RTOL}
    assert not bad, f"sharded != unsharded beyond {RTOL}: {bad}"


def test_ring_attention_stats_equal_dense(eight_devices):
    _check(eight_devices, "ring_stats_")


def test_ring_sharded_velocity_equals_unsharded(eight_devices):
    _check(eight_devices, "velocity_")
    assert len([k for k in eight_devices if k.startswith("velocity_")]) == 9


def test_ring_sharded_integration_equals_unsharded(eight_devices):
    _check(eight_devices, "integrate_")


def test_sharded_ensemble_equals_unsharded(eight_devices):
    _check(eight_devices, "ensemble_")


def test_single_device_mesh_is_the_plain_path(getkey):
    # In this process there is one CPU device: the ring has length 1 (no ppermute).
    X = mf.uniform_sphere(getkey(), 50, 3)
    model = mf.MeanField(4.0, sign=-1, attention="sa")
    np.testing.assert_allclose(
        sharded_velocity(model, X), model.velocity(X), rtol=1e-12, atol=1e-14
    )


def test_bad_axis_name_is_a_clear_error(getkey):
    X = mf.uniform_sphere(getkey(), 10, 3)
    with pytest.raises(ValueError, match="not an axis"):
        sharded_velocity(mf.MeanField(1.0), X, mesh=default_mesh(), axis_name="batch")


# --------------------------------------------------------------------------- 2 processes
TWO_PROCESSES = textwrap.dedent(
    """
    import sys
    pid, port = int(sys.argv[1]), int(sys.argv[2])
    from meanfield.integrate import initialize_distributed
    initialize_distributed(f"127.0.0.1:{port}", num_processes=2, process_id=pid,
                           coordinator_bind_address=f"127.0.0.1:{port}",
                           initialization_timeout=60)
    import json
    import jax, jax.random as jr
    import meanfield as mf
    from meanfield.integrate import gather_global, integrate_sharded

    assert jax.process_count() == 2 and jax.device_count() == 4, jax.devices()
    X = mf.uniform_sphere(jr.PRNGKey(0), 101, 3)
    model = mf.MeanField(4.0, sign=-1, attention="usa")
    xs = gather_global(integrate_sharded(model, X, dt=0.1, steps=10).xs)
    print("RESULT " + json.dumps({"xs": xs.tolist()}))
    """
)


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_agree_with_one():
    """Two local processes (2 CPU devices each, gloo collectives on loopback) == one process.

    The ring of `integrate_sharded` crosses the process boundary twice per velocity.
    """
    import jax

    try:
        from jax._src.lib import _jax

        _jax.make_gloo_tcp_collectives  # noqa: B018
    except (ImportError, AttributeError):
        pytest.skip("this jaxlib has no gloo CPU collectives: cross-process runs unsupported")
    if jax.config.jax_cpu_collectives_implementation not in ("gloo", None):
        pytest.skip("CPU collectives are configured to something other than gloo")
    if not socket.gethostbyname(socket.gethostname()).startswith("127."):
        pytest.skip("gloo binds the host name's address, which is not loopback here")
    port = _free_loopback_port()
    procs = [run_script(TWO_PROCESSES, devices=2, args=(pid, port)) for pid in range(2)]
    try:
        results = [parse_result(p, timeout=180) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    # Both processes see the same global result ...
    np.testing.assert_array_equal(results[0]["xs"], results[1]["xs"])
    # ... and it is the single-process result.
    X = mf.uniform_sphere(jr.PRNGKey(0), 101, 3)
    ref = mf.integrate(mf.MeanField(4.0, sign=-1, attention="usa"), X, dt=0.1, steps=10).xs
    np.testing.assert_allclose(results[0]["xs"], ref, rtol=RTOL, atol=1e-14)
