"""The localisation experiment of Alvarez-Lopez, Geshkovski and Ruiz-Balet (2026).

Setup (their Section on experiments, and their public configuration): n particles uniform
on S^{d-1}; a perceptron with k = d neurons, a_k uniform on the sphere, omega_k ~ N(0, 1),
b = 0, GELU; repulsive interaction s = -1; USA dynamics integrated by Euler with
renormalisation, dt = 0.1, until the cluster count is stable between two checks and the
max speed is <= 1e-4 (capped at `max_steps`); then atoms are counted and the largest
cluster mass measured, for every beta of the grid and several particle seeds (the
perceptron is fixed per dimension, drawn from its own key).

Kernel conventions:
- shift_kernel=True: K = exp(beta(<x, y> - 1)) (their code). dt = 0.1 is used as is.
- shift_kernel=False: K = exp(beta <x, y>) (the paper's formulas). The velocity is then
  e^{beta} times larger in the interaction; we integrate with rescaled_time=True (the same
  trajectories, clock slowed by e^{beta}), so dt = 0.1 and the stopping speed 1e-4 are in
  rescaled units. The perceptron is e^{-beta} weaker relative to the interaction here.

Everything for one dimension is a single jitted program, vmapped over (beta, seed):
a `lax.while_loop` of `check_every`-step Euler scans with a cluster count at every check.
Clusters: connected components at angular tolerance cluster_scale / sqrt(beta) (their
threshold, cluster_scale = 0.1), capped at `max_tol`.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ..atoms import cluster_padded, default_tolerance
from ..critical import MASS_BOUND_LIMIT, mass_bound
from ..dynamics import MeanField, Perceptron, authors_draw, perceptron_from_authors
from ..integrate import field_of, make_step, run_until, with_beta
from ..sphere import uniform_sphere

PAPER_BETAS = (0.01, 0.05, 0.1, 0.5, 1.0, 3.0, 5.0, 7.0, 10.0, 15.0, 25.0, 35.0, 50.0)
QUICK_BETAS = (0.1, 1.0, 5.0, 15.0, 50.0)


@eqx.filter_jit
def _run_batch(model, X0s, betas, dt, max_steps, check_every, speed_tol, cluster_scale, max_tol):
    """Run every (beta_b, X0_b) pair to the stopping rule; all outputs have a leading batch axis."""
    step = make_step("euler")
    n = X0s.shape[1]
    m = jnp.full((n,), 1.0 / n, X0s.dtype)

    def one(beta, X0):
        mdl = with_beta(model, beta)
        field = field_of(mdl, m)
        tol = default_tolerance(beta, cluster_scale, max_tol)

        def measure(X):
            speed = jnp.max(jnp.linalg.norm(field(X), axis=-1))
            return speed, cluster_padded(X, m, tol).count

        def done(now, before):  # slow, and the atom count stopped changing
            return (now[0] <= speed_tol) & (now[1] == before[1])

        count_dtype = jax.eval_shape(measure, X0)[1].dtype
        never = (jnp.asarray(jnp.inf, X0.dtype), jnp.asarray(-1, count_dtype))
        X, k, (speed, _) = run_until(
            step,
            field,
            X0,
            dt,
            max_steps=max_steps,
            check_every=check_every,
            measure=measure,
            done=done,
            prev=never,
        )
        atoms = cluster_padded(X, m, tol)
        return dict(
            steps=k,
            speed=speed,
            atoms=atoms.count,
            largest_mass=atoms.largest_mass,
            max_diameter=jnp.max(atoms.diameters),
            masses=atoms.masses,
            locations=atoms.locations,
        )

    return jax.vmap(one)(betas, X0s)


PERCEPTRONS = ("authors", "jax")


def study_perceptron(perceptron, d: int, activation: str = "gelu", mlp_key=None) -> Perceptron:
    """The perceptron of the study: "authors", "jax" or a given `Perceptron` (see
    `run_dimension`)."""
    if isinstance(perceptron, Perceptron):
        return perceptron
    if perceptron == "authors":
        a, s = authors_draw(777, d)
        return perceptron_from_authors(a, s=s, activation=activation)
    if perceptron == "jax":
        mlp_key = jr.PRNGKey(111 + d) if mlp_key is None else mlp_key
        return Perceptron.random(mlp_key, d, activation=activation)
    raise ValueError(
        f"`perceptron` must be one of {PERCEPTRONS} or a Perceptron; got {perceptron!r}."
    )


def run_dimension(
    d: int,
    *,
    betas=PAPER_BETAS,
    seeds: int = 3,
    n: int = 1000,
    shift_kernel: bool = True,
    dt: float = 0.1,
    max_steps: int = 20_000,
    check_every: int = 100,
    speed_tol: float = 1e-4,
    activation: str = "gelu",
    key=None,
    mlp_key=None,
    cluster_scale: float = 0.1,
    max_tol: float = 0.2,
    perceptron="authors",
) -> list[dict]:
    """The study for one dimension d: one jitted, vmapped program over betas x seeds.

    `perceptron`: "authors" (default: the draw of the paper's own code, default_rng(777),
    through `dynamics.perceptron_from_authors`, so the table is the paper's), "jax"
    (`Perceptron.random(mlp_key or PRNGKey(111 + d))`, this study's earlier draw) or a
    `Perceptron`.

    Returns one record per (beta, seed): atoms, largest_mass, max_diameter, steps, speed,
    converged, the top atom masses, the mass bound (paper's convention, with C of the
    perceptron) and its limit.
    """
    key = jr.PRNGKey(0) if key is None else key
    p = study_perceptron(perceptron, d, activation, mlp_key)
    model = MeanField(
        1.0, sign=-1, perceptron=p, shift_kernel=shift_kernel, rescaled_time=not shift_kernel
    )
    X0 = jax.vmap(lambda k: uniform_sphere(k, n, d))(jr.split(key, seeds))
    nb = len(betas)
    B = jnp.repeat(jnp.asarray(betas, X0.dtype), seeds)
    X0s = jnp.tile(X0, (nb, 1, 1))
    dtype = X0.dtype
    resolved = with_beta(model, max(betas)).resolve_kernel(n, d, dtype=dtype, batch=nb * seeds)
    model = with_beta(resolved, 1.0)
    out = _run_batch(
        model,
        X0s,
        B,
        jnp.asarray(dt, dtype),
        int(max_steps),
        int(check_every),
        jnp.asarray(speed_tol, dtype),
        jnp.asarray(cluster_scale, dtype),
        jnp.asarray(max_tol, dtype),
    )
    out = jax.tree_util.tree_map(np.asarray, out)
    records = []
    for b in range(nb * seeds):
        beta = float(B[b])
        k = int(out["atoms"][b])
        records.append(
            dict(
                d=d,
                beta=beta,
                seed=b % seeds,
                shift_kernel=bool(shift_kernel),
                n=n,
                atoms=k,
                largest_mass=float(out["largest_mass"][b]),
                max_diameter=float(out["max_diameter"][b]),
                diameter_limit=1 / (2 * math.sqrt(beta)),
                top_masses=[float(x) for x in out["masses"][b][: min(k, 8)]],
                steps=int(out["steps"][b]),
                speed=float(out["speed"][b]),
                converged=bool(out["speed"][b] <= speed_tol),
                mass_bound=mass_bound(beta, p),
                mass_bound_limit=MASS_BOUND_LIMIT,
                cluster_tol=float(default_tolerance(beta, cluster_scale, max_tol)),
            )
        )
    return records


def summarise(records: list[dict]) -> list[dict]:
    """Mean/min/max over seeds of atoms and largest mass per (convention, d, beta)."""
    groups: dict = {}
    for r in records:
        groups.setdefault((r["shift_kernel"], r["d"], r["beta"]), []).append(r)
    rows = []
    for (shift, d, beta), rs in sorted(groups.items()):
        atoms = np.array([r["atoms"] for r in rs])
        mass = np.array([r["largest_mass"] for r in rs])
        rows.append(
            dict(
                shift_kernel=shift,
                d=d,
                beta=beta,
                atoms_mean=float(atoms.mean()),
                atoms_min=int(atoms.min()),
                atoms_max=int(atoms.max()),
                largest_mass_mean=float(mass.mean()),
                largest_mass_max=float(mass.max()),
                converged=int(sum(r["converged"] for r in rs)),
                seeds=len(rs),
                mass_bound=rs[0]["mass_bound"],
            )
        )
    return rows


def format_table(rows: list[dict]) -> str:
    """A Markdown table of `summarise` rows."""
    head = (
        "| kernel | d | beta | atoms (mean, min-max) | largest mass (mean, max) | bound "
        "| converged |"
    )
    lines = [head, "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        conv = "shifted" if r["shift_kernel"] else "unshifted"
        lines.append(
            f"| {conv} | {r['d']} | {r['beta']:g} | {r['atoms_mean']:.1f} "
            f"({r['atoms_min']}-{r['atoms_max']}) | {r['largest_mass_mean']:.3f} "
            f"({r['largest_mass_max']:.3f}) | {r['mass_bound']:.3f} | "
            f"{r['converged']}/{r['seeds']} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    """Atoms and largest cluster mass versus beta, per dimension and convention."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for shift, d in sorted({(r["shift_kernel"], r["d"]) for r in rows}):
        rs = [r for r in rows if r["shift_kernel"] == shift and r["d"] == d]
        b = [r["beta"] for r in rs]
        style = "-o" if shift else "--s"
        label = f"d={d}, {'shifted' if shift else 'unshifted'}"
        axes[0].plot(b, [r["atoms_mean"] for r in rs], style, label=label)
        axes[1].plot(b, [r["largest_mass_mean"] for r in rs], style, label=label)
    bs = sorted({r["beta"] for r in rows})
    axes[1].axhline(MASS_BOUND_LIMIT, color="k", lw=1, label="16/(16+3e^{11/8}) = 0.574")
    for (d,) in sorted({(r["d"],) for r in rows if r["d"] == 2}):
        rs = [r for r in rows if r["d"] == d and not r["shift_kernel"]] or [
            r for r in rows if r["d"] == d
        ]
        bb = [r["beta"] for r in rs]
        axes[1].plot(bb, [min(r["mass_bound"], 1.0) for r in rs], "k:", label="mass bound (d=2)")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("beta")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("number of atoms")
    axes[1].set_ylabel("largest cluster mass")
    axes[1].set_ylim(0, 1.05)
    axes[0].set_title("atoms vs beta")
    axes[1].set_title(f"largest cluster mass vs beta ({len(bs)} betas)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_study(
    out: str | Path,
    *,
    dims=(2, 3, 8),
    betas=PAPER_BETAS,
    seeds: int = 3,
    n: int = 1000,
    conventions=(True, False),
    max_steps: int = 20_000,
    check_every: int = 100,
    key=None,
    verbose: bool = True,
    perceptron: str = "authors",
) -> dict:
    """Run the study for every dimension and kernel convention; write JSON, Markdown, PNG.

    `perceptron`: "authors" (the paper's draw, default) or "jax" (see `run_dimension`).
    """
    if perceptron not in PERCEPTRONS:
        raise ValueError(f"`perceptron` must be one of {PERCEPTRONS}; got {perceptron!r}.")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    key = jr.PRNGKey(0) if key is None else key
    records, timings = [], {}
    for shift in conventions:
        for d in dims:
            t0 = time.perf_counter()
            recs = run_dimension(
                d,
                betas=betas,
                seeds=seeds,
                n=n,
                shift_kernel=shift,
                max_steps=max_steps,
                check_every=check_every,
                key=jr.fold_in(key, d),
                perceptron=perceptron,
            )
            timings[f"d={d},shift={shift}"] = time.perf_counter() - t0
            records += recs
            if verbose:
                print(f"d={d} shift_kernel={shift}: {timings[f'd={d},shift={shift}']:.1f} s")
    rows = summarise(records)
    table = format_table(rows)
    result = dict(
        config=dict(
            dims=list(dims),
            betas=list(betas),
            seeds=seeds,
            n=n,
            dt=0.1,
            max_steps=max_steps,
            check_every=check_every,
            sign=-1,
            activation="gelu",
            perceptron=perceptron,
        ),
        timings_s=timings,
        summary=rows,
        records=records,
        machine=dict(backend=jax.default_backend(), devices=str(jax.devices())),
    )
    (out / "localisation_study.json").write_text(json.dumps(result, indent=1))
    (out / "localisation_study.md").write_text(table + "\n")
    plot(rows, out / "localisation_study.png")
    if verbose:
        print(table)
    return result
