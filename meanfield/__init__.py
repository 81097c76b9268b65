"""meanfield: self-attention as interacting particles on the sphere, in JAX.

The top level holds what a notebook needs; everything else lives in the subpackages,
each with one job (dependency direction, lowest first):

    kernels -> dynamics -> integrate -> atoms -> critical | temperature -> transformer
            -> studies -> plot -> runs

`mf.kernels`, `mf.sphere`, `mf.dynamics`, `mf.atoms`, `mf.critical`, `mf.temperature`,
`mf.transformer`, `mf.plot` and `mf.runs` are namespaces; `mf.integrate` is the function
(its subpackage's other names: `from meanfield.integrate import stepper, shard_ensemble, ...`).
See docs/design.md for the mathematics, the conventions and the layout.
"""

__version__ = "0.1.0"  # before the subpackages: the run environment records it

from . import atoms, critical, dynamics, kernels, plot, runs, sphere, temperature, transformer
from .atoms import Atoms, cluster
from .critical import (
    certify,
    find_critical_point,
    is_stable,
    is_strictly_stable,
    mass_bound,
    stability_report,
    stationarity_residual,
)
from .dynamics import MLP, MeanField, Perceptron
from .integrate import (
    Trajectory,
    ensemble,
    integrate,
    integrate_diffrax,
    integrate_until,
    stepper,
)
from .runs import compare_runs, integrate_checkpointed, load_run, read_checkpoint, save_run
from .sphere import angles_to_circle, exp_map, geodesic_distance, project, retract, uniform_sphere
from .temperature import (
    critical_beta,
    critical_beta_of_particles,
    entropy_curve,
    gap_counts,
    predicted_critical_beta,
    sample_scores,
    softmax_entropy,
)

__all__ = [
    # namespaces
    "atoms",
    "critical",
    "dynamics",
    "kernels",
    "plot",
    "runs",
    "sphere",
    "temperature",
    "transformer",
    # the sphere
    "angles_to_circle",
    "exp_map",
    "geodesic_distance",
    "project",
    "retract",
    "uniform_sphere",
    # the model
    "MLP",
    "MeanField",
    "Perceptron",
    # integration
    "Trajectory",
    "ensemble",
    "integrate",
    "integrate_checkpointed",
    "integrate_diffrax",
    "integrate_until",
    "read_checkpoint",
    "stepper",
    # atoms and critical points
    "Atoms",
    "certify",
    "cluster",
    "find_critical_point",
    "is_stable",
    "is_strictly_stable",
    "mass_bound",
    "stability_report",
    "stationarity_residual",
    # critical temperature of softmax rows
    "critical_beta",
    "critical_beta_of_particles",
    "entropy_curve",
    "gap_counts",
    "predicted_critical_beta",
    "sample_scores",
    "softmax_entropy",
    # saved runs
    "compare_runs",
    "load_run",
    "save_run",
]
