"""`certify`: from particles to a certified critical point in one call.

The pipeline of the perceptron paper (arXiv 2601.21366): flow the particles to
stationarity (`integrate_until`), cluster them into atoms (`cluster` with the one default
tolerance `default_tolerance(beta)`), Newton-refine the atoms to a critical point of the
atomic energy (`newton_refine`), and certify its second-order stability
(`stability_report`: splitting and transport Hessians). A gradient flow started from
generic data can still stop near a saddle (a metastable plateau); `perturb=k` then moves
every particle by a small random tangent kick and flows on, up to k times, until the
certificate says stable.

Everything runs in float64 by default (inside `jax.enable_x64`): eigenvalues near zero
decide the verdicts and float32 cannot resolve them (a warning says so when asked).
"""

from __future__ import annotations

import dataclasses
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._validation import as_key, check_int, check_positive_scalar
from ..atoms import Atoms, cluster, default_tolerance
from ..integrate import StopResult, integrate_until
from ..sphere import project, retract
from ._refine import newton_refine
from ._stability import StabilityReport, stability_report
from ._units import stationarity_residual

DTYPES = ("float64", "float32")


@dataclasses.dataclass(frozen=True)
class Certificate:
    """The outcome of `certify` (or of `certify_atoms` for given atoms).

    **Fields:**

    - `locations`: (k, d) the Newton-refined atoms (NumPy); `masses`: (k,) their masses.
    - `report`: the `StabilityReport` of the refined atoms (eigenvalues, verdicts).
    - `residual_before_newton`: stationarity residual of the clustered atoms (model units).
    - `newton_converged`, `newton_displacement`: Newton's verdict and the largest move of an
      atom (radians).
    - `atoms`: the `Atoms` of the flow's final state (None from `certify_atoms`);
      `flow`: the last `StopResult` of the flow (None from `certify_atoms`).
    - `cluster_tol`: the linking tolerance used (radians); `perturbations`: kicks used.
    - `dtype`: the precision of the whole pipeline.
    - `hint`: what to try when the point is not certified stable ("" when it is).
    """

    locations: np.ndarray
    masses: np.ndarray
    report: StabilityReport
    residual_before_newton: float
    newton_converged: bool
    newton_displacement: float
    atoms: Atoms | None = None
    flow: StopResult | None = None
    cluster_tol: float | None = None
    perturbations: int = 0
    dtype: str = "float64"
    hint: str = ""

    @property
    def stable(self) -> bool:
        """Stationary, splitting- and transport-stable (second order)."""
        return bool(self.report.stable)

    @property
    def strictly_stable(self) -> bool:
        return bool(self.report.strictly_stable)

    def as_dict(self) -> dict:
        """The numbers of the certificate as JSON-ready values (what `meanfield critical`
        writes to results.json)."""
        rep = self.report
        split, trans = rep.splitting_eigenvalues, rep.transport_eigenvalues
        out = {
            "atoms": int(self.locations.shape[0]),
            "masses": [float(v) for v in self.masses],
            "residual_before_newton": self.residual_before_newton,
            "residual": float(rep.residual),
            "grad_tol": float(rep.grad_tol),
            "newton_converged": self.newton_converged,
            "newton_displacement": self.newton_displacement,
            "stationary": bool(rep.stationary),
            "splitting_stable": bool(rep.splitting_stable),
            "transport_stable": bool(rep.transport_stable),
            "stable": bool(rep.stable),
            "strictly_stable": bool(rep.strictly_stable),
            "max_splitting_eigenvalue": float(split.max()) if split.size else None,
            "max_transport_eigenvalue": float(trans.max()) if trans.size else None,
            "eigenvalue_tol": float(rep.tol),
            "modulo_rotations": bool(rep.modulo_rotations),
            "dtype": self.dtype,
            "perturbations": self.perturbations,
        }
        if self.flow is not None:
            out.update(
                flow_steps=int(self.flow.steps),
                flow_converged=bool(self.flow.converged),
                max_speed=float(self.flow.max_speed),
                cluster_tol=self.cluster_tol,
            )
        if self.hint:
            out["hint"] = self.hint
        return out

    def __repr__(self) -> str:
        verdict = (
            "strictly stable"
            if self.strictly_stable
            else "stable"
            if self.stable
            else "stationary, unstable"
            if self.report.stationary
            else "not stationary"
        )
        masses = ", ".join(f"{v:.3g}" for v in self.masses[:6])
        more = ", ..." if len(self.masses) > 6 else ""
        return (
            f"Certificate({verdict}: {len(self.masses)} atoms, masses=[{masses}{more}], "
            f"residual={float(self.report.residual):.2e}, dtype={self.dtype})"
        )


def _cast(tree, dtype):
    return jax.tree_util.tree_map(
        lambda a: jnp.asarray(a, dtype) if eqx.is_inexact_array(a) else a, tree
    )


def _check_dtype(dtype) -> str:
    name = jnp.dtype(dtype).name if dtype in (jnp.float32, jnp.float64) else str(dtype)
    if name not in DTYPES:
        raise ValueError(f"`dtype` must be one of {DTYPES}; got {dtype!r}.")
    if name == "float32":
        warnings.warn(
            "certify in float32: Hessian eigenvalues within ~1e-4 (relative) of zero are "
            "round-off there, so stability verdicts can differ from float64 (the default).",
            stacklevel=3,
        )
    return name


def _refine_and_report(model, X, m, newton_iter: int):
    """Newton-refine atoms (X, m) (both normalised first) and report their stability."""
    X = retract(X)
    m = m / jnp.sum(m)
    before = float(stationarity_residual(model, X, m))
    if newton_iter > 0:
        cp = newton_refine(model, X, m, max_iter=newton_iter)
        Xr, converged = cp.X, bool(cp.converged)
    else:
        Xr, converged = X, False
    report = stability_report(model, Xr, m)
    moved = float(jnp.max(jnp.linalg.norm(Xr - X, axis=1)))
    return np.asarray(Xr), np.asarray(m), report, before, converged, moved


def certify_atoms(
    model, locations, masses, *, newton_iter: int = 30, dtype="float64"
) -> Certificate:
    """Newton-refine given atoms to a critical point and certify its stability.

    **Arguments:** `model` (a `MeanField` whose energy is defined); `locations` (k, d)
    atoms; `masses` (k,) positive (renormalised to sum 1); `newton_iter` (0: no Newton);
    `dtype` "float64" (default) or "float32" (with a warning).

    **Returns:** a `Certificate` (no flow, no clustering).
    """
    name = _check_dtype(dtype)
    newton_iter = check_int(newton_iter, "newton_iter", minimum=0)
    with jax.enable_x64(name == "float64"):
        mdl = _cast(model, name)
        X = jnp.asarray(np.asarray(locations), name)
        m = jnp.asarray(np.asarray(masses), name)
        Xr, m, report, before, converged, moved = _refine_and_report(mdl, X, m, newton_iter)
    return Certificate(Xr, m, report, before, converged, moved, dtype=name, hint=_hint(report))


def _lonely_splitting_atoms(report: StabilityReport, atoms: Atoms | None) -> list[int]:
    """Indices of the splitting-unstable atoms that hold a single particle."""
    if atoms is None:
        return []
    split = np.asarray(report.splitting_eigenvalues)
    if split.shape[0] != int(atoms.count):
        return []  # zero-mass atoms were dropped: indices no longer line up
    sizes = np.bincount(np.asarray(atoms.labels), minlength=int(atoms.count))
    bad = np.max(split, axis=1) > report.tol if split.size else np.zeros(0, bool)
    return [int(i) for i in np.flatnonzero(bad & (sizes == 1))]


def _hint(
    report: StabilityReport,
    flow: StopResult | None = None,
    perturb: int = 0,
    atoms: Atoms | None = None,
) -> str:
    if report.stable:
        return ""
    if flow is not None and not bool(flow.converged):
        return (
            f"The flow stopped at max_steps with max speed {float(flow.max_speed):.2e} above "
            "tol: raise max_steps (or dt) so it reaches stationarity before certifying."
        )
    if not report.stationary:
        return (
            f"The refined atoms are not stationary (residual {float(report.residual):.2e} > "
            f"{float(report.grad_tol):.2e}): the cluster tolerance may merge distinct atoms "
            "(pass a smaller cluster_tol), or raise newton_iter."
        )
    verdicts = {"splitting": report.splitting_stable, "transport": report.transport_stable}
    unstable = [name for name, ok in verdicts.items() if not ok]
    tried = f" after {perturb} perturbation(s)" if perturb else ""
    lonely = _lonely_splitting_atoms(report, atoms)
    if lonely and report.transport_stable:
        # A particle flow cannot split an atom made of one particle: kicks do not help.
        return (
            f"Atom(s) {lonely} are splitting-unstable and hold one particle each, which a "
            "particle flow cannot split: flow more particles (larger n), or search with more "
            "atoms (find_critical_point)."
        )
    advice = (
        "kick harder (a larger perturb_scale) or more often"
        if perturb
        else "pass perturb=3 to kick the particles and flow on"
    )
    return (
        f"The flow stalled at a saddle{tried} (unstable {' and '.join(unstable)} directions): "
        f"{advice}, or start from other particles."
    )


def certify(
    model,
    X0,
    *,
    m=None,
    dtype="float64",
    dt: float = 0.1,
    tol: float = 1e-4,
    max_steps: int = 20_000,
    check_every: int = 100,
    method: str = "euler",
    cluster_tol: float | None = None,
    newton_iter: int = 30,
    perturb: int = 0,
    perturb_scale: float = 1e-2,
    key=None,
    progress: bool = False,
) -> Certificate:
    """Flow to stationarity, cluster, Newton-refine and certify stability, in one call.

    **Arguments:**

    - `model`: a `MeanField` whose energy is defined (attention "usa" or "sa").
    - `X0`: (n, d) starting particles on the sphere; `m`: (n,) masses (default uniform).
    - `dtype`: "float64" (default: the whole pipeline runs under `jax.enable_x64`) or
      "float32" (warns: the verdicts rest on eigenvalues near zero).
    - `dt`, `tol`, `max_steps`, `check_every`, `method`, `progress`: the flow
      (`integrate_until`: stops when the max speed <= tol).
    - `cluster_tol`: linking tolerance of the atoms, radians (default
      `default_tolerance(beta)` = min(0.1 / sqrt(beta), 0.2), the library's one default).
    - `newton_iter`: Newton iterations on the atoms (0: none).
    - `perturb`: how many times to kick the particles (each by a random tangent vector of
      norm `perturb_scale` radians, from `key`, default PRNGKey(0)) and flow on when the
      certificate is stationary but unstable (a saddle); 0 (default): report it with a hint.

    **Returns:** a `Certificate`: `.stable`, `.report` (eigenvalues), `.locations`,
    `.masses`, `.atoms`, `.flow`, `.hint` (what to try when not stable).
    """
    name = _check_dtype(dtype)
    perturb = check_int(perturb, "perturb", minimum=0)
    newton_iter = check_int(newton_iter, "newton_iter", minimum=0)
    check_positive_scalar(perturb_scale, "perturb_scale")
    if cluster_tol is not None:
        check_positive_scalar(cluster_tol, "cluster_tol")
    key = jr.PRNGKey(0) if key is None else as_key(key)
    X0, m = model.check_inputs(X0, m, name="X0")  # in the caller's dtype
    with jax.enable_x64(name == "float64"):
        mdl = _cast(model, name)
        X = retract(jnp.asarray(np.asarray(X0), name))  # unit rows in the new dtype
        masses = jnp.asarray(np.asarray(m), name)
        masses = masses / jnp.sum(masses)
        ctol = float(default_tolerance(float(mdl.beta)) if cluster_tol is None else cluster_tol)
        flow_kw = dict(dt=dt, tol=tol, max_steps=max_steps, check_every=check_every)
        for kicks in range(perturb + 1):
            flow = integrate_until(mdl, X, m=masses, method=method, progress=progress, **flow_kw)
            atoms = cluster(flow.final, masses, tol=ctol)
            Xr, ma, report, before, converged, moved = _refine_and_report(
                mdl, atoms.locations, atoms.masses, newton_iter
            )
            saddle = bool(flow.converged) and bool(report.stationary) and not report.stable
            if saddle and report.transport_stable and _lonely_splitting_atoms(report, atoms):
                break  # kicks cannot split a one-particle atom (see _hint)
            if not saddle or kicks == perturb:
                break
            key, sub = jr.split(key)
            kick = project(flow.final, jr.normal(sub, flow.final.shape, flow.final.dtype))
            kick = kick / jnp.maximum(jnp.linalg.norm(kick, axis=1, keepdims=True), 1e-30)
            X = retract(flow.final + perturb_scale * kick)
    return Certificate(
        Xr,
        ma,
        report,
        before,
        converged,
        moved,
        atoms=atoms,
        flow=flow,
        cluster_tol=ctol,
        perturbations=kicks,
        dtype=name,
        hint=_hint(report, flow, kicks, atoms),
    )
