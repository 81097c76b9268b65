"""Spectral versus tiled kernel: time per USA step on S^1 and S^2 as n grows.

For each sphere (d = 2: n = 10^3 .. 10^7; d = 3: n = 10^3 .. 10^6), beta in {1, 10, 50}
and the tolerance (default 1e-8), times one jitted USA Euler step with kernel="spectral"
and kernel="tiled" (tiled only while its estimated cost stays below --tiled-budget
seconds). Compile time excluded, minimum of repeats, float32 (the spectral error bound is
relative to e^beta; float32 rounding, ~1e-7, dominates tolerances below that).

    python benchmarks/bench_spectral.py --out benchmarks/bench_spectral.json [--quick]
"""

from __future__ import annotations

import argparse
import json
import time

import equinox as eqx
import jax
import jax.numpy as jnp

import meanfield as mf

try:
    from bench_core import machine_description
except ImportError:  # run from the repository root
    from benchmarks.bench_core import machine_description


@eqx.filter_jit
def _step(model, X, m, dt):
    return mf.retract(X + dt * model.vector_field(0.0, X, m))


def time_step(model, X, repeats: int) -> float:
    m = jnp.full((X.shape[0],), 1.0 / X.shape[0], X.dtype)
    dt = jnp.asarray(1e-3, X.dtype)
    jax.block_until_ready(_step(model, X, m, dt))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(_step(model, X, m, dt))
        best = min(best, time.perf_counter() - start)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/bench_spectral.json")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tol", type=float, default=1e-8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--tiled-budget",
        type=float,
        default=20.0,
        help="skip tiled runs whose n^2 cost estimate exceeds this (s)",
    )
    args = parser.parse_args()
    sizes = {2: [10**3, 10**4, 10**5, 10**6, 10**7], 3: [10**3, 10**4, 10**5, 10**6]}
    betas = [1.0, 10.0, 50.0]
    if args.quick:
        sizes, betas = {2: [10**3, 10**4], 3: [10**3]}, [1.0, 10.0]
    rows = []
    tiled_rate = None  # seconds per pair, measured on the first tiled run
    for d, ns in sizes.items():
        for beta in betas:
            spectral = mf.MeanField(
                beta, sign=1, kernel="spectral", spectral_tol=args.tol, rescaled_time=True
            )
            tiled = mf.MeanField(beta, sign=1, kernel="tiled", rescaled_time=True)
            order = spectral.select(1, d).order
            for n in ns:
                X = mf.uniform_sphere(jax.random.PRNGKey(0), n, d, dtype=jnp.float32)
                t_spec = time_step(spectral, X, args.repeats)
                t_tiled = None
                if tiled_rate is None or tiled_rate * n * n < args.tiled_budget:
                    t_tiled = time_step(tiled, X, args.repeats)
                    tiled_rate = t_tiled / (n * n)
                row = dict(
                    d=d,
                    n=n,
                    beta=beta,
                    tol=args.tol,
                    order=order,
                    spectral_s=t_spec,
                    tiled_s=t_tiled,
                    speedup=None if t_tiled is None else t_tiled / t_spec,
                )
                rows.append(row)
                tiled_txt = "      -   " if t_tiled is None else f"{t_tiled:9.4f} s"
                print(
                    f"d={d} beta={beta:5.1f} order={order:4d} n={n:9d}  spectral "
                    f"{t_spec:9.4f} s  tiled {tiled_txt}"
                    + ("" if t_tiled is None else f"  speedup {t_tiled / t_spec:8.1f}x")
                )
    with open(args.out, "w") as f:
        json.dump({"machine": machine_description(), "rows": rows}, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
