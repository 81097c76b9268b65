"""`meanfield critical`: flow to stationarity, cluster into atoms, Newton-refine and certify
them in float64; and the localisation study (`--localisation`).
"""

from __future__ import annotations

import math
from pathlib import Path

import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ... import plot
from ...atoms import cluster
from ...critical import MASS_BOUND_LIMIT, certify_atoms, mass_bound
from ...integrate import integrate_until
from ...sphere import uniform_sphere
from ...studies.localisation import run_study
from .._config import SCHEMAS, ConfigError
from .._progress import Progress
from .._run import load_run
from .._workflow import _dtype, _save_fig, build_model, cluster_tolerance


def certify_atoms_arrays(model, locations, masses, *, newton_iter: int = 30):
    """`critical.certify_atoms` in float64 as (results, arrays): the certificate's numbers
    and the arrays refined (k, d), splitting_eigenvalues (k, d-1), transport_eigenvalues."""
    cert = certify_atoms(model, locations, masses, newton_iter=newton_iter)
    arrays = {
        "refined": cert.locations,
        "splitting_eigenvalues": np.asarray(cert.report.splitting_eigenvalues),
        "transport_eigenvalues": np.asarray(cert.report.transport_eigenvalues),
    }
    return cert.as_dict(), arrays


def _critical_start(cfg):
    """(model, config used for the model, X) for critical: a saved run's final state or uniform."""

    if cfg["from_run"]:
        run = load_run(cfg["from_run"])
        if run.command != "simulate":
            raise ConfigError(f"from_run={cfg['from_run']}: a {run.command} run, need simulate")
        mcfg = {**cfg, **{k: run.config[k] for k in SCHEMAS["simulate"] if k in run.config}}
        _, kp = jr.split(jr.PRNGKey(mcfg["seed"]))
        model = build_model(mcfg, kp)
        X = np.asarray(run.arrays["xs"][-1], dtype=np.dtype(_dtype(mcfg)))
        return model, mcfg, X
    kx, kp = jr.split(jr.PRNGKey(cfg["seed"]))
    return build_model(cfg, kp), cfg, uniform_sphere(kx, cfg["n"], cfg["d"], dtype=_dtype(cfg))


def run_critical(cfg: dict, out: Path, quiet: bool = False):
    """Flow to stationarity, cluster into atoms, Newton-refine and certify (float64)."""
    if cfg["mode"] == "localisation":
        return _run_localisation(cfg, out, quiet)

    model, mcfg, X0 = _critical_start(cfg)
    res = integrate_until(
        model,
        jnp.asarray(X0),
        dt=cfg["dt"],
        tol=cfg["speed_tol"],
        max_steps=cfg["max_steps"],
        check_every=cfg["check_every"],
        progress=not quiet,  # live steps, t and max speed on stderr
    )
    beta = float(mcfg["beta"])
    tol = cluster_tolerance(cfg, beta)
    atoms = cluster(res.final, tol=tol)
    with Progress(1, "certify atoms (float64)", quiet=quiet) as bar:
        cert, cert_arrays = certify_atoms_arrays(
            model, atoms.locations, atoms.masses, newton_iter=cfg["newton_iter"]
        )
        bar.update()
    d, sign = res.final.shape[1], float(mcfg["sign"])
    results = {
        "d": int(d),
        "beta": beta,
        "flow_steps": int(res.steps),
        "flow_converged": bool(res.converged),
        "max_speed": float(res.max_speed),
        "cluster_tol": tol,
        "largest_mass": float(atoms.largest_mass),
        "max_diameter": float(atoms.max_diameter),
        **cert,
    }
    if d == 2 and sign == -1:
        bound = mass_bound(beta, model.perceptron, shift_kernel=bool(mcfg["shift_kernel"]))
        results.update(
            mass_bound=float(bound),
            mass_bound_limit=MASS_BOUND_LIMIT,
            diameter_limit=1 / (2 * math.sqrt(beta)),
            below_mass_bound=bool(float(atoms.largest_mass) <= bound),
        )
    arrays = {"x": res.final, "locations": atoms.locations, "masses": atoms.masses, **cert_arrays}
    files: list[str] = []
    if cfg["plots"] and d in (2, 3):
        verdict = (
            "strictly stable"
            if cert["strictly_stable"]
            else ("stable" if cert["stable"] else "not certified stable")
        )
        fig = plot.atoms(
            res.final,
            cert_arrays["refined"],
            cert["masses"],
            title=f"{cert['atoms']} atoms, {verdict} (residual {cert['residual']:.1e})",
        )
        _save_fig(fig, out, "atoms.png", files)
    results["files"] = files
    return arrays, results


def _run_localisation(cfg: dict, out: Path, quiet: bool):

    study = run_study(
        out,
        dims=tuple(cfg["dims"]),
        betas=tuple(cfg["betas"]),
        seeds=cfg["seeds"],
        n=cfg["n"],
        conventions=(cfg["shift_kernel"],),
        max_steps=cfg["max_steps"],
        check_every=cfg["check_every"],
        key=jr.PRNGKey(cfg["seed"]),
        verbose=not quiet,
        perceptron=cfg["perceptron"],
    )
    recs = study["records"]
    arrays = {
        k: np.asarray([r[k] for r in recs])
        for k in ("beta", "d", "seed", "atoms", "largest_mass", "mass_bound")
    }
    results = {
        "summary": study["summary"],
        "files": ["localisation_study.json", "localisation_study.md", "localisation_study.png"],
    }
    return arrays, results
