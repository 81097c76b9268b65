"""Benchmark: entropy curves and beta*_n of softmax rows, meanfield (JAX) versus NumPy.

Workload (defaults): 1024 Gaussian score rows x n = 65,536 keys, float32; the entropy curve
H(beta) on 256 betas in [0, 4 sqrt(2 log n)], and beta*_n = max_k log k / Delta_(k) of the
same rows.

Timing: wall clock with ``block_until_ready``, after one warm-up call (compile time excluded
and reported separately), minimum over ``--repeats``. NumPy at full size takes minutes
(17e9 exponentials), so it is timed on ``--numpy-rows`` rows and scaled linearly per row
(both implementations are linear in the number of rows); the output says so. The two are
checked against each other on those rows.

    python benchmarks/bench_temperature.py [--rows 1024] [--n 65536] [--betas 256]
        [--numpy-rows 32] [--repeats 3] [--out benchmarks/bench_temperature.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from meanfield.temperature import critical_beta, entropy_curve, sample_scores  # noqa: E402


def numpy_entropy_curve(s: np.ndarray, betas: np.ndarray) -> np.ndarray:
    """Plain vectorised NumPy: for each beta, one pass over all rows (gaps, exp, two sums)."""
    delta = s.max(axis=-1, keepdims=True) - s
    out = np.empty((s.shape[0], len(betas)), dtype=s.dtype)
    for i, b in enumerate(betas):
        z = b * delta
        e = np.exp(-z)
        zsum = e.sum(axis=-1)
        out[:, i] = np.log(zsum) + (z * e).sum(axis=-1) / zsum
    return out


def numpy_critical_beta(s: np.ndarray) -> np.ndarray:
    """Plain vectorised NumPy: sort each row, gaps from the top, max of log k / Delta_(k)."""
    srt = np.sort(s, axis=-1)[:, ::-1]
    gaps = srt[:, :1] - srt[:, 1:]
    logk = np.log(np.arange(1, gaps.shape[-1] + 1, dtype=s.dtype))
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(gaps > 0, logk / gaps, 0.0)
    return f.max(axis=-1)


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return min(times)


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1024)
    parser.add_argument("--n", type=int, default=65536)
    parser.add_argument("--betas", type=int, default=256)
    parser.add_argument("--numpy-rows", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=os.path.join("benchmarks", "bench_temperature.json"))
    args = parser.parse_args(argv)

    rows, n, nb = args.rows, args.n, args.betas
    np_rows = min(args.numpy_rows, rows)
    # Gaussian rows from the library sampler (resolved tails: no spurious float32 ties at the
    # top, where the two definitions of beta* would differ: inf here, gap ignored in NumPy).
    s = sample_scores("gaussian", jax.random.PRNGKey(0), n, rows=rows, dtype=jnp.float32)
    betas = jnp.linspace(0.0, 4.0 * math.sqrt(2 * math.log(n)), nb, dtype=jnp.float32)
    s_np, betas_np = np.asarray(s[:np_rows]), np.asarray(betas)

    results = {}
    # meanfield: warm-up (compile) then timed runs.
    t0 = time.perf_counter()
    h_mf = jax.block_until_ready(entropy_curve(s, betas))
    compile_curve = time.perf_counter() - t0
    t_curve = best_of(lambda: entropy_curve(s, betas), args.repeats)
    t0 = time.perf_counter()
    b_mf = jax.block_until_ready(critical_beta(s))
    compile_beta = time.perf_counter() - t0
    t_beta = best_of(lambda: critical_beta(s), args.repeats)

    # NumPy on a subset of rows, scaled per row.
    t_np_curve = min(
        _timed(lambda: numpy_entropy_curve(s_np, betas_np)) for _ in range(max(1, args.repeats - 1))
    )
    h_np = numpy_entropy_curve(s_np, betas_np)
    t_np_beta = min(_timed(lambda: numpy_critical_beta(s_np)) for _ in range(args.repeats))
    b_np = numpy_critical_beta(s_np)
    scale = rows / np_rows

    err_h = float(np.max(np.abs(np.asarray(h_mf[:np_rows]) - h_np)))
    err_b = float(np.max(np.abs(np.asarray(b_mf[:np_rows], dtype=np.float64) - b_np) / b_np))
    results = {
        "machine": cpu_name(),
        "cores": os.cpu_count(),
        "jax": jax.__version__,
        "numpy": np.__version__,
        "backend": jax.default_backend(),
        "dtype": "float32",
        "rows": rows,
        "n": n,
        "betas": nb,
        "numpy_rows_timed": np_rows,
        "numpy_scaled_per_row": np_rows < rows,
        "entropy_curve": {
            "meanfield_s": t_curve,
            "meanfield_compile_s": compile_curve,
            "numpy_s": t_np_curve * scale,
            "speedup": t_np_curve * scale / t_curve,
            "max_abs_diff_H": err_h,
        },
        "critical_beta": {
            "meanfield_s": t_beta,
            "meanfield_compile_s": compile_beta,
            "numpy_s": t_np_beta * scale,
            "speedup": t_np_beta * scale / t_beta,
            "max_rel_diff": err_b,
        },
    }
    total_mf, total_np = t_curve + t_beta, (t_np_curve + t_np_beta) * scale
    results["total"] = {
        "meanfield_s": total_mf,
        "numpy_s": total_np,
        "speedup": total_np / total_mf,
    }

    print(
        f"machine: {results['machine']} ({results['cores']} cores), jax {jax.__version__}, "
        f"backend {results['backend']}, float32"
    )
    print(f"workload: {rows} rows x n = {n}, {nb} betas")
    if np_rows < rows:
        print(f"NumPy timed on {np_rows} rows and scaled x{scale:g} (linear in rows)")
    print(f"{'task':<16}{'meanfield [s]':>15}{'NumPy [s]':>12}{'speed-up':>10}{'compile [s]':>13}")
    for name in ("entropy_curve", "critical_beta", "total"):
        r = results[name]
        comp = f"{r['meanfield_compile_s']:13.2f}" if "meanfield_compile_s" in r else " " * 13
        print(f"{name:<16}{r['meanfield_s']:15.3f}{r['numpy_s']:12.3f}{r['speedup']:9.2f}x{comp}")
    print(f"agreement: max |H_mf - H_np| = {err_h:.2e}, max rel diff beta* = {err_b:.2e}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {args.out}")
    return results


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
