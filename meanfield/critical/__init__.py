r"""Critical points of the mean-field energy restricted to atomic measures.

For an atomic measure mu = sum_i m_i delta_{x_i} (atoms x_i on S^{d-1}, m_i > 0) and a
`MeanField` model with sign s and perceptron potential v, the energy restricted to atoms is

    f(x_1..x_k) = F_s[mu] = (s / (2 beta)) sum_{ij} m_i m_j K(x_i, x_j) + (1/2) sum_i m_i v(x_i),

K(x, y) = exp(beta <x, y>) (or exp(beta (<x, y> - 1)) with `shift_kernel=True`), and the
first variation is phi_mu(y) = (s / beta) sum_j m_j K(y, x_j) + v(y) / 2.

**Normalised units.** Internally every quantity is multiplied by lambda = e^{-beta}
(unshifted kernel) or 1 (shifted kernel), so that all exponentials have non-positive
exponents and nothing overflows at large beta: phi~ = lambda phi_mu, f~ = lambda f.
Gradients, Hessians and residuals are returned in the model's units
(those of `model.velocity`: times e^{-beta} again when `rescaled_time=True`);
verdicts only depend on signs and are computed in normalised units.

**Sphere calculus.** For g defined on R^d (here by the same formula), at x in S^{d-1},

    grad_S g(x) = P_x grad g(x),                     P_x = I - x x^T,
    Hess_S g(x) = P_x grad^2 g(x) P_x - <x, grad g(x)> P_x.

(Differentiate g(gamma(t)) twice along the geodesic gamma(t) = cos(t) x + sin(t) xi,
|xi| = 1, xi _|_ x: gamma'' = -x at t = 0, so (g o gamma)'' = xi^T grad^2 g xi -
<x, grad g>.) In tangent coordinates, with an orthonormal basis E_x (d, d-1) of x^perp
(`tangent_basis`, a Householder reflection), the Hessian is the (d-1, d-1) matrix
E^T grad^2 g E - <x, grad g> I.

**Stationarity.** Since d f / d x_i = m_i grad phi_mu(x_i), the Riemannian gradient of f
in the mass-weighted (Wasserstein) metric sum_i m_i |xi_i|^2 is (grad_S phi_mu(x_i))_i,
which is the USA velocity. `stationarity_residual` = max_{i: m_i > 0} |grad_S phi_mu(x_i)|.

**Splitting Hessian.** Splitting atom i into two halves at exp_{x_i}(+-eps xi) changes F by
(m_i / 2) eps^2 xi^T Hess_S phi_mu(x_i) xi + O(eps^4) (the first-order terms cancel). So
splitting stability means Hess_S phi_mu(x_i) <= 0 for every atom with m_i > 0.

**Transport Hessian.** H = Hess f on the product of spheres, block (i, j) in tangent
coordinates: E_i^T (d^2 f / dx_i dx_j) E_j - delta_ij <x_i, d f / dx_i> I. In the
mass-weighted metric the Hessian operator is M^{-1} H, M = diag(m_i I_{d-1}); its
symmetric form (same eigenvalues) is H_w = M^{-1/2} H M^{-1/2}.

**Symmetries.** Without a perceptron F_s is invariant under rotations O(d), so H_w
vanishes on the directions xi_i = A x_i (A skew, d(d-1)/2 generators): no critical point
can be strictly stable in the naive sense. Strictness is then judged on the orthogonal
complement of that orbit (`modulo_rotations`, automatic when there is no perceptron).

For `attention="sa"` the dynamics is not the gradient flow of F_s when a perceptron is
present, but the energy (and the notion of stable critical point) is the same; all
functions here use the energy's gradient, i.e. the USA field, unless `field="model"`
is passed to `stationarity_residual` (the model's own velocity, also for "general").

Modules: `_units` (normalised energy, first variation, residual), `_hessians`,
`_stability` (certificates), `_refine` (Newton, searches), `_mass_bound` (d = 2 bound),
`_certify` (`certify`: flow, cluster, refine and certify in one call).
"""

from ._certify import Certificate, certify, certify_atoms
from ._hessians import rotation_modes, splitting_hessian, tangent_basis, transport_hessian
from ._mass_bound import MASS_BOUND_LIMIT, concavity_angle, global_maximiser, mass_bound
from ._refine import METHODS, CriticalPoint, find_critical_point, newton_refine
from ._stability import StabilityReport, is_stable, is_strictly_stable, stability_report
from ._units import stationarity_residual

__all__ = [
    "MASS_BOUND_LIMIT",
    "METHODS",
    "Certificate",
    "CriticalPoint",
    "StabilityReport",
    "certify",
    "certify_atoms",
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
