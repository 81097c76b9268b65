"""Fair CPU benchmarks: meanfield against the fastest plain NumPy, PyTorch and JAX forms,
and against a hardware floor measured in the same run.

One command regenerates everything (JSON + markdown table):

    python benchmarks/bench_fair.py                 # writes benchmarks/bench_fair.json and
                                                    # benchmarks/RESULTS_fair.md
    python benchmarks/bench_fair.py --smoke --out /tmp/fair.json   # tiny sizes, < 1 min

Workloads (float32, uniform masses m_j = 1/n, beta = 1):

1. USA velocity v_i = P_{x_i} sum_j m_j exp(beta <x_i, x_j>) x_j, P_x y = y - <x, y> x,
   at (n, d) = (1024, 3), (4096, 3), (4096, 64), (16384, 64). meanfield: the model's
   `vector_field` with the kernel resolved once outside jit (`MeanField.resolve_kernel`,
   i.e. `kernels.resolve_kernel` / `select_kernel`), timed both under `eqx.filter_jit`
   (model as an argument) and under plain `jax.jit` (model captured); the faster is
   reported and named.
2. Ensemble: 2048 independent SA systems (softmax weights), n = 32, d = 2, 300 Euler steps
   dt = 0.1 with x <- (x + dt v) / |x + dt v|, from uniform points on the circle. meanfield:
   the public `mf.ensemble(model, key, ...)`; every peer starts from the same X0 (system k
   from `uniform_sphere(jr.split(key, seeds)[k], n, d)`, checked equal to the trajectory's
   saved initial state).
3. Temperature (the workload of `bench_temperature.py`, Gaussian score rows from
   `sample_scores`): beta*_n = max_k log k / Delta_(k) (a sort per row) of 1024 rows x
   n = 65,536, and the entropy curve H(beta) of 128 of those rows on 256 betas in
   [0, 4 sqrt(2 log n)] (fewer rows than bench_temperature's 1024 so that the peers, which
   evaluate 256 exponentials per key, are timed at full size instead of scaled).

Peers, each in its fastest plain form (no algorithmic tricks the formula does not have):

- NumPy: scores by matmul in row blocks of 2048 rows into one preallocated buffer
  (G = X[i:i+B] @ X.T, np.exp(G, out=G), S = G @ (m[:, None] X), then the projection),
  float32 throughout. Ensemble: a loop over steps of batched np.matmul on (B, n, d)
  (X @ X^T), max subtraction, in-place exp, the softmax normalisation applied to the (n, d)
  product, the projection and the renormalisation; no einsum, no loop over systems.
  Temperature: np.sort per row + vectorised gaps; the entropy curve row by row, betas in
  blocks of 8 (exp of a (8, n) block in place, both key sums by one matmul with [1, Delta]).
- PyTorch (CPU, optional: its column is empty with a note when `import torch` fails): the
  same row-block matmul form, `torch.set_num_threads(os.cpu_count())`, under
  `torch.inference_mode()`; ensemble with `torch.bmm` and `torch.softmax` per step.
- plain JAX: ~10-line `jax.jit` of the formula (dense X @ X.T, exp, matmul); ensemble
  `jax.jit(jax.vmap(...))` of a `lax.scan` over steps; temperature `jnp.sort` and a
  `lax.map` over betas.

Hardware floor (measured in this run, at the start and at the end, best of both):

- exp rate: elementwise float32 exp of a 2^24-element array already in memory, under
  `jax.jit`, NumPy (`np.exp(a, out=b)`: a separate output buffer, because exp in place
  repeatedly overflows to inf after three passes) and PyTorch (`torch.exp(a, out=b)`),
  and the same on a 2^16-element (cache-resident) array; also `jnp.sum(jnp.exp(a))` under
  jit (the exp fused into a reduction, never written to memory, as inside a fused
  attention kernel: without it a fused kernel can beat its own "floor"), and where the
  native loop of `kernels.Fused` is built, the sum of exponentials by that loop's own
  vector exponential (`kernels.native.exp_sum`: a floor must not be beaten by a faster
  exp than the one it was measured with); the best of all in exps/s.
- matmul rate: a 2048 x 2048 x 2048 float32 sgemm (NumPy, jnp, PyTorch), best in flop/s.
- tiny-bmm rate: the ensemble's batched matmuls (B, 32, 2) @ (B, 2, 32) and
  (B, 32, 32) @ (B, 32, 2) (NumPy, PyTorch, jnp), best in flop/s.
- sort: `np.sort` of the score rows (one thread, and the rows split over os.cpu_count()
  threads, which np.sort allows as it releases the GIL) and `jnp.sort`; the best.

Floor of one velocity = n^2 / exp_rate + 4 n^2 d / flop_rate (n^2 exps, two matmuls of 2
n^2 d flops each, no overlap); where auto picks `kernels.Symmetric` (one exp per unordered
pair) the row is held to that kernel's own floor, n (n + b) / 2 exps plus n (n + b) d + 2
(d + 1) n^2 flops, and the n^2 floor is given in the notes. Ensemble floor = steps * B *
(n^2 / exp_rate + 4 n^2 d / flop_rate); the headline ("% of floor") uses the big-sgemm
rate, since that is what the hardware can do; the floor with the tiny-bmm rate (what
batched 32 x 32 x 2 matmuls actually reach in these libraries, overhead-dominated) is
reported next to it as `floor_tiny_bmm_s`. beta*_n floor = the best sort of the rows.
Entropy-curve floor = the exponentials and flops of meanfield's factorised algorithm on an
arithmetic grid (rows * n * (I + R) exps with I R >= B, R = ceil(sqrt B), plus 4 I R n
flops per row); the direct form's floor (rows * n * B exps) is reported as
`floor_direct_s`: meanfield beats it by doing fewer exponentials, which is an algorithmic
gain, not a faster exp.

"% of floor" = floor_s / meanfield_s * 100. Ratios are peer_s / meanfield_s (> 1: meanfield
is faster). Accuracy: the meanfield float32 result against a float64 NumPy reference (the
same NumPy code in float64): for the velocity max |v_mf - v_64| / max |v_64| (the target is
1e-5); for the ensemble the max abs difference of the final states; for beta*_n the max
relative difference; for H the max abs difference.

Timing: wall clock; `block_until_ready` on JAX outputs; one warm-up call per
implementation (compile time excluded, reported as `first_call_s`); the implementations of
a workload are timed in interleaved rounds (`--rounds`, default 3; the order rotates each
round, with a 50 ms pause between implementations so that spinning BLAS / OpenMP threads
of one library go idle before the next), each ceil(repeats / rounds) times per round (once
if its first timed call of the round took over 1 s); the minimum over all calls is
reported. All in one process. PyTorch's thread count: `torch.set_num_threads(cpu_count)` is
the default, but on a small shared machine PyTorch's OpenMP pool can be several times
slower than one thread for small ops, so each PyTorch workload is probed once with
cpu_count threads and with 1 thread (after a warm-up each; the ensemble probed at 30
steps) and raced with the faster setting, recorded as `torch_threads`.

Environment: this workplace sets OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, which can slow
NumPy's OpenBLAS. NumPy reads them once, when it is imported, so the script re-executes
itself without them (`os.execve`) before importing anything. JAX (XLA:CPU, Eigen) and
PyTorch (its own MKL / oneDNN / OpenBLAS build, not NumPy's) are not affected by them, so
removing them for the whole process is the same as removing them for NumPy only. The
removed values are recorded in the JSON.
"""

from __future__ import annotations

import os
import sys

_CLEARED = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
_REMOVED_MARK = "MEANFIELD_BENCH_FAIR_REMOVED"

if __name__ == "__main__" and any(name in os.environ for name in _CLEARED):
    _env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    _env[_REMOVED_MARK] = ";".join(f"{k}={os.environ[k]}" for k in _CLEARED if k in os.environ)
    os.execve(sys.executable, [sys.executable, *sys.argv], _env)

import argparse  # noqa: E402
import concurrent.futures  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the meanfield of this checkout

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402

import meanfield as mf  # noqa: E402

try:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
except ImportError:  # optional peer
    torch = None

TORCH_NOTE = "PyTorch not installed (pip install meanfield[bench]): its column is skipped"
BLOCK = 2048  # NumPy / PyTorch row block
PEERS = ("numpy", "torch", "plain_jax")
PAUSE_S = 0.05
SLOW_S = 1.0  # calls slower than this are timed once per round


# ---------------------------------------------------------------- timing
def _block(out):
    return jax.block_until_ready(out)


def _call_s(fn) -> float:
    t0 = time.perf_counter()
    _block(fn())
    return time.perf_counter() - t0


def race(impls: dict, rounds: int, repeats: int) -> dict:
    """Warm up every implementation, then time them in interleaved rounds.

    impls: name -> zero-argument callable. Returns name -> {"seconds" (min over all calls),
    "first_call_s", "calls", "output" (of the warm-up call)}.
    """
    out = {}
    for name, fn in impls.items():
        t0 = time.perf_counter()
        res = _block(fn())
        out[name] = {"first_call_s": time.perf_counter() - t0, "output": res, "times": []}
    per_round = max(1, math.ceil(repeats / rounds))
    names = list(impls)
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            time.sleep(PAUSE_S)
            t = _call_s(impls[name])
            out[name]["times"].append(t)
            for _ in range(per_round - 1 if t < SLOW_S else 0):
                out[name]["times"].append(_call_s(impls[name]))
    for entry in out.values():
        entry["seconds"] = min(entry["times"])
        entry["calls"] = len(entry.pop("times"))
    return out


def best_of(fn, repeats: int) -> float:
    """Minimum over `repeats` calls after a warm-up (one call if the first took > SLOW_S)."""
    t0 = time.perf_counter()
    _block(fn())
    slow = time.perf_counter() - t0 > SLOW_S
    return min(_call_s(fn) for _ in range(1 if slow else repeats))


# ---------------------------------------------------------------- machine
def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in lscpu.splitlines():
            if line.startswith("Model name"):
                cpu = line.split(":", 1)[1].strip()
    except OSError:
        pass
    mem_gib = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    mem_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = ""
    removed = os.environ.get(_REMOVED_MARK, "")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": _jaxlib(),
        "numpy": np.__version__,
        "torch": torch.__version__ if torch is not None else None,
        "meanfield": mf.__version__,
        "meanfield_commit": commit,
        "meanfield_path": str(Path(mf.__file__).parent),
        "jax_backend": jax.default_backend(),
        "env_removed": removed.split(";") if removed else [],
    }


def _jaxlib() -> str:
    import jaxlib

    return jaxlib.__version__


# ---------------------------------------------------------------- hardware floor
def floor_rates(exp_size: int, mm_size: int, bmm_batch: int, repeats: int) -> dict:
    """exps/s, big-sgemm flop/s and tiny-bmm flop/s, best over NumPy, jnp and PyTorch."""
    rng = np.random.default_rng(0)
    exp_rates, mm_rates, bmm_rates = {}, {}, {}
    jexp = jax.jit(jnp.exp)
    jexp_sum = jax.jit(lambda a: jnp.sum(jnp.exp(a)))
    for size in (exp_size, 1 << 16):
        a = rng.uniform(-1, 1, size).astype(np.float32)
        b = np.empty_like(a)
        ja = jnp.asarray(a)
        exp_rates[f"jax_{size}"] = size / best_of(lambda ja=ja: jexp(ja), repeats)
        exp_rates[f"jax_fused_sum_{size}"] = size / best_of(lambda ja=ja: jexp_sum(ja), repeats)
        exp_rates[f"numpy_{size}"] = size / best_of(lambda a=a, b=b: np.exp(a, out=b), repeats)
        if torch is not None:
            ta, tb = torch.from_numpy(a), torch.from_numpy(b)
            with torch.inference_mode():
                exp_rates[f"torch_{size}"] = size / best_of(
                    lambda ta=ta, tb=tb: torch.exp(ta, out=tb), repeats
                )
        if mf.kernels.native_available():  # the fused kernel's own exponential, alone
            nexp = jax.jit(mf.kernels.native.exp_sum)
            exp_rates[f"meanfield_native_sum_{size}"] = size / best_of(
                lambda ja=ja, nexp=nexp: nexp(ja), repeats
            )
    A = rng.standard_normal((mm_size, mm_size)).astype(np.float32)
    B = rng.standard_normal((mm_size, mm_size)).astype(np.float32)
    C = np.empty_like(A)
    flops = 2.0 * mm_size**3
    mm_rates["numpy"] = flops / best_of(lambda: np.matmul(A, B, out=C), repeats)
    jA, jB = jnp.asarray(A), jnp.asarray(B)
    jmm = jax.jit(lambda a, b: jnp.matmul(a, b, precision="highest"))
    mm_rates["jax"] = flops / best_of(lambda: jmm(jA, jB), repeats)
    if torch is not None:
        tA, tB, tC = torch.from_numpy(A), torch.from_numpy(B), torch.from_numpy(C)
        with torch.inference_mode():
            mm_rates["torch"] = flops / best_of(lambda: torch.matmul(tA, tB, out=tC), repeats)
    # The ensemble's two batched products, n = 32, d = 2: scores (B,32,2)@(B,2,32), then
    # (B,32,32)@(B,32,2); 2 * 32 * 32 * 2 flops each.
    X = rng.standard_normal((bmm_batch, 32, 2)).astype(np.float32)
    XT = np.ascontiguousarray(X.transpose(0, 2, 1))
    S = np.empty((bmm_batch, 32, 32), np.float32)
    Y = np.empty_like(X)
    bflops = 2 * (2.0 * 32 * 32 * 2) * bmm_batch

    def np_bmm():
        np.matmul(X, XT, out=S)
        np.matmul(S, X, out=Y)
        return Y

    bmm_rates["numpy"] = bflops / best_of(np_bmm, repeats)
    jX, jXT = jnp.asarray(X), jnp.asarray(XT)
    jbmm = jax.jit(lambda x, xt: jnp.matmul(jnp.matmul(x, xt), x, precision="highest"))
    bmm_rates["jax"] = bflops / best_of(lambda: jbmm(jX, jXT), repeats)
    if torch is not None:
        tX, tXT, tS, tY = (torch.from_numpy(v) for v in (X, XT, S, Y))

        def torch_bmm():
            torch.bmm(tX, tXT, out=tS)
            return torch.bmm(tS, tX, out=tY)

        with torch.inference_mode():
            bmm_rates["torch"] = bflops / best_of(torch_bmm, repeats)
    return {
        "exp_rates": exp_rates,
        "sgemm_rates": mm_rates,
        "tiny_bmm_rates": bmm_rates,
        "exp_size": exp_size,
        "sgemm_size": mm_size,
        "tiny_bmm_batch": bmm_batch,
    }


def merge_rates(first: dict, second: dict) -> dict:
    merged = dict(first)
    for key in ("exp_rates", "sgemm_rates", "tiny_bmm_rates"):
        merged[key] = {k: max(v, second[key][k]) for k, v in first[key].items()}
    merged["exp_per_s"] = max(merged["exp_rates"].values())
    merged["exp_best"] = max(merged["exp_rates"], key=merged["exp_rates"].get)
    merged["flop_per_s"] = max(merged["sgemm_rates"].values())
    merged["flop_best"] = max(merged["sgemm_rates"], key=merged["sgemm_rates"].get)
    merged["tiny_bmm_flop_per_s"] = max(merged["tiny_bmm_rates"].values())
    merged["tiny_bmm_best"] = max(merged["tiny_bmm_rates"], key=merged["tiny_bmm_rates"].get)
    return merged


def velocity_floor(n: int, d: int, rates: dict) -> float:
    """n^2 exps plus two matmuls of 2 n^2 d flops, no overlap."""
    return n * n / rates["exp_per_s"] + 4.0 * n * n * d / rates["flop_per_s"]


def symmetric_floor(n: int, d: int, block: int, rates: dict) -> float:
    """What `kernels.Symmetric` must do: n (n + b) / 2 exps (each unordered pair once, the
    diagonal blocks whole), scores on those entries (2 d flops each) and the products
    E U and U^T E that give every ordered pair its 2 (d + 1) flops, no overlap."""
    half = n * (n + block) / 2
    flops = 2.0 * d * half + 2.0 * (d + 1) * n * n
    return half / rates["exp_per_s"] + flops / rates["flop_per_s"]


def velocity_floors(n: int, d: int, symmetric_block: int | None, rates: dict):
    """(the row's floor, the n^2-exp floor): a kernel that does fewer exponentials
    (`Symmetric`, strips of `symmetric_block` rows) is held to its own, lower floor."""
    standard = velocity_floor(n, d, rates)
    if symmetric_block is None:
        return standard, standard
    return symmetric_floor(n, d, symmetric_block, rates), standard


def ensemble_floor(seeds: int, n: int, d: int, steps: int, rates: dict, rate_key: str) -> float:
    """steps * seeds velocities of n particles, matmuls at rates[rate_key] flop/s."""
    return steps * seeds * (n * n / rates["exp_per_s"] + 4.0 * n * n * d / rates[rate_key])


def curve_grid(nb: int) -> tuple[int, int]:
    """(outer, inner) sizes of meanfield's factorised arithmetic grid: outer * inner >= nb."""
    inner = math.isqrt(nb - 1) + 1
    return -(-nb // inner), inner


def entropy_floor(rows: int, n: int, nb: int, rates: dict) -> float:
    """(outer + inner) exps per key and a (2 outer, n) @ (n, inner) matmul per row."""
    outer, inner = curve_grid(nb)
    exps = rows * n * (outer + inner)
    return exps / rates["exp_per_s"] + rows * 4.0 * outer * inner * n / rates["flop_per_s"]


# ---------------------------------------------------------------- velocity peers
def numpy_usa_velocity(X, m, beta=1.0, block=BLOCK):
    """Row blocks: G = X[i:i+B] @ X.T, exp in place, S = G @ (m X), then the projection."""
    n = X.shape[0]
    Xq = X if beta == 1.0 else (beta * X).astype(X.dtype)
    Y = m[:, None] * X
    S = np.empty_like(X)
    G = np.empty((min(block, n), n), X.dtype)
    XT = X.T
    for i in range(0, n, block):
        rows = min(block, n - i)
        g = G[:rows]
        np.matmul(Xq[i : i + rows], XT, out=g)
        np.exp(g, out=g)
        np.matmul(g, Y, out=S[i : i + rows])
    S -= np.sum(S * X, axis=1, keepdims=True) * X
    return S


def torch_usa_velocity(X, m, beta=1.0, block=BLOCK):
    """The NumPy row-block form in PyTorch (call under torch.inference_mode())."""
    n = X.shape[0]
    Xq = X if beta == 1.0 else beta * X
    Y = m[:, None] * X
    S = torch.empty_like(X)
    G = torch.empty((min(block, n), n), dtype=X.dtype)
    XT = X.T
    for i in range(0, n, block):
        rows = min(block, n - i)
        g = G[:rows]
        torch.matmul(Xq[i : i + rows], XT, out=g)
        g.exp_()
        torch.matmul(g, Y, out=S[i : i + rows])
    S -= (S * X).sum(dim=1, keepdim=True) * X
    return S


@jax.jit
def jax_usa_velocity(X, m, beta):
    """Plain JAX: dense scores, exp, matmul, projection."""
    G = jnp.exp(beta * jnp.matmul(X, X.T, precision="highest"))
    S = jnp.matmul(G, m[:, None] * X, precision="highest")
    return S - jnp.sum(S * X, axis=1, keepdims=True) * X


# ---------------------------------------------------------------- ensemble peers
def numpy_sa_ensemble(X0, beta, dt, steps):
    """Loop over steps; batched np.matmul on (B, n, d); softmax with max subtraction."""
    X = X0.copy()
    B, n, d = X.shape
    S = np.empty((B, n, n), X.dtype)
    A = np.empty_like(X)
    for _ in range(steps):
        np.matmul(X, X.transpose(0, 2, 1), out=S)
        if beta != 1.0:
            S *= beta
        S -= S.max(axis=2, keepdims=True)
        np.exp(S, out=S)
        np.matmul(S, X, out=A)
        A /= S.sum(axis=2, keepdims=True)
        A -= np.sum(A * X, axis=2, keepdims=True) * X
        A *= dt
        X += A
        X /= np.sqrt(np.sum(X * X, axis=2, keepdims=True))
    return X


def torch_sa_ensemble(X0, beta, dt, steps):
    """torch.bmm + torch.softmax per step, in-place updates (call under inference_mode)."""
    X = X0.clone()
    B, n, d = X.shape
    S = torch.empty((B, n, n), dtype=X.dtype)
    A = torch.empty_like(X)
    for _ in range(steps):
        torch.bmm(X, X.transpose(1, 2), out=S)
        if beta != 1.0:
            S.mul_(beta)
        torch.bmm(torch.softmax(S, dim=2), X, out=A)
        A.sub_((A * X).sum(dim=2, keepdim=True) * X)
        X.add_(A, alpha=dt)
        X.div_(X.norm(dim=2, keepdim=True))
    return X


def torch_threads(probe) -> int:
    """The faster of os.cpu_count() threads and 1 thread for `probe` (one call each after a
    warm-up); leaves torch set to it."""
    best, best_t = None, float("inf")
    for threads in sorted({os.cpu_count() or 1, 1}, reverse=True):
        torch.set_num_threads(threads)
        probe()
        t = _call_s(probe)
        if t < best_t:
            best, best_t = threads, t
    torch.set_num_threads(best)
    return best


def jax_sa_ensemble(beta, dt, steps):
    """Plain JAX: jit(vmap(scan of Euler + renormalisation))."""

    def run(X0):
        def step(X, _):
            P = jax.nn.softmax(beta * jnp.matmul(X, X.T, precision="highest"), axis=-1)
            A = jnp.matmul(P, X, precision="highest")
            X = X + dt * (A - jnp.sum(A * X, axis=-1, keepdims=True) * X)
            return X / jnp.linalg.norm(X, axis=-1, keepdims=True), None

        return lax.scan(step, X0, None, length=steps)[0]

    return jax.jit(jax.vmap(run))


# ---------------------------------------------------------------- temperature peers
def numpy_critical_beta(s):
    """np.sort per row, gaps from the top, max_k log k / Delta_(k)."""
    srt = np.sort(s, axis=-1)
    gaps = srt[:, -1:] - srt[:, -2::-1]
    logk = np.log(np.arange(1, gaps.shape[-1] + 1, dtype=s.dtype))
    f = np.divide(logk, gaps, out=np.zeros_like(gaps), where=gaps > 0)
    return f.max(axis=-1)


@jax.jit
def jax_critical_beta(s):
    srt = jnp.sort(s, axis=-1)
    gaps = srt[:, -1:] - srt[:, -2::-1]
    logk = jnp.log(jnp.arange(1, gaps.shape[-1] + 1, dtype=s.dtype))
    f = jnp.where(gaps > 0, logk / jnp.where(gaps > 0, gaps, 1.0), 0.0)
    return f.max(axis=-1)


def numpy_entropy_curve(s, betas, bc=8):
    """Row by row, betas in blocks of bc: E = exp(-b Delta) (bc, n) in place, then
    [Z, sum Delta e] = E @ [1, Delta] (one matmul), H = log Z + b sum(Delta e) / Z."""
    rows, n = s.shape
    nb = len(betas)
    out = np.empty((rows, nb), s.dtype)
    E = np.empty((bc, n), s.dtype)
    sums = np.empty((bc, 2), s.dtype)
    cols = np.empty((n, 2), s.dtype)
    for r in range(rows):
        delta = s[r].max() - s[r]
        cols[:, 0] = 1.0
        cols[:, 1] = delta
        for j in range(0, nb, bc):
            b = betas[j : j + bc]
            e = E[: len(b)]
            np.multiply.outer(-b, delta, out=e)
            np.exp(e, out=e)
            sm = sums[: len(b)]
            np.matmul(e, cols, out=sm)
            out[r, j : j + len(b)] = np.log(sm[:, 0]) + b * sm[:, 1] / sm[:, 0]
    return out


@jax.jit
def jax_entropy_curve(s, betas):
    """Plain JAX: lax.map over betas of exp(-b Delta) and its two sums (fused by XLA)."""
    delta = s.max(axis=-1, keepdims=True) - s

    def one(b):
        e = jnp.exp(-b * delta)
        z = e.sum(axis=-1)
        return jnp.log(z) + b * (e * delta).sum(axis=-1) / z

    return lax.map(one, betas).T


def threaded_sort(s):
    workers = os.cpu_count() or 1
    parts = np.array_split(np.arange(s.shape[0]), workers)
    out = np.empty_like(s)

    def work(idx):
        out[idx[0] : idx[-1] + 1] = np.sort(s[idx[0] : idx[-1] + 1], axis=-1)

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(work, [p for p in parts if len(p)]))
    return out


# ---------------------------------------------------------------- workloads
def _peer_fields(res: dict, floor_s: float) -> dict:
    mf_s = res["meanfield"]["seconds"]
    row = {
        "meanfield_s": mf_s,
        "floor_s": floor_s,
        "percent_of_floor": 100.0 * floor_s / mf_s,
        "first_call_s": {k: v["first_call_s"] for k, v in res.items()},
        "calls": {k: v["calls"] for k, v in res.items()},
    }
    for peer in PEERS:
        t = res[peer]["seconds"] if peer in res else None
        row[f"{peer}_s"] = t
        row[f"ratio_{peer}"] = None if t is None else t / mf_s
    return row


def _rel(a, ref) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - ref)) / np.max(np.abs(ref)))


def velocity_row(n: int, d: int, rates: dict, rounds: int, repeats: int) -> dict:
    X = mf.uniform_sphere(jr.PRNGKey(0), n, d, dtype=jnp.float32)
    m = jnp.full((n,), 1.0 / n, jnp.float32)
    model = mf.MeanField(1.0, sign=1, attention="usa").resolve_kernel(n, d, dtype=jnp.float32)
    auto = mf.kernels.select_kernel(n, d, dtype=jnp.float32, beta=1.0, self_interaction=True)
    filter_jitted = eqx.filter_jit(lambda mdl, X, m: mdl.vector_field(0.0, X, m))
    closure_jitted = jax.jit(lambda X, m: model.vector_field(0.0, X, m))
    Xn, mn = np.asarray(X), np.asarray(m)
    threads = None
    impls = {
        "meanfield_filter_jit": lambda: filter_jitted(model, X, m),
        "meanfield_jit": lambda: closure_jitted(X, m),
        "numpy": lambda: numpy_usa_velocity(Xn, mn),
        "plain_jax": lambda: jax_usa_velocity(X, m, jnp.float32(1.0)),
    }
    if torch is not None:
        tX, tm = torch.from_numpy(Xn.copy()), torch.from_numpy(mn.copy())

        def torch_call():
            with torch.inference_mode():
                return torch_usa_velocity(tX, tm)

        impls["torch"] = torch_call
        threads = torch_threads(torch_call)
    res = race(impls, rounds, repeats)
    variant = min(("meanfield_filter_jit", "meanfield_jit"), key=lambda k: res[k]["seconds"])
    res["meanfield"] = res[variant]
    ref = numpy_usa_velocity(Xn.astype(np.float64), mn.astype(np.float64))
    symmetric = isinstance(model.kernel, mf.kernels.Symmetric)
    block = min(model.kernel.block, n) if symmetric else None
    floor_s, standard_floor_s = velocity_floors(n, d, block, rates)
    row = {"workload": "velocity", "label": f"USA velocity n={n} d={d}", "n": n, "d": d}
    row.update(_peer_fields(res, floor_s))
    row.update(
        {
            "meanfield_variant": variant,
            "meanfield_filter_jit_s": res["meanfield_filter_jit"]["seconds"],
            "meanfield_jit_s": res["meanfield_jit"]["seconds"],
            "kernel": repr(model.kernel),
            "kernel_auto": repr(auto),
            "standard_floor_s": standard_floor_s,
            "symmetric_block": block,
            "torch_threads": threads,
            "max_diff": _rel(res["meanfield"]["output"], ref),
            "max_diff_kind": "max |v - v_float64| / max |v_float64|",
            "peer_max_diff": {p: _rel(res[p]["output"], ref) for p in PEERS if p in res},
        }
    )
    return row


def ensemble_row(seeds, n, d, steps, rates, rounds, repeats) -> dict:
    beta, dt = 1.0, 0.1
    key = jr.PRNGKey(0)
    model = mf.MeanField(beta, sign=1, attention="sa")
    run = lambda: mf.ensemble(
        model, key, n=n, d=d, seeds=seeds, dt=dt, steps=steps, dtype="float32"
    )
    traj = _block(run())
    X0 = np.asarray(traj.xs[:, 0])
    keys = jr.split(key, seeds)
    # The initial states every peer uses: the trajectory's saved X0, checked bit for bit
    # against uniform_sphere(split(key)[k]) vmapped over k (what prepare_ensemble draws);
    # one system at a time (eager, unbatched) the same draws agree to float32 rounding.
    mine = np.asarray(jax.vmap(lambda k: mf.uniform_sphere(k, n, d, dtype=jnp.float32))(keys))
    x0_equal = bool(np.array_equal(mine, X0))
    if not x0_equal:
        raise RuntimeError("mf.ensemble's X0 differs from uniform_sphere(split(key)[k]).")
    eager = max(
        float(np.max(np.abs(np.asarray(mf.uniform_sphere(keys[k], n, d, jnp.float32)) - X0[k])))
        for k in (0, 1, seeds // 2, seeds - 1)
    )
    resolved = model.resolve_kernel(n, d, dtype=jnp.float32, batch=seeds)
    jX0 = jnp.asarray(X0)
    threads = None
    jax_run = jax_sa_ensemble(jnp.float32(beta), jnp.float32(dt), steps)
    impls = {
        "meanfield": lambda: run().final,
        "numpy": lambda: numpy_sa_ensemble(X0, np.float32(beta), np.float32(dt), steps),
        "plain_jax": lambda: jax_run(jX0),
    }
    if torch is not None:
        tX0 = torch.from_numpy(X0.copy())

        def torch_call(steps=steps):
            with torch.inference_mode():
                return torch_sa_ensemble(tX0, beta, dt, steps)

        impls["torch"] = torch_call
        threads = torch_threads(lambda: torch_call(min(steps, 30)))
    res = race(impls, rounds, repeats)
    ref = numpy_sa_ensemble(X0.astype(np.float64), beta, dt, steps)
    floor_s = ensemble_floor(seeds, n, d, steps, rates, "flop_per_s")
    floor_tiny = ensemble_floor(seeds, n, d, steps, rates, "tiny_bmm_flop_per_s")
    final = np.asarray(res["meanfield"]["output"], np.float64)
    row = {
        "workload": "ensemble",
        "label": f"SA ensemble {seeds} x n={n} d={d}, {steps} Euler steps",
        "seeds": seeds,
        "n": n,
        "d": d,
        "steps": steps,
        "beta": beta,
        "dt": dt,
    }
    row.update(_peer_fields(res, floor_s))
    row.update(
        {
            "floor_tiny_bmm_s": floor_tiny,
            "percent_of_floor_tiny_bmm": 100.0 * floor_tiny / res["meanfield"]["seconds"],
            "kernel": repr(resolved.kernel),
            "torch_threads": threads,
            "x0_identical": x0_equal,
            "x0_unbatched_max_diff": eager,
            "max_diff": float(np.max(np.abs(final - ref))),
            "max_diff_kind": "max |X_final - X_final_float64| (abs)",
            "peer_max_diff": {
                p: float(np.max(np.abs(np.asarray(res[p]["output"], np.float64) - ref)))
                for p in PEERS
                if p in res
            },
            "meanfield_vs_peer": {
                p: float(np.max(np.abs(final - np.asarray(res[p]["output"], np.float64))))
                for p in PEERS
                if p in res
            },
        }
    )
    return row


def temperature_rows(rows, n, curve_rows, nb, rates, rounds, repeats) -> list[dict]:
    s = mf.sample_scores("gaussian", jr.PRNGKey(0), n, rows=rows, dtype=jnp.float32)
    s = jax.block_until_ready(s)
    sn = np.asarray(s)
    out = []
    # beta*_n
    impls = {
        "meanfield": lambda: mf.critical_beta(s),
        "numpy": lambda: numpy_critical_beta(sn),
        "plain_jax": lambda: jax_critical_beta(s),
    }
    res = race(impls, rounds, repeats)
    sorts = {
        "numpy": best_of(lambda: np.sort(sn, axis=-1), max(1, repeats)),
        "numpy_threads": best_of(lambda: threaded_sort(sn), max(1, repeats)),
    }
    # jnp.sort alone is at most the plain-JAX beta* (a sort plus one cheap pass); time it
    # unless that whole computation already took > 3x the best NumPy sort (XLA:CPU's sort
    # is ~30x slower than np.sort here, and one call of it takes tens of seconds).
    if res["plain_jax"]["seconds"] < 3 * min(sorts.values()):
        jsort = jax.jit(lambda x: jnp.sort(x, axis=-1))
        sorts["jax"] = best_of(lambda: jsort(s), max(1, repeats))
    else:
        sorts["jax_skipped_upper_bound"] = res["plain_jax"]["seconds"]
    floor_s = min(v for k, v in sorts.items() if not k.endswith("skipped_upper_bound"))
    ref = numpy_critical_beta(sn.astype(np.float64))
    row = {
        "workload": "critical_beta",
        "label": f"beta*_n {rows} rows x n={n}",
        "rows": rows,
        "n": n,
    }
    row.update(_peer_fields(res, floor_s))
    row.update(
        {
            "sort_s": sorts,
            "floor_kind": f"sort of the rows (best: {min(sorts, key=sorts.get)})",
            "max_diff": _rel_each(res["meanfield"]["output"], ref),
            "max_diff_kind": "max |b* - b*_float64| / b*_float64",
            "peer_max_diff": {p: _rel_each(res[p]["output"], ref) for p in PEERS if p in res},
        }
    )
    out.append(row)
    # entropy curve on an arithmetic grid
    sc, scn = s[:curve_rows], sn[:curve_rows]
    betas = jnp.linspace(0.0, 4.0 * math.sqrt(2 * math.log(n)), nb, dtype=jnp.float32)
    bn = np.asarray(betas)
    impls = {
        "meanfield": lambda: mf.entropy_curve(sc, betas),
        "numpy": lambda: numpy_entropy_curve(scn, bn),
        "plain_jax": lambda: jax_entropy_curve(sc, betas),
    }
    res = race(impls, rounds, repeats)
    outer, inner = curve_grid(nb)
    floor_s = entropy_floor(curve_rows, n, nb, rates)
    ref = numpy_entropy_curve(scn.astype(np.float64), bn.astype(np.float64))
    row = {
        "workload": "entropy_curve",
        "label": f"entropy curve {curve_rows} rows x n={n} x {nb} betas",
        "rows": curve_rows,
        "n": n,
        "betas": nb,
    }
    row.update(_peer_fields(res, floor_s))
    row.update(
        {
            "floor_kind": f"factorised grid: {outer + inner} exps per key ({outer} x {inner})",
            "floor_direct_s": curve_rows * n * nb / rates["exp_per_s"],
            "max_diff": float(np.max(np.abs(np.asarray(res["meanfield"]["output"]) - ref))),
            "max_diff_kind": "max |H - H_float64| (abs, nats)",
            "peer_max_diff": {
                p: float(np.max(np.abs(np.asarray(res[p]["output"], np.float64) - ref)))
                for p in PEERS
                if p in res
            },
        }
    )
    out.append(row)
    return out


def _rel_each(a, ref) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - ref) / np.abs(ref)))


# ---------------------------------------------------------------- output
def _t(x) -> str:
    if x is None:
        return "-"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 1:
        return f"{x:.3g}"
    return f"{x:.3g}" if x >= 1e-3 else f"{x:.2e}"


def _ratio(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def table(rows: list[dict]) -> list[str]:
    head = (
        "| workload | meanfield [s] | NumPy [s] | PyTorch [s] | plain JAX [s] | floor [s] "
        "| % of floor | NumPy / mf | PyTorch / mf | JAX / mf | max diff (vs float64) |"
    )
    lines = [head, "| --- |" + " ---: |" * 10]
    for r in rows:
        lines.append(
            f"| {r['label']} | {_t(r['meanfield_s'])} | {_t(r['numpy_s'])} | "
            f"{_t(r['torch_s'])} | {_t(r['plain_jax_s'])} | {_t(r['floor_s'])} | "
            f"{r['percent_of_floor']:.0f}% | {_ratio(r['ratio_numpy'])} | "
            f"{_ratio(r['ratio_torch'])} | {_ratio(r['ratio_plain_jax'])} | "
            f"{r['max_diff']:.1e} |"
        )
    return lines


def notes(result: dict) -> list[str]:
    rates = result["floor"]
    lines = []
    for r in result["rows"]:
        if r["workload"] == "velocity":
            lines.append(
                f"- {r['label']}: kernel {r['kernel']} (auto: {r['kernel_auto']}); "
                + (
                    f"floor = that kernel's own (half the exps); the n^2-exp floor of the "
                    f"table's other rows is {_t(r['standard_floor_s'])} s "
                    f"({100 * r['standard_floor_s'] / r['meanfield_s']:.0f}%); "
                    if r["symmetric_block"] is not None
                    else ""
                )
                + f"PyTorch threads {r['torch_threads']}; faster "
                f"variant {r['meanfield_variant']} (filter_jit {_t(r['meanfield_filter_jit_s'])}"
                f" s, jit closure {_t(r['meanfield_jit_s'])} s)."
            )
        elif r["workload"] == "ensemble":
            lines.append(
                f"- {r['label']}: kernel {r['kernel']}; PyTorch threads {r['torch_threads']}; "
                "X0 identical for every peer: "
                f"{r['x0_identical']}; floor with the tiny-bmm rate "
                f"{_t(r['floor_tiny_bmm_s'])} s ({r['percent_of_floor_tiny_bmm']:.0f}%); "
                "final-state max diff meanfield vs "
                + ", ".join(f"{k} {v:.1e}" for k, v in r["meanfield_vs_peer"].items())
                + "."
            )
        elif r["workload"] == "critical_beta":
            lines.append(
                f"- {r['label']}: floor = {r['floor_kind']}; sorts "
                + ", ".join(
                    f"{k} {_t(v)} s"
                    if not k.endswith("skipped_upper_bound")
                    else f"jnp.sort not timed (plain-JAX beta* with it took {_t(v)} s)"
                    for k, v in r["sort_s"].items()
                )
                + "."
            )
        else:
            lines.append(
                f"- {r['label']}: floor = {r['floor_kind']}; the direct form's floor "
                f"({r['betas']} exps per key, what the peers do) is {_t(r['floor_direct_s'])} s."
            )
    lines.append(
        f"- Rates: exp {rates['exp_per_s']:.3g}/s ({rates['exp_best']}), sgemm "
        f"{rates['flop_per_s']:.3g} flop/s ({rates['flop_best']}, {rates['sgemm_size']}^3), "
        f"tiny bmm {rates['tiny_bmm_flop_per_s']:.3g} flop/s ({rates['tiny_bmm_best']})."
    )
    if result["torch_note"]:
        lines.append(f"- {result['torch_note']}.")
    return lines


def markdown(result: dict, command: str) -> str:
    mc = result["machine"]
    load = ", ".join(f"{x:g}" for x in mc["load_average_at_start"])
    removed = ", ".join(mc["env_removed"]) or "none set"
    return "\n".join(
        [
            "# Fair CPU benchmark (`benchmarks/bench_fair.py`)",
            "",
            f"Machine: {mc['cpu']}, {mc['cores']} cores, {mc['memory_gib']} GiB; load average "
            f"at start {load}; {mc['date']}. Python {mc['python']}, jax {mc['jax']} / jaxlib "
            f"{mc['jaxlib']} ({mc['jax_backend']}), NumPy {mc['numpy']}, PyTorch "
            f"{mc['torch'] or '-'}, meanfield {mc['meanfield']} ({mc['meanfield_commit']}). "
            f"Environment variables removed for the run: {removed}.",
            "",
            f"Regenerate: `{command}` (writes this file and the JSON).",
            "",
            "float32, beta = 1, uniform masses. Every peer in its fastest plain form: NumPy "
            f"and PyTorch by matmul in row blocks of {BLOCK} rows with exp in place (ensemble: "
            "batched matmul per step, no einsum, no loop over systems), plain JAX a jitted "
            "dense formula (ensemble: jit(vmap(scan))). Compile time excluded, "
            "block_until_ready, minimum over interleaved rounds "
            f"({result['rounds']} rounds, --repeats {result['repeats']}). Floor: "
            "n^2 exps / exp rate + 4 n^2 d flops / sgemm rate, rates measured in this run "
            "(see the script docstring); % of floor = floor / meanfield. Ratios > 1: "
            "meanfield faster. max diff: meanfield float32 against a float64 NumPy reference "
            "(velocity: relative to max |v|; ensemble: abs on the final states; beta*: "
            "relative; H: abs).",
            "",
            *table(result["rows"]),
            "",
            *notes(result),
            "",
        ]
    )


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE / "bench_fair.json"))
    parser.add_argument("--md", default=None, help="default: RESULTS_fair.md next to --out")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, repeats 1")
    parser.add_argument("--repeats", type=int, default=None, help="default 5 (smoke: 1)")
    parser.add_argument("--rounds", type=int, default=None, help="default 3 (smoke: 1)")
    args = parser.parse_args(argv)
    smoke = args.smoke
    repeats = args.repeats or (1 if smoke else 5)
    rounds = args.rounds or (1 if smoke else 3)
    if smoke:
        sizes = [(256, 3), (256, 64), (2048, 16)]  # Fused (native) or Tiled, Dense, Symmetric
        ens = dict(seeds=64, n=32, d=2, steps=30)
        temp = dict(rows=8, n=4096, curve_rows=4, nb=64)
        floor_kw = dict(exp_size=1 << 20, mm_size=512, bmm_batch=64)
    else:
        sizes = [(1024, 3), (4096, 3), (8192, 3), (4096, 64), (16384, 64)]
        ens = dict(seeds=2048, n=32, d=2, steps=300)
        temp = dict(rows=1024, n=65536, curve_rows=128, nb=256)
        floor_kw = dict(exp_size=1 << 24, mm_size=2048, bmm_batch=2048)
    floor_repeats = max(3, repeats)
    mach = machine()
    print(f"machine: {mach['cpu']}, {mach['cores']} cores, load {mach['load_average_at_start']}")
    first = floor_rates(**floor_kw, repeats=floor_repeats)
    start = merge_rates(first, first)
    rows = []
    for n, d in sizes:
        rows.append(velocity_row(n, d, start, rounds, repeats))
        _print_row(rows[-1])
    rows.append(ensemble_row(**ens, rates=start, rounds=rounds, repeats=repeats))
    _print_row(rows[-1])
    for row in temperature_rows(**temp, rates=start, rounds=rounds, repeats=repeats):
        rows.append(row)
        _print_row(row)
    # Floors from the best rates of both measurements (start and end of the run).
    rates = merge_rates(first, floor_rates(**floor_kw, repeats=floor_repeats))
    for row in rows:
        _refloor(row, rates)
    command = "python benchmarks/bench_fair.py" + (" --smoke" if smoke else "")
    result = {
        "smoke": smoke,
        "repeats": repeats,
        "rounds": rounds,
        "machine": mach,
        "torch_note": None if torch is not None else TORCH_NOTE,
        "floor": rates,
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=_jsonable) + "\n")
    md = Path(args.md) if args.md else out.parent / "RESULTS_fair.md"
    md.write_text(markdown(result, command))
    print()
    print("\n".join(table(rows)))
    print("\n".join(notes(result)))
    print(f"wrote {out} and {md}")
    return result


def _refloor(row: dict, rates: dict) -> None:
    """Recompute the floor of a row with the final (best) rates."""
    w = row["workload"]
    if w == "velocity":
        floors = velocity_floors(row["n"], row["d"], row["symmetric_block"], rates)
        row["floor_s"], row["standard_floor_s"] = floors
    elif w == "ensemble":
        shape = (row["seeds"], row["n"], row["d"], row["steps"], rates)
        row["floor_s"] = ensemble_floor(*shape, "flop_per_s")
        row["floor_tiny_bmm_s"] = ensemble_floor(*shape, "tiny_bmm_flop_per_s")
        row["percent_of_floor_tiny_bmm"] = 100.0 * row["floor_tiny_bmm_s"] / row["meanfield_s"]
    elif w == "entropy_curve":
        row["floor_s"] = entropy_floor(row["rows"], row["n"], row["betas"], rates)
        row["floor_direct_s"] = row["rows"] * row["n"] * row["betas"] / rates["exp_per_s"]
    row["percent_of_floor"] = 100.0 * row["floor_s"] / row["meanfield_s"]


def _print_row(r: dict) -> None:
    peers = "  ".join(
        f"{p} {_t(r[p + '_s'])} s ({_ratio(r['ratio_' + p])}x)"
        for p in PEERS
        if r[p + "_s"] is not None
    )
    print(
        f"{r['label']}: meanfield {_t(r['meanfield_s'])} s  {peers}  floor {_t(r['floor_s'])} s "
        f"({r['percent_of_floor']:.0f}%)  diff {r['max_diff']:.1e}",
        flush=True,
    )


def _jsonable(x):
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x)}")


if __name__ == "__main__":
    main()
