"""Scaling across devices and processes with JAX's own machinery.

Three layers, one code path from a laptop CPU to many accelerators:

(a) `shard_ensemble`: an ensemble (betas x seeds) whose batch axis is sharded over the
    devices of a 1-d `Mesh` with `NamedSharding` (one `jax.jit` with in/out shardings;
    no communication at all: every system lives on one device).
(b) `sharded_velocity`, `integrate_sharded` (and `kernels.Ring` for the bare sums): one large system
    sharded over particles with `jax.shard_map`. Device r holds the rows I_r of X (its
    queries) and, in turn, every key block: the key/value/log-weight blocks travel round
    a ring with `lax.ppermute`, and the per-block statistics are merged with the online
    log-sum-exp rule (`combine_stats`), so no device ever holds all keys at once. Memory
    per device is O((n / p) d + tile).
(c) `initialize_distributed`: a thin wrapper over `jax.distributed.initialize`; after it,
    `jax.devices()` lists the devices of every process and (a), (b) run unchanged on a
    global mesh (`default_mesh`).

Ragged sizes: n not divisible by the number of devices p is padded with zero-mass
particles (log-weight -inf: they feel the field and exert none) placed at e_1, and the
padding is dropped from the results; the unpadded particles follow exactly the unsharded
dynamics (float64: 1e-12 relative, see tests/integrate/test_sharded.py).

Launch line for two processes on one machine (CPU, gloo collectives), each with 4
host devices:

    XLA_FLAGS=--xla_force_host_platform_device_count=4 python run.py --process-id 0 &
    XLA_FLAGS=--xla_force_host_platform_device_count=4 python run.py --process-id 1

where run.py calls, before any other JAX call,

    meanfield.integrate.initialize_distributed("127.0.0.1:12355", num_processes=2, process_id=pid)

and then `integrate_sharded(...)` / `shard_ensemble(...)` as on one process. On GPU
clusters (SLURM, Open MPI, Cloud TPU) `initialize_distributed()` with no arguments lets
JAX detect the cluster. Every process must pass the same global inputs; results are
global arrays: `gather_global(x)` (process_allgather) fetches them as NumPy.
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from jaxtyping import Array, Float, PRNGKeyArray

from .._validation import check_int, is_concrete
from ..kernels import (  # noqa: F401  (combine_stats, default_mesh: re-exported)
    AbstractKernel,
    Ring,
    Stats,
    combine_stats,
    default_mesh,
    kernel_from,
    resolve_kernel,
)
from ..kernels._base import pad_rows
from ..kernels.ring import mesh_axis
from ._ensemble import prepare_ensemble
from ._results import Trajectory
from ._single import check_run, field_of, integrate_scan, with_beta
from ._steps import BLOWUP, blew_up, make_step, scan_saves

BATCH = "batch"


# --------------------------------------------------------------------------- meshes


def _pad_points(X: Float[Array, "n d"], multiple: int) -> Float[Array, "N d"]:
    """Pad X with copies of e_1 (valid unit vectors: no NaN when retracted)."""
    e1 = jnp.zeros(X.shape[1:], X.dtype).at[0].set(1.0)
    return pad_rows(X, multiple, e1)


# --------------------------------------------------------------------------- (b) ring
def _ring_model(model, n: int, d: int, dtype, axis: str, size: int):
    """The model with its kernel replaced by a local-mode Ring over `axis` (inside
    shard_map): the inner kernel is the model's own (a Ring's inner one), "auto" resolved
    for the (n / size)-sized blocks."""
    kernel = model.kernel.inner if isinstance(model.kernel, Ring) else model.kernel
    block = -(-n // size)
    beta = float(model.beta) if is_concrete(model.beta) else None
    inner = resolve_kernel(kernel, block, d, dtype=dtype, beta=beta, self_interaction=False)
    return model.with_kernel(Ring(inner, axis_name=axis, local=True, size=size))


def _shard_inputs(X, m, mesh: Mesh, axis: str):
    """Pad (X, m) to a multiple of the axis size (zero mass at e_1) and place them sharded."""
    size = mesh.shape[axis]
    Xp = _pad_points(X, size)
    mp = pad_rows(m, size, 0.0)
    sharding = NamedSharding(mesh, P(axis))
    return jax.device_put(Xp, sharding), jax.device_put(mp, sharding)


@eqx.filter_jit
def _sharded_velocity(model, Xp, mp, mesh, axis):
    fn = jax.shard_map(
        lambda mdl, X, m: mdl.vector_field(0.0, X, m),
        mesh=mesh,
        in_specs=(P(), P(axis), P(axis)),
        out_specs=P(axis),
        check_vma=False,
    )
    return fn(model, Xp, mp)


def sharded_velocity(
    model,
    X: Float[Array, "n d"],
    m: Float[Array, " n"] | None = None,
    mesh: Mesh | None = None,
    axis_name: str | None = None,
) -> Float[Array, "n d"]:
    """`model.velocity(X, m)` with the particles sharded over `mesh` (ring attention).

    **Arguments:** `model`; `X` (n, d); `m` (n,) masses (default uniform); `mesh` (default
    `kernels.default_mesh()`); `axis_name` (default: the mesh's only axis).

    **Returns:** (n, d), equal to the single-device velocity up to rounding.
    """
    X, m = model.check_inputs(X, m)
    model.check_representable(X.dtype)
    mesh = default_mesh() if mesh is None else mesh
    axis = mesh_axis(mesh, axis_name)
    Xp, mp = _shard_inputs(X, m, mesh, axis)
    model = _ring_model(model, *X.shape, X.dtype, axis, mesh.shape[axis])
    return _sharded_velocity(model, Xp, mp, mesh, axis)[: X.shape[0]]


@eqx.filter_jit
def _integrate_sharded_scan(model, Xp, mp, dt, steps, save_every, method, mesh, axis):
    step = make_step(method)

    def local(model, X0, m, dt):
        # The blow-up check runs on the gathered result, outside shard_map.
        return scan_saves(step, field_of(model, m), X0, dt, steps, save_every, check=False).xs

    fn = jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(P(), P(axis), P(axis), P()),
        out_specs=P(None, axis),
        check_vma=False,
    )
    xs = fn(model, Xp, mp, dt)
    xs = eqx.error_if(xs, blew_up(xs), BLOWUP)
    ts = dt * save_every * jnp.arange(xs.shape[0], dtype=Xp.dtype)
    return Trajectory(ts, xs)


def integrate_sharded(
    model,
    X0: Float[Array, "n d"],
    *,
    dt,
    steps: int,
    m=None,
    mesh: Mesh | None = None,
    method: str = "euler",
    save_every: int | None = None,
    axis_name: str | None = None,
) -> Trajectory:
    """`integrate` for one large system sharded over particles (ring attention per stage).

    The whole run is one `shard_map` around a `lax.scan`: each device keeps its n / p
    particles for the entire run and every velocity evaluation passes the key blocks
    round the ring.

    **Arguments:** as `integrate`, plus `mesh` (default `kernels.default_mesh()`) and
    `axis_name` (default: the mesh's only axis).

    **Returns:** a `Trajectory` as `integrate`'s (xs (saves, n, d), sharded over particles);
    equal to it up to rounding.
    """
    X0, m, steps, save_every = check_run(model, X0, m, dt, steps, save_every, method)
    mesh = default_mesh() if mesh is None else mesh
    axis = mesh_axis(mesh, axis_name)
    Xp, mp = _shard_inputs(X0, m, mesh, axis)
    model = _ring_model(model, *X0.shape, X0.dtype, axis, mesh.shape[axis])
    dt = jnp.asarray(dt, X0.dtype)
    traj = _integrate_sharded_scan(model, Xp, mp, dt, steps, save_every, method, mesh, axis)
    return Trajectory(traj.ts, traj.xs[:, : X0.shape[0]])


# --------------------------------------------------------------------------- (a) ensembles
@functools.lru_cache(maxsize=32)
def _ensemble_runner(mesh: Mesh, axis: str, steps: int, save_every: int, method: str):
    """One jitted batch runner per (mesh, steps, save_every, method): no recompiles."""
    rep = NamedSharding(mesh, P())
    batch = NamedSharding(mesh, P(axis))

    def run(model, X0s, betas, m, dt):
        one = lambda b, X0: integrate_scan(
            with_beta(model, b), X0, m, dt, steps, save_every, method
        )
        return jax.vmap(one)(betas, X0s)

    return jax.jit(run, in_shardings=(rep, batch, batch, rep, rep), out_shardings=batch)


def shard_ensemble(
    model,
    key: PRNGKeyArray,
    *,
    n: int,
    d: int,
    seeds: int,
    dt,
    steps: int,
    betas=None,
    m=None,
    method: str = "euler",
    save_every: int | None = None,
    dtype=None,
    mesh: Mesh | None = None,
    axis_name: str | None = None,
) -> Trajectory:
    """`meanfield.ensemble` with the (beta, seed) batch sharded over the devices of `mesh`.

    The same initial conditions as `ensemble` (uniform_sphere on jr.split(key, seeds));
    the len(betas) * seeds systems are flattened into one batch axis, padded to a
    multiple of the device count (padding repeats the first system and is dropped) and
    sharded with NamedSharding(mesh, P(axis)).

    **Arguments:** as `ensemble`, plus `mesh` (default a 1-d mesh over every device, axis
    "batch") and `axis_name`.

    **Returns:** a `Trajectory` with xs of shape (len(betas), seeds, saves, n, d), or
    (seeds, saves, n, d) when betas is None.
    """
    model, X0s, m, dt, steps, save_every, betas = prepare_ensemble(
        model,
        key,
        n=n,
        d=d,
        seeds=seeds,
        dt=dt,
        steps=steps,
        betas=betas,
        m=m,
        method=method,
        save_every=save_every,
        dtype=dtype,
    )
    squeeze = betas is None
    betas = jnp.reshape(model.beta, (1,)) if squeeze else betas
    mesh = default_mesh(BATCH) if mesh is None else mesh
    axis = mesh_axis(mesh, axis_name)
    size = mesh.shape[axis]
    nb = betas.shape[0]
    flat_b = jnp.repeat(betas, seeds)
    flat_X = jnp.tile(X0s, (nb, 1, 1, 1)).reshape((nb * seeds,) + X0s.shape[1:])
    total = flat_b.shape[0]
    flat_b = pad_rows(flat_b, size, flat_b[0])
    flat_X = pad_rows(flat_X, size, flat_X[0])
    runner = _ensemble_runner(mesh, axis, steps, save_every, method)
    traj = runner(model, flat_X, flat_b, m, dt)
    ts, xs = traj.ts[:total], traj.xs[:total]
    shape = (seeds,) if squeeze else (nb, seeds)
    return Trajectory(ts.reshape(shape + ts.shape[1:]), xs.reshape(shape + xs.shape[1:]))


# --------------------------------------------------------------------------- (c) processes
def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids=None,
    cpu_collectives: str | None = "gloo",
    **kwargs,
) -> None:
    """Join a multi-process JAX run (`jax.distributed.initialize`); call before any JAX op.

    coordinator_address: "host:port" of process 0 (e.g. "127.0.0.1:12355" on one
    machine); num_processes, process_id: the world size and this process's rank in it.
    All None: JAX detects the cluster (SLURM, Open MPI, TPU pods). On CPU the
    cross-process collectives (ppermute in `integrate_sharded`) need an implementation:
    `cpu_collectives` ("gloo" by default, "mpi", or None to leave JAX's setting). After
    this, `jax.devices()` spans every process and `default_mesh()` is global.

    Launch line (two processes, one machine, 4 CPU devices each), one per shell:

        XLA_FLAGS=--xla_force_host_platform_device_count=4 python run.py 0
        XLA_FLAGS=--xla_force_host_platform_device_count=4 python run.py 1

    with run.py calling initialize_distributed("127.0.0.1:12355", 2, int(sys.argv[1])).
    """
    if cpu_collectives is not None:
        jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    if num_processes is not None:
        num_processes = check_int(num_processes, "num_processes")
    if process_id is not None:
        process_id = check_int(process_id, "process_id", minimum=0)
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        local_device_ids=local_device_ids,
        **kwargs,
    )


def gather_global(x: Array) -> np.ndarray:
    """The full value of a (possibly multi-process, sharded) array on every process, as NumPy."""
    if getattr(x, "is_fully_addressable", True):
        return np.asarray(x)

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
