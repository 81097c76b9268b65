"""Scaling benchmark: CPU time per USA Euler step versus n (d = 3, float32).

For each n = 2^10 .. 2^17 and each implementation (meanfield tiled, meanfield dense,
plain NumPy) a FRESH subprocess builds the problem, times one jitted Euler step
X <- retract(X + dt v(X)) (warm-up call excluded, minimum over repeats,
block_until_ready) and reports its peak resident memory (ru_maxrss: XLA allocates
outside Python, so tracemalloc would miss it). Dense and NumPy are skipped where the
n x n float32 matrix would exceed --dense-max-gb (default 4 GB) or n > 2^14.
Prints a table (with the log-log slope of the tiled time, fitted for n >= 2^12) and
writes JSON.

    python benchmarks/bench_scale.py --out benchmarks/bench_scale.json [--quick]
        [--max-log2 17] [--repeats 3]

Timings on a shared CPU are noisy; the slope and ratios are the robust part.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.abspath(__file__)


def machine_description() -> dict:
    """The machine record shared by all benchmarks (see bench_core.machine_description)."""
    sys.path.insert(0, os.path.dirname(HERE))
    from bench_core import machine_description as describe

    return describe()


# --------------------------------------------------------------------------- worker
def _peak_mb() -> float:
    """Peak resident memory of this process (VmHWM; ru_maxrss also counts the parent's
    peak, which Linux carries across fork + exec)."""
    try:
        with open("/proc/self/status") as f:
            return int([ln for ln in f if ln.startswith("VmHWM:")][0].split()[1]) / 1024
    except (OSError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def worker(n: int, impl: str, repeats: int, d: int = 3, beta: float = 1.0, dt: float = 0.1):
    """Time one USA Euler step at size n with `impl`; print a JSON line."""
    import numpy as np

    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    if impl == "numpy":
        m = np.full(n, 1.0 / n, np.float32)

        def step():
            W = np.exp(beta * (X @ X.T)) * m[None, :]
            S = W @ X
            V = S - np.sum(X * S, axis=1, keepdims=True) * X
            Z = X + dt * V
            return Z / np.linalg.norm(Z, axis=1, keepdims=True)

        step()  # warm-up (page faults)
        seconds = _best(step, repeats)
    else:
        import equinox as eqx
        import jax
        import jax.numpy as jnp

        import meanfield as mf

        model = mf.MeanField(beta, sign=1, attention="usa", kernel=impl)
        Xj = jnp.asarray(X)
        mj = jnp.full((n,), 1.0 / n, jnp.float32)
        dtj = jnp.asarray(dt, jnp.float32)

        @eqx.filter_jit
        def euler(model, X, m, dt):
            return mf.retract(X + dt * model.vector_field(0.0, X, m))

        t0 = time.perf_counter()
        jax.block_until_ready(euler(model, Xj, mj, dtj))
        compile_and_first = time.perf_counter() - t0
        seconds = _best(lambda: jax.block_until_ready(euler(model, Xj, mj, dtj)), repeats)
    peak_mb = _peak_mb()
    out = dict(n=n, impl=impl, seconds=seconds, peak_mb=peak_mb, pairs_per_s=n * n / seconds)
    if impl != "numpy":
        out["first_call_s"] = compile_and_first
    print("RESULT " + json.dumps(out), flush=True)


# --------------------------------------------------------------------------- driver
def run_one(n: int, impl: str, repeats: int, timeout: float) -> dict | None:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("JAX_ENABLE_X64", None)
    cmd = [sys.executable, HERE, "--worker", "--n", str(n), "--impl", impl]
    cmd += ["--repeats", str(repeats)]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict(n=n, impl=impl, error=f"timeout after {timeout:.0f} s")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return dict(n=n, impl=impl, error=proc.stderr.strip().splitlines()[-1:])
    return json.loads(lines[-1][len("RESULT ") :])


def loglog_slope(ns, ts) -> float:
    import numpy as np

    return float(np.polyfit(np.log(ns), np.log(ts), 1)[0])


def fmt(x, spec):
    """format(x, spec), or a right-aligned '-' of the same width for a missing value."""
    width = int("".join(c for c in spec.split(".")[0] if c.isdigit()) or 0)
    return "-".rjust(width) if x is None else format(x, spec)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--quick", action="store_true", help="smoke run: n = 2^10 .. 2^12")
    ap.add_argument("--max-log2", type=int, default=17)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dense-max-gb", type=float, default=4.0)
    ap.add_argument("--dense-max-log2", type=int, default=14)
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--impl", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args.n, args.impl, args.repeats)

    top = 12 if args.quick else args.max_log2
    repeats = 1 if args.quick else args.repeats
    rows = []
    for k in range(10, top + 1):
        n = 2**k
        row = {"n": n}
        fits = n * n * 4 / 2**30 <= args.dense_max_gb and k <= args.dense_max_log2
        for impl in ("tiled", "dense", "numpy"):
            if impl != "tiled" and not fits:
                continue
            reps = repeats if k <= 14 else max(1, repeats - 1)
            res = run_one(n, impl, reps, args.timeout)
            row[impl] = res
            print(f"  n=2^{k} {impl}: {res}", flush=True)
        rows.append(row)

    ok = [r for r in rows if "seconds" in r["tiled"]]
    fit = [r for r in ok if r["n"] >= 2**12]
    fit = fit if len(fit) >= 2 else ok
    slope = loglog_slope([r["n"] for r in fit], [r["tiled"]["seconds"] for r in fit])

    def get(r, impl, key):
        return (r.get(impl) or {}).get(key)

    print()
    print(
        f"{'n':>8} {'tiled s/step':>13} {'Mpairs/s':>9} {'peak MB':>8} {'dense s/step':>13} "
        f"{'dense MB':>9} {'dense/tiled':>12} {'numpy s/step':>13} {'numpy/tiled':>12}"
    )
    for r in rows:
        t = get(r, "tiled", "seconds")
        dn, nu = get(r, "dense", "seconds"), get(r, "numpy", "seconds")
        print(
            f"{r['n']:>8} {fmt(t, '13.4g')} {fmt(r['n'] ** 2 / t / 1e6 if t else None, '9.0f')} "
            f"{fmt(get(r, 'tiled', 'peak_mb'), '8.0f')} {fmt(dn, '13.4g')} "
            f"{fmt(get(r, 'dense', 'peak_mb'), '9.0f')} "
            f"{fmt(dn / t if dn and t else None, '12.2f')} {fmt(nu, '13.4g')} "
            f"{fmt(nu / t if nu and t else None, '12.2f')}"
        )
    print(f"\nlog-log slope of tiled time per step (n >= {fit[0]['n']}): {slope:.3f}")
    result = {
        "machine": machine_description(),
        "workload": "one USA Euler step, d = 3, float32, beta = 1, uniform masses",
        "repeats": repeats,
        "tiled_loglog_slope": slope,
        "slope_fit_min_n": fit[0]["n"],
        "rows": rows,
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
        print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
