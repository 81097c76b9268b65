"""Accelerator benchmark: the kernels `select_kernel` picks, against cuDNN and plain JAX.

One command, under 4 minutes on one GPU:

    python benchmarks/bench_gpu.py                   # writes benchmarks/RESULTS_gpu.md + .json
    python benchmarks/bench_gpu.py --smoke --out /tmp/gpu.json   # tiny sizes, any backend

Rows (compile time excluded, minimum of repeats, `block_until_ready`):
1. SA velocity (kernel="auto": what select_kernel chooses) for n = 2^16, 2^18, 2^20 and
   d = 3, 64, in bfloat16 and float32, against `jax.nn.dot_product_attention(
   implementation="cudnn")` in bfloat16 at the same shape (head size padded to a multiple
   of 8; on a machine without cuDNN the XLA implementation is the reference).
2. The phase-diagram ensemble: 90 betas x 2048 systems x n = 32, d = 2, 300 SA Euler
   steps; the first call (compile included) and the steady time, against a 10-line
   plain-JAX version in the same run.
3. One USA Euler step at n = 2^20, d = 64, bfloat16.
Peak device memory is recorded where the backend reports it.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from bench_core import best_time, machine_description  # the script directory
from jax import lax

import meanfield as mf

HERE = Path(__file__).resolve().parent


def device_name() -> str:
    dev = jax.devices()[0]
    return f"{dev.platform}: {getattr(dev, 'device_kind', str(dev))}"


def peak_memory_mb() -> float | None:
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else peak / 2**20


def reference_attention(n: int, d: int, implementation: str):
    """softmax(beta q k^T) v through jax.nn.dot_product_attention, bfloat16, one head."""
    width = -(-d // 8) * 8
    X = mf.uniform_sphere(jr.PRNGKey(0), n, d, dtype=jnp.float32)
    X = jnp.pad(X, ((0, 0), (0, width - d))).astype(jnp.bfloat16)[None, :, None, :]
    fn = jax.jit(
        lambda x: jax.nn.dot_product_attention(x, x, x, scale=1.0, implementation=implementation)
    )
    return lambda: fn(X)


@eqx.filter_jit
def _field(model, X, m):
    return model.vector_field(0.0, X, m)


def velocity_rows(sizes, dims, dtypes, repeats, reference_impl):
    rows = []
    for n in sizes:
        for d in dims:
            ref_s = best_time(reference_attention(n, d, reference_impl), repeats=repeats)
            for dtype in dtypes:
                X = mf.uniform_sphere(jr.PRNGKey(1), n, d, dtype=jnp.float32).astype(dtype)
                m = jnp.full((n,), 1.0 / n, jnp.float32).astype(dtype)
                model = mf.MeanField(4.0, attention="sa").resolve_kernel(n, d, dtype=dtype)
                seconds = best_time(_field, model, X, m, repeats=repeats)
                row = dict(
                    n=n,
                    d=d,
                    dtype=jnp.dtype(dtype).name,
                    kernel=repr(model.kernel),
                    seconds=seconds,
                    reference=reference_impl,
                    reference_seconds=ref_s,
                    throughput_vs_reference=ref_s / seconds,
                    peak_mb=peak_memory_mb(),
                )
                rows.append(row)
                print(
                    f"velocity n=2^{n.bit_length() - 1:<2d} d={d:<3d} {row['dtype']:9s} "
                    f"{row['kernel']:42s} {seconds * 1e3:9.2f} ms   {reference_impl} bf16 "
                    f"{ref_s * 1e3:8.2f} ms   {row['throughput_vs_reference']:.2f}x",
                    flush=True,
                )
    return rows


def plain_jax_ensemble(X0s, betas, dt, steps):
    """Ten lines of plain JAX: SA Euler steps with renormalisation, vmapped twice."""

    def step(X, beta):
        P = jax.nn.softmax(beta * X @ X.T, axis=-1)
        Y = P @ X
        X = X + dt * (Y - jnp.sum(X * Y, axis=-1, keepdims=True) * X)
        return X / jnp.linalg.norm(X, axis=-1, keepdims=True)

    run = lambda X0, beta: lax.fori_loop(0, steps, lambda i, X: step(X, beta), X0)
    return jax.vmap(jax.vmap(run, (0, None)), (None, 0))(X0s, betas)


def ensemble_row(n_betas, seeds, n, d, steps, repeats):
    betas = jnp.linspace(1.0, 9.0, n_betas)
    model = mf.MeanField(1.0, attention="sa")
    key = jr.PRNGKey(0)
    run = lambda: (
        mf.ensemble(
            model, key, n=n, d=d, seeds=seeds, dt=0.1, steps=steps, betas=betas, dtype=jnp.float32
        ).xs
    )
    t0 = time.perf_counter()
    ours = jax.block_until_ready(run())
    first = time.perf_counter() - t0
    steady = best_time(run, repeats=repeats)
    X0s = ours[0, :, 0]
    plain = jax.jit(plain_jax_ensemble, static_argnums=(3,))
    t0 = time.perf_counter()
    theirs = jax.block_until_ready(plain(X0s, betas, 0.1, steps))
    plain_first = time.perf_counter() - t0
    plain_steady = best_time(plain, X0s, betas, 0.1, steps, repeats=repeats)
    resolved = model.resolve_kernel(n, d, dtype=jnp.float32, batch=n_betas * seeds)
    row = dict(
        betas=n_betas,
        systems=seeds,
        n=n,
        d=d,
        steps=steps,
        kernel=repr(resolved.kernel),
        first_s=first,
        steady_s=steady,
        plain_first_s=plain_first,
        plain_steady_s=plain_steady,
        steady_ratio=steady / plain_steady,
        max_abs_diff=float(jnp.max(jnp.abs(ours[:, :, -1] - theirs))),
    )
    print(
        f"ensemble {n_betas} betas x {seeds} systems x n={n} d={d} x {steps} steps "
        f"[{row['kernel']}]: first {first:.2f} s, steady {steady:.3f} s; plain JAX first "
        f"{plain_first:.2f} s, steady {plain_steady:.3f} s ({row['steady_ratio']:.2f}x); "
        f"max |diff| {row['max_abs_diff']:.1e}",
        flush=True,
    )
    return row


def usa_step_row(n, d, repeats):
    dtype = jnp.bfloat16
    X = mf.uniform_sphere(jr.PRNGKey(2), n, d, dtype=jnp.float32).astype(dtype)
    model = mf.MeanField(4.0, attention="usa").resolve_kernel(n, d, dtype=dtype)
    _, step = mf.stepper(model, dt=0.01)
    step = jax.jit(step)
    seconds = best_time(step, X, repeats=repeats)
    row = dict(
        n=n,
        d=d,
        dtype="bfloat16",
        kernel=repr(model.kernel),
        seconds=seconds,
        peak_mb=peak_memory_mb(),
    )
    print(f"USA step n={n} d={d} bf16 [{row['kernel']}]: {seconds:.3f} s", flush=True)
    return row


def markdown(result) -> str:
    lines = [
        "# GPU benchmark",
        "",
        f"Device: {result['device']}; jax {result['jax']}; {result['date']}.",
        "Command: `python benchmarks/bench_gpu.py` (compile excluded, minimum of repeats).",
        "",
        "## SA velocity (kernel='auto') vs jax.nn.dot_product_attention in bfloat16",
        "",
        "| n | d | dtype | kernel chosen | ms | reference ms | throughput vs reference |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["velocity"]:
        lines.append(
            f"| 2^{r['n'].bit_length() - 1} | {r['d']} | {r['dtype']} | `{r['kernel']}` | "
            f"{r['seconds'] * 1e3:.2f} | {r['reference_seconds'] * 1e3:.2f} "
            f"({r['reference']}) | {r['throughput_vs_reference']:.2f}x |"
        )
    e = result["ensemble"]
    lines += [
        "",
        f"## Phase-diagram ensemble: {e['betas']} betas x {e['systems']} systems x n = "
        f"{e['n']}, d = {e['d']}, {e['steps']} SA Euler steps (`{e['kernel']}`)",
        "",
        "| | first call (s) | steady (s) |",
        "|---|---|---|",
        f"| meanfield | {e['first_s']:.2f} | {e['steady_s']:.3f} |",
        f"| plain JAX (10 lines) | {e['plain_first_s']:.2f} | {e['plain_steady_s']:.3f} |",
        "",
        f"steady ratio {e['steady_ratio']:.2f}x; max |difference| of the final states "
        f"{e['max_abs_diff']:.1e}.",
    ]
    u = result["usa_step"]
    lines += [
        "",
        f"## One USA step, n = {u['n']}, d = {u['d']}, bfloat16 (`{u['kernel']}`): "
        f"{u['seconds']:.3f} s, peak device memory {u['peak_mb']} MB",
        "",
    ]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (any backend)")
    parser.add_argument("--out", default=str(HERE / "RESULTS_gpu.json"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    on_gpu = jax.default_backend() == "gpu"
    reference_impl = "cudnn" if on_gpu else "xla"
    if args.smoke:
        sizes, dims, ens, usa = [256], [3, 8], (2, 4, 8, 2, 5), (512, 8)
    else:
        sizes, dims, ens, usa = [2**16, 2**18, 2**20], [3, 64], (90, 2048, 32, 2, 300), (2**20, 64)
    result = dict(
        device=device_name(),
        machine=machine_description(),
        jax=jax.__version__,
        python=platform.python_version(),
        date=time.strftime("%Y-%m-%d"),
        smoke=args.smoke,
        velocity=velocity_rows(
            sizes, dims, [jnp.bfloat16, jnp.float32], args.repeats, reference_impl
        ),
        ensemble=ensemble_row(*ens, args.repeats),
        usa_step=usa_step_row(*usa, args.repeats),
    )
    out = Path(args.out)
    out.write_text(json.dumps(result, indent=2))
    out.with_suffix(".md").write_text(markdown(result))
    print(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
