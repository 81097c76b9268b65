"""Critical points of the energy F_s restricted to finitely many atoms: residuals,
splitting / transport Hessians, stability verdicts, Newton refinement and search, and the
d = 2 cluster mass bound (arXiv 2601.21366)."""

from ._critical import (
    MASS_BOUND_LIMIT,
    METHODS,
    CriticalPoint,
    StabilityReport,
    concavity_angle,
    find_critical_point,
    global_maximiser,
    is_stable,
    is_strictly_stable,
    mass_bound,
    newton_refine,
    rotation_modes,
    splitting_hessian,
    stability_report,
    stationarity_residual,
    tangent_basis,
    transport_hessian,
)

__all__ = [
    "MASS_BOUND_LIMIT",
    "METHODS",
    "CriticalPoint",
    "StabilityReport",
    "concavity_angle",
    "find_critical_point",
    "global_maximiser",
    "is_stable",
    "is_strictly_stable",
    "mass_bound",
    "newton_refine",
    "rotation_modes",
    "splitting_hessian",
    "stability_report",
    "stationarity_residual",
    "tangent_basis",
    "transport_hessian",
]
