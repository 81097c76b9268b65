"""Critical inverse temperature of softmax rows (docs/design.md, section 3), independent
of the particle model.

After Karakida and Hayase (2026), "A Unified Framework for Critical Scaling of Inverse
Temperature in Self-Attention" (arXiv 2605.12697).

For one attention row with scores s_1..s_n (an array ``(n,)``, or a batch ``(..., n)``; every
function works along the last axis) and an inverse temperature beta >= 0:

    p(beta) = softmax(beta s),      H(beta) = -sum_j p_j log p_j,      p_max = max_j p_j.

Everything is computed from the gaps Delta_j = max(s) - s_j >= 0, which makes it exactly
shift invariant and numerically stable (no exp of a positive number ever appears):

    Z(beta) = sum_j exp(-beta Delta_j) = 1 + sum_{j != argmax} exp(-beta Delta_j)   in [1, n]
    H(beta) = log Z + beta <p, Delta>,        p_max = 1 / Z,
    dH/dbeta = -beta Var_p(s).

Gap counting: N_n(t) = #{j != argmax : Delta_j <= t}, sorted gaps Delta_(1) <= ... <= Delta_(n-1)
of the n - 1 non-maximal scores, and the partition identity

    sum_j exp(-beta Delta_j) = 1 + beta int_0^inf exp(-beta t) N_n(t) dt.

Candidate critical scale ("upper-tail accumulation scale"):

    beta*_n = sup_t log N_n(t) / t = max_{1 <= k <= n-1} log k / Delta_(k).

Implicit scales, found by a safeguarded Newton root solver and differentiable with respect to
the scores by the implicit function theorem: the beta where p_max = 1/2 (or any level), and the
beta where H = theta log n.

Score families with their leading-order laws (`predicted_critical_beta`) and a sampler
(`sample_scores`), and the bridge to particle systems (`score_rows`,
`critical_beta_of_particles`).

Masks: every function of score rows takes ``where=`` (a boolean array broadcastable to the
scores) and also reads -inf scores as masked. Masked keys are left out exactly as if the row
were shorter (values, and gradients: masked keys get gradient 0 and never a NaN, by the
"double where": the cores replace masked entries by safe finite values before any
arithmetic and select them out afterwards). A row then has m live keys; quantities that
need m >= 1 (entropy, p_max, curves) or m >= 2 (gaps, critical scales, implicit roots) are
NaN on rows with fewer (counts are 0: no competitor). NaN and +inf at live keys still raise.

Modules: `_softmax` (statistics and curves), `_sort` (host sort), `_gaps` (gap counts,
beta*_n), `_roots` (implicit scales), `_families` (laws and sampler), `_particles` (rows of
particle systems).

Conventions: float32 unless the scores are float64 (x64 enabled); beta is a traced value
(no recompilation per beta); bad concrete input raises ``ValueError`` naming the argument
before any computation; traced input is checked with ``equinox.error_if``.
"""

from ._families import (
    FAMILIES,
    endpoint_law_constant,
    family_params,
    predicted_critical_beta,
    sample_scores,
)
from ._gaps import critical_beta, gap_counts, soft_critical_beta, soft_gap_counts, sorted_gaps
from ._particles import critical_beta_of_particles, score_rows
from ._roots import beta_at_entropy_fraction, beta_at_pmax, beta_at_pmax_half
from ._softmax import (
    SoftmaxCurves,
    effective_support,
    entropy_curve,
    entropy_derivative,
    log_partition,
    p_max,
    participation,
    softmax_curves,
    softmax_entropy,
    softmax_probs,
)

__all__ = [
    "FAMILIES",
    "SoftmaxCurves",
    "beta_at_entropy_fraction",
    "beta_at_pmax",
    "beta_at_pmax_half",
    "critical_beta",
    "critical_beta_of_particles",
    "effective_support",
    "endpoint_law_constant",
    "entropy_curve",
    "entropy_derivative",
    "family_params",
    "gap_counts",
    "log_partition",
    "p_max",
    "participation",
    "predicted_critical_beta",
    "sample_scores",
    "score_rows",
    "soft_critical_beta",
    "soft_gap_counts",
    "softmax_curves",
    "softmax_entropy",
    "softmax_probs",
    "sorted_gaps",
]
