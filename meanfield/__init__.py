"""meanfield: self-attention as interacting particles on the sphere, in JAX."""

from . import plot
from ._dynamics import MLP, MeanField
from ._energy import log_interaction
from ._integrate import (
    StopResult,
    Trajectory,
    ensemble,
    integrate,
    integrate_diffrax,
    integrate_until,
    stepper,
    with_beta,
)
from ._kernels import attention_stats, attention_stats_dense, attention_stats_tiled
from ._perceptron import ACTIVATIONS, Perceptron
from ._sphere import (
    angles_to_circle,
    circle_angles,
    exp_map,
    geodesic,
    geodesic_distance,
    log_map,
    project,
    retract,
    uniform_sphere,
)

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "MeanField",
    "Perceptron",
    "StopResult",
    "Trajectory",
    "angles_to_circle",
    "attention_stats",
    "attention_stats_dense",
    "attention_stats_tiled",
    "circle_angles",
    "ensemble",
    "exp_map",
    "geodesic",
    "geodesic_distance",
    "integrate",
    "integrate_diffrax",
    "integrate_until",
    "log_interaction",
    "log_map",
    "plot",
    "project",
    "retract",
    "stepper",
    "uniform_sphere",
    "with_beta",
]
