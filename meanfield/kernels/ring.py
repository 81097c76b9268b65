"""Ring kernel: an inner kernel inside `jax.shard_map`, queries and keys sharded.

Device r holds the query rows Q_r and, in turn, every key block: the key, value and
log-weight blocks travel round a ring with `lax.ppermute` (p - 1 permutes), and the
statistics of each (query block, key block) pair, computed by the inner kernel, are
merged with the online log-sum-exp (`combine_stats`). No device ever holds all keys;
memory per device is O((n / p) d + the inner kernel's tile).

Two modes:
- global (default): `stats` takes whole arrays, pads them to a multiple of the device
  count (queries with zeros, keys with log-weight -inf), runs the ring in a shard_map over
  `mesh` (default: every device) and drops the padding;
- local (`local=True`, with `axis_name` and `size`): `stats` runs on the local blocks of
  a shard_map the caller set up, e.g. `integrate_sharded`, which keeps the particles
  sharded for a whole run.
"""

from __future__ import annotations

import functools
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from ._base import AbstractKernel, KernelError, Stats, combine_stats, empty_stats, pad_rows
from .tiled import Tiled

PARTICLES = "particles"


def default_mesh(axis_name: str = PARTICLES, devices=None) -> Mesh:
    """A 1-d `Mesh` over `devices` (default: all devices of all processes, `jax.devices()`).

    **Arguments:** `axis_name` (default "particles"), `devices` (a list of jax devices).

    **Returns:** a `jax.sharding.Mesh` with the one axis `axis_name`.
    """
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (axis_name,))


def mesh_axis(mesh: Mesh, axis_name: str | None) -> str:
    """The axis of `mesh` to shard over (its only axis when axis_name is None)."""
    if axis_name is None:
        if len(mesh.axis_names) != 1:
            raise ValueError(
                f"`mesh` has axes {mesh.axis_names}; name the one to shard over (`axis_name`)."
            )
        return mesh.axis_names[0]
    if axis_name not in mesh.axis_names:
        raise ValueError(f"`axis_name`={axis_name!r} is not an axis of the mesh {mesh.axis_names}.")
    return axis_name


class Ring(AbstractKernel):
    """Ring attention over the devices of a mesh around an `inner` kernel.

    **Arguments:**

    - `inner`: the single-device kernel for each block pair (default `Tiled()`).
    - `mesh`: the device mesh (global mode; default `default_mesh()` when called).
    - `axis_name`: the mesh axis to shard over (default: the mesh's only axis).
    - `local`, `size`: local mode (inside the caller's shard_map over an axis of `size`).
    """

    name: ClassVar[str] = "ring"
    inner: AbstractKernel = Tiled()
    mesh: Mesh | None = None
    axis_name: str | None = None
    local: bool = False
    size: int | None = None

    def __check_init__(self):
        if not isinstance(self.inner, AbstractKernel) or isinstance(self.inner, Ring):
            raise KernelError(f"Ring `inner` must be a single-device kernel; got {self.inner!r}.")
        if self.local and (self.axis_name is None or self.size is None):
            raise KernelError("Ring(local=True) needs `axis_name` and `size`.")

    def check(self, nq, d, dtype, *, nk=None, e=None):
        self.inner.check(nq, d, dtype, nk=nk, e=e)
        if not self.inner.supports_values:
            raise KernelError(f"{self!r}: the inner kernel must accept arbitrary key blocks.")

    def prepare(self, nq, d, dtype, *, beta=None, nk=None):
        self.check(nq, d, dtype, nk=nk)
        return self

    def local_on(self, axis_name: str, size: int) -> Ring:
        """This ring in local mode over an axis of `size` devices."""
        return Ring(self.inner, None, axis_name, True, size)

    def stats(self, Q, K, V, beta, log_w) -> Stats:
        if self.local:
            return _ring_local(self.inner, Q, K, V, beta, log_w, self.axis_name, self.size)
        mesh = default_mesh() if self.mesh is None else self.mesh
        axis = mesh_axis(mesh, self.axis_name)
        return _ring_global(self.inner, Q, K, V, beta, log_w, mesh, axis)


def _ring_local(inner, q, k, v, beta, log_w, axis_name: str, size: int) -> Stats:
    """Per-device body: (L, Y) of the local queries against every key block.

    Step 0 uses the local block; each further step passes the key, value and log-weight
    blocks to the next device (r -> r + 1 mod size) and merges. When `v is k`
    (self-attention) only one array travels.
    """
    same = v is k
    perm = [(i, (i + 1) % size) for i in range(size)]
    empty = empty_stats(q.shape[0], v.shape[1], v.dtype)
    L, Y = combine_stats(*inner.stats(q, k, v, beta, log_w), *empty)

    def body(carry, _):
        L, Y, k, v, w = carry
        k = lax.ppermute(k, axis_name, perm)
        v = k if same else lax.ppermute(v, axis_name, perm)
        w = lax.ppermute(w, axis_name, perm)
        L, Y = combine_stats(L, Y, *inner.stats(q, k, v, beta, w))
        return (L, Y, k, v, w), None

    (L, Y, *_), _ = lax.scan(body, (L, Y, k, v, log_w), None, length=size - 1)
    return Stats(L, Y)


@functools.partial(jax.jit, static_argnums=(0, 6, 7))
def _ring_global(inner, Q, K, V, beta, log_w, mesh: Mesh, axis: str) -> Stats:
    size = mesh.shape[axis]
    Qp = pad_rows(Q, size, 0.0)
    Kp, Vp = pad_rows(K, size, 0.0), pad_rows(V, size, 0.0)
    Wp = pad_rows(log_w, size, -jnp.inf)
    spec = P(axis)
    fn = jax.shard_map(
        functools.partial(_ring_local, inner, axis_name=axis, size=size),
        mesh=mesh,
        in_specs=(spec, spec, spec, P(), spec),
        out_specs=Stats(spec, spec),
        check_vma=False,  # kernels' inner scans start from unsharded constants
    )
    L, Y = fn(Qp, Kp, Vp, jnp.asarray(beta, jnp.result_type(Q, V)), Wp)
    return Stats(L[: Q.shape[0]], Y[: Q.shape[0]])
