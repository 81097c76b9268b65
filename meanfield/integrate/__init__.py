"""Time integration of the particle flow: steppers, one scan / run-until loop, ensembles
over seeds and beta, sharded runs and the diffrax adapter.

Note: `meanfield.integrate` (the function) shadows this subpackage as an attribute of
`meanfield`; import the other names with `from meanfield.integrate import ...`.
"""

from ._sharded import (
    gather_global,
    initialize_distributed,
    integrate_sharded,
    shard_ensemble,
    sharded_velocity,
)
from ._single import (
    METHODS,
    StopResult,
    Trajectory,
    ensemble,
    integrate,
    integrate_diffrax,
    integrate_until,
    make_step,
    stepper,
    with_beta,
)

__all__ = [
    "METHODS",
    "StopResult",
    "Trajectory",
    "ensemble",
    "gather_global",
    "initialize_distributed",
    "integrate",
    "integrate_diffrax",
    "integrate_sharded",
    "integrate_until",
    "make_step",
    "shard_ensemble",
    "sharded_velocity",
    "stepper",
    "with_beta",
]
