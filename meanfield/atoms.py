"""Atoms from particles: clustering a weighted point cloud on the sphere.

Tolerance semantics (the only one used in this module). Two particles are *linked* when
their great-circle angle is at most `tol` (radians):

    i ~ j   iff   angle(x_i, x_j) = arccos <x_i, x_j> <= tol.

Clusters ("atoms") are the connected components of this graph (single linkage): a chain
of particles with consecutive gaps <= tol is one atom even if its ends are further apart,
so the atom diameter can exceed tol; it is reported (`diameters`) so that statements
such as the mass bound, stated for atoms of diameter <= 1 / (2 sqrt(beta)), can be checked.
Connected components do not depend on the order of the particles (permutation invariant
as a partition), unlike greedy leader clustering.

Each atom has mass M_a = sum_{i in a} m_i and location the normalised mass-weighted
mean x_a = sum_{i in a} m_i x_i / |sum_{i in a} m_i x_i| (the unweighted mean when the
atom has zero mass). Angles come from the Gram matrix, so they are resolved down to
about sqrt(2 eps): 2e-8 rad in float64, 5e-4 rad in float32; choose tol above that.

Algorithm: min-label propagation with Shiloach-Vishkin hooking and pointer jumping,
blockwise over rows (memory O(block * n), never n x n), inside `lax.while_loop`; each
round costs O(n^2 d) flops and the number of rounds is O(log n) in practice. Everything
is jit- and vmap-friendly with fixed output shapes (`cluster_padded`); `cluster`
additionally trims the padding to the k atoms found (eager, shapes depend on data).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float, Int

from ._validation import check_masses, check_points, check_positive_scalar
from .sphere import retract

__all__ = [
    "BLOCK",
    "Atoms",
    "cluster",
    "cluster_count",
    "cluster_padded",
    "default_tolerance",
    "largest_cluster_mass",
]


def default_tolerance(beta, scale: float = 0.1, max_tol: float = 0.2):
    """The beta-aware linking tolerance min(scale / sqrt(beta), max_tol) (radians).

    Atoms of the mean-field energy have width O(1 / sqrt(beta)) (the kernel's scale), so a
    fixed tolerance either merges distinct atoms at small beta or splits one at large beta.
    This is the one default of the library: `cluster(X, beta=...)`, `mf.certify`, the CLI
    (`--cluster-tol auto`), the sweeps and the localisation study all use it.

    **Arguments:** `beta` (traced or concrete, any shape); `scale`; `max_tol` (radians).

    **Returns:** an array of beta's shape.
    """
    return jnp.minimum(scale / jnp.sqrt(beta), max_tol)


BLOCK = 256
"""Rows per block in the pairwise passes (memory BLOCK * n floats)."""


class Atoms(eqx.Module):
    """Atoms of a weighted point cloud, sorted by decreasing mass.

    Fields:
        locations: (k, d) unit vectors, normalised mass-weighted means of the atoms.
        masses: (k,) total mass of each atom (sums to the total mass of the input).
        labels: (n,) atom index of every input particle (0 = heaviest atom).
        diameters: (k,) largest pairwise angle (radians) inside each atom.
        count: scalar int, the number of atoms k.

    With `cluster_padded` the arrays have n rows and only the first `count` are atoms
    (the rest have mass 0, location 0 and diameter 0); `cluster` trims them.
    """

    locations: Float[Array, "k d"]
    masses: Float[Array, " k"]
    labels: Int[Array, " n"]
    diameters: Float[Array, " k"]
    count: Int[Array, ""]

    @property
    def largest_mass(self) -> Float[Array, ""]:
        """Mass of the heaviest atom."""
        return jnp.max(self.masses)

    @property
    def max_diameter(self) -> Float[Array, ""]:
        """Largest atom diameter (radians)."""
        return jnp.max(self.diameters)

    def __repr__(self) -> str:
        leaves = (self.masses, self.count)
        if any(isinstance(x, jax.core.Tracer) for x in leaves) or jnp.ndim(self.count):
            return (
                f"Atoms(locations={self.locations!r}, masses={self.masses!r}, count={self.count!r})"
            )
        k = int(self.count)
        masses = ", ".join(f"{float(x):.4g}" for x in self.masses[: min(k, 6)])
        more = ", ..." if k > 6 else ""
        diameter = float(jnp.max(self.diameters[: max(k, 1)]))
        d = self.locations.shape[-1]
        return f"Atoms(count={k}, masses=[{masses}{more}], max_diameter={diameter:.3g}, d={d})"


def _row_blocks(X: Float[Array, "n d"], block: int):
    n, d = X.shape
    block = min(block, n)
    pad = (-n) % block
    Xp = jnp.pad(X, ((0, pad), (0, 0)))
    return Xp.reshape(-1, block, d), block


def _neighbour_min(X, cos_tol, labels, block: int = BLOCK) -> Int[Array, " n"]:
    """min_{j : <x_i, x_j> >= cos(tol)} labels_j for every i, blockwise over rows."""
    n = X.shape[0]
    Xb, _ = _row_blocks(X, block)

    def rows(xb):
        G = xb @ X.T
        return jnp.min(jnp.where(cos_tol <= G, labels[None, :], n), axis=1)

    return lax.map(rows, Xb).reshape(-1)[:n]


def _pointer_jump(labels):
    """Iterate labels <- labels[labels] to a fixed point (every label points at a root)."""
    return lax.while_loop(lambda lab: jnp.any(lab[lab] != lab), lambda lab: lab[lab], labels)


def _component_roots(X, cos_tol, block: int = BLOCK) -> Int[Array, " n"]:
    """For every particle, the smallest index in its connected component of the tol-graph.

    Invariant: labels[i] is an index in the component of i and labels[i] <= i. A round
    hooks each root labels[i] onto the smallest label seen among the neighbours of i
    (scatter-min), takes the neighbour minimum itself, and pointer-jumps. At the fixed
    point every component carries one label, its smallest index.
    """
    n = X.shape[0]
    labels0 = jnp.arange(n)

    def body(state):
        labels, _ = state
        nb = _neighbour_min(X, cos_tol, labels, block)
        new = labels.at[labels].min(nb)
        new = jnp.minimum(new, nb)
        new = _pointer_jump(new)
        return new, jnp.any(new != labels)

    labels, _ = lax.while_loop(lambda s: s[1], body, (labels0, jnp.asarray(True)))
    return labels


def _diameters(X, labels, num: int, block: int = BLOCK) -> Float[Array, " num"]:
    """max angle(x_i, x_j) over pairs with the same label, per label; shape (num,)."""
    n = X.shape[0]
    Xb, bsz = _row_blocks(X, block)
    Lb = jnp.pad(labels, (0, Xb.shape[0] * bsz - n), constant_values=-1).reshape(-1, bsz)

    def rows(args):
        xb, lb = args
        G = xb @ X.T
        chord = jnp.sqrt(jnp.clip(2.0 - 2.0 * G, 0.0, 4.0))
        ang = 2.0 * jnp.arcsin(jnp.clip(chord / 2.0, 0.0, 1.0))
        return jnp.max(jnp.where(lb[:, None] == labels[None, :], ang, 0.0), axis=1)

    ecc = lax.map(rows, (Xb, Lb)).reshape(-1)[:n]
    return jax.ops.segment_max(ecc, labels, num_segments=num).clip(min=0.0)


@eqx.filter_jit
def cluster_padded(
    X: Float[Array, "n d"], m: Float[Array, " n"], tol, *, block: int = BLOCK
) -> Atoms:
    """Jit/vmap-friendly clustering with fixed shapes: arrays of length n, `count` atoms.

    **Arguments:** `X` (n, d) points; `m` (n,) masses; `tol` angular tolerance (radians,
    may be traced); `block` rows per pairwise pass (memory block * n).

    **Returns:** `Atoms` whose arrays have n rows, of which the first `count` are atoms (the
    rest have mass 0). No input checks: use `cluster` for checked, trimmed output.
    """
    n = X.shape[0]
    X = retract(X)
    tol = jnp.asarray(tol, X.dtype)
    cos_tol = jnp.where(tol >= jnp.pi, -2.0, jnp.cos(jnp.minimum(tol, jnp.pi)))
    roots = _component_roots(X, cos_tol, block)
    is_root = roots == jnp.arange(n)
    count = jnp.sum(is_root)
    rank = jnp.cumsum(is_root) - 1  # provisional atom index, ordered by smallest member
    provisional = rank[roots]
    masses = jax.ops.segment_sum(m, provisional, num_segments=n)
    sums = jax.ops.segment_sum(m[:, None] * X, provisional, num_segments=n)
    plain = jax.ops.segment_sum(X, provisional, num_segments=n)
    norm = jnp.linalg.norm(sums, axis=1, keepdims=True)
    tiny = 10 * jnp.finfo(X.dtype).eps * jnp.maximum(masses[:, None], 1e-30)
    sums = jnp.where(norm > tiny, sums, plain)
    norm = jnp.linalg.norm(sums, axis=1, keepdims=True)
    valid = jnp.arange(n) < count
    locations = jnp.where(valid[:, None] & (norm > 0), sums / jnp.where(norm > 0, norm, 1), 0)
    diam = _diameters(X, provisional, n, block)
    # Sort atoms by decreasing mass; padding slots last (stable: ties keep first-index order).
    key = jnp.where(valid, -masses, jnp.inf)
    order = jnp.argsort(key, stable=True)
    inverse = jnp.zeros(n, order.dtype).at[order].set(jnp.arange(n, dtype=order.dtype))
    return Atoms(
        locations=locations[order],
        masses=masses[order],
        labels=inverse[provisional],
        diameters=diam[order],
        count=count,
    )


def _check(X, m, tol, beta):
    """Checked (X, m) and the tolerance: `tol`, or `default_tolerance(beta)`."""
    X = check_points(X, "X")
    m = check_masses(m, X.shape[0], X.dtype)
    if tol is None:
        if beta is None:
            raise ValueError(
                "Pass `tol` (radians) or `beta` (the model's inverse temperature, for the "
                "default tolerance min(0.1 / sqrt(beta), 0.2))."
            )
        check_positive_scalar(beta, "beta")
        tol = default_tolerance(jnp.asarray(beta, X.dtype))
    check_positive_scalar(tol, "tol")
    return X, m, jnp.asarray(tol, X.dtype)


def cluster(
    X: Float[Array, "n d"], m: Float[Array, " n"] | None = None, tol=None, *, beta=None
) -> Atoms:
    """Cluster the weighted particles (X, m) into atoms (connected components, see module).

    **Arguments:**

    - `X`: (n, d) points on S^{d-1}.
    - `m`: (n,) non-negative masses summing to 1 (uniform 1/n if None).
    - `tol`: angular linking tolerance in radians, > 0: particles at angle <= tol are in
      the same atom (transitively); tol >= pi gives a single atom.
    - `beta`: the inverse temperature of the model, for the default tolerance
      `default_tolerance(beta)` = min(0.1 / sqrt(beta), 0.2) when `tol` is not given.

    **Returns:** `Atoms` with k = number of atoms rows, sorted by decreasing mass:
    locations (k, d), masses (k,), labels (n,), diameters (k,), count. Eager (the output
    shape depends on the data); inside jit/vmap use `cluster_padded`, `cluster_count` or
    `largest_cluster_mass`.
    """
    X, m, tol = _check(X, m, tol, beta)
    atoms = cluster_padded(X, m, tol)
    k = int(atoms.count)
    return Atoms(
        locations=atoms.locations[:k],
        masses=atoms.masses[:k],
        labels=atoms.labels,
        diameters=atoms.diameters[:k],
        count=atoms.count,
    )


def cluster_count(X: Float[Array, "n d"], m=None, tol=None, *, beta=None) -> Int[Array, ""]:
    """Number of atoms of (X, m) at angular tolerance `tol` (jit-friendly).

    **Arguments:** as `cluster`. **Returns:** a scalar int array.
    """
    X, m, tol = _check(X, m, tol, beta)
    return cluster_padded(X, m, tol).count


def largest_cluster_mass(
    X: Float[Array, "n d"], m=None, tol=None, *, beta=None
) -> Float[Array, ""]:
    """Mass of the heaviest atom of (X, m) at angular tolerance `tol` (jit-friendly).

    **Arguments:** as `cluster`. **Returns:** a scalar array.
    """
    X, m, tol = _check(X, m, tol, beta)
    return cluster_padded(X, m, tol).largest_mass
