"""Legacy core benchmarks: one USA velocity evaluation, and a full SA ensemble run.

LEGACY, NOT A FAIR COMPARISON: the NumPy peer here is a slow form (the velocity's full
n x n score matrix at once with an extra broadcast pass, the ensemble through np.einsum),
so the speed-ups it prints overstate meanfield's advantage. The fair comparison (NumPy and
PyTorch by row-block matmul with exp in place, plain JAX, and a measured hardware floor) is
`benchmarks/bench_fair.py` -> `bench_fair.json`, `RESULTS_fair.md`. This script is kept for
its `best_time` / `machine_description` helpers (used by `bench_gpu.py`) and for comparison
with old numbers.

Compile time is excluded (one warm-up call), each timing is the minimum over repeats, and
JAX results are synchronised with block_until_ready. Prints a table and writes JSON.

    python benchmarks/bench_core.py --out benchmarks/bench_core.json [--quick]

NumPy note: this workplace sets OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE for old OpenBLAS
builds; they can slow NumPy's matmul. Run with
`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_core.py`
(bench_fair.py removes them itself).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time

import equinox as eqx
import jax
import numpy as np


def machine_description() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                cpu = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "jax": jax.__version__,
        "numpy": np.__version__,
        "device": str(jax.devices()[0]),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
    }


def best_time(fn, *args, repeats: int = 5) -> float:
    jax.block_until_ready(fn(*args))  # warm-up: compile
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
    return best


def numpy_usa_velocity(X, m, beta):
    """dx_i/dt = P_{x_i} sum_j m_j exp(beta <x_i, x_j>) x_j, NumPy with the whole n x n
    matrix at once (legacy slow form; bench_fair.py has the row-block form)."""
    G = X @ X.T
    np.exp(beta * G, out=G)
    S = (G * m[None, :]) @ X
    return S - np.sum(S * X, axis=1, keepdims=True) * X


def numpy_sa_ensemble(X0, beta, dt, steps):
    """Euler + renormalisation for a batch (B, n, d) of SA systems, looping over steps
    (legacy slow form through np.einsum; bench_fair.py has the batched-matmul form)."""
    X = X0.copy()
    for _ in range(steps):
        S = beta * np.einsum("bid,bjd->bij", X, X)
        S -= S.max(axis=2, keepdims=True)
        P = np.exp(S)
        P /= P.sum(axis=2, keepdims=True)
        A = np.einsum("bij,bjd->bid", P, X)
        V = A - np.sum(A * X, axis=2, keepdims=True) * X
        X = X + dt * V
        X /= np.linalg.norm(X, axis=2, keepdims=True)
    return X


def bench_velocity(sizes, dims, dtypes, repeats):
    import meanfield as mf

    rows = []
    for dtype in dtypes:
        for d in dims:
            for n in sizes:
                X = mf.uniform_sphere(jax.random.PRNGKey(0), n, d, dtype=dtype)
                m = jax.numpy.full((n,), 1.0 / n, dtype)
                model = mf.MeanField(1.0, sign=1, attention="usa")
                jitted = eqx.filter_jit(lambda mdl, X, m: mdl.vector_field(0.0, X, m))
                fn = lambda X, m, mdl=model, jitted=jitted: jitted(mdl, X, m)
                t_mf = best_time(fn, X, m, repeats=repeats)
                Xn, mn = np.asarray(X), np.asarray(m)
                t_np = best_time(numpy_usa_velocity, Xn, mn, 1.0, repeats=repeats)
                err = float(np.max(np.abs(np.asarray(fn(X, m)) - numpy_usa_velocity(Xn, mn, 1.0))))
                rows.append(
                    dict(
                        n=n,
                        d=d,
                        dtype=dtype,
                        meanfield_s=t_mf,
                        numpy_s=t_np,
                        speedup=t_np / t_mf,
                        max_abs_diff=err,
                    )
                )
                print(
                    f"velocity  n={n:6d} d={d:3d} {dtype:8s} meanfield {t_mf * 1e3:9.2f} ms  "
                    f"numpy {t_np * 1e3:9.2f} ms  speedup {t_np / t_mf:6.1f}x  diff {err:.1e}"
                )
    return rows


def bench_ensemble(batch, n, d, steps, beta, dt, repeats):
    import meanfield as mf

    model = mf.MeanField(beta, sign=1, attention="sa")
    key = jax.random.PRNGKey(0)
    X0 = jax.vmap(lambda k: mf.uniform_sphere(k, n, d, dtype="float32"))(
        jax.random.split(key, batch)
    )
    m = jax.numpy.full((n,), 1.0 / n, "float32")
    from meanfield.integrate._single import integrate_scan  # the scan an ensemble vmaps

    dt_arr = jax.numpy.asarray(dt, "float32")
    batched = eqx.filter_jit(
        jax.vmap(
            lambda mdl, X: integrate_scan(mdl, X, m, dt_arr, steps, steps, "euler").final,
            in_axes=(None, 0),
        )
    )
    run = lambda X: batched(model, X)
    t_mf = best_time(run, X0, repeats=repeats)
    X0n = np.asarray(X0)
    t_np = best_time(lambda: numpy_sa_ensemble(X0n, beta, dt, steps), repeats=max(1, repeats // 2))
    err = float(np.max(np.abs(np.asarray(run(X0)) - numpy_sa_ensemble(X0n, beta, dt, steps))))
    print(
        f"ensemble  {batch} systems n={n} d={d} SA {steps} Euler steps: meanfield "
        f"{t_mf:.3f} s  numpy {t_np:.3f} s  speedup {t_np / t_mf:.1f}x  diff {err:.1e}"
    )
    return dict(
        batch=batch,
        n=n,
        d=d,
        steps=steps,
        beta=beta,
        dt=dt,
        meanfield_s=t_mf,
        numpy_s=t_np,
        speedup=t_np / t_mf,
        max_abs_diff=err,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/bench_core.json")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print("legacy: NumPy peer in a slow form; for fair peers run benchmarks/bench_fair.py")
    if args.quick:
        sizes, dims, dtypes, batch, steps = [256, 1024], [3], ["float32"], 64, 30
    else:
        sizes, dims, dtypes, batch, steps = (
            [1024, 4096, 16384],
            [3, 64],
            ["float32", "float64"],
            2048,
            300,
        )
    if "float64" in dtypes:
        jax.config.update("jax_enable_x64", True)
    result = {
        "machine": machine_description(),
        "velocity": bench_velocity(sizes, dims, dtypes, args.repeats),
        "ensemble": bench_ensemble(batch, 32, 2, steps, 1.0, 0.1, args.repeats),
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
