"""Time integration of the particle flow: steppers, one scan / run-until loop, ensembles
over seeds and beta, sharded runs and the diffrax adapter.

Note: `meanfield.integrate` (the function) shadows this subpackage as an attribute of
`meanfield`; import the other names with `from meanfield.integrate import ...`.
"""

from ._diffrax import integrate_diffrax
from ._ensemble import ensemble
from ._results import StopResult, Trajectory
from ._sharded import (
    gather_global,
    initialize_distributed,
    integrate_sharded,
    shard_ensemble,
    sharded_velocity,
)
from ._single import field_of, integrate, integrate_until, stepper, with_beta
from ._steps import METHODS, make_step, run_until, scan_saves

__all__ = [
    "METHODS",
    "StopResult",
    "Trajectory",
    "ensemble",
    "field_of",
    "gather_global",
    "initialize_distributed",
    "integrate",
    "integrate_diffrax",
    "integrate_sharded",
    "integrate_until",
    "make_step",
    "run_until",
    "scan_saves",
    "shard_ensemble",
    "sharded_velocity",
    "stepper",
    "with_beta",
]
