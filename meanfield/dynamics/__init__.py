"""What the particles feel: the mean-field model, its perceptron drift and its energy.

    dx_i/dt = P_{x_i}( s (1/Z_i) sum_j m_j e^{beta <x_i, x_j>} x_j ) + P_{x_i} grad V(x_i)

`MeanField` holds the parameters (beta, sign s, attention "usa" | "sa" | "general", an
optional `Perceptron` or `MLP` drift) and a kernel (`meanfield.kernels`) that computes
the pairwise sums; its `velocity`, `energy` and `first_variation` are the contract the
integrators, critical points and studies use.
"""

from ._authors import authors_draw, perceptron_from_authors
from ._model import ATTENTIONS, MLP, MeanField
from ._perceptron import ACTIVATIONS, Perceptron

__all__ = [
    "ACTIVATIONS",
    "ATTENTIONS",
    "MLP",
    "MeanField",
    "Perceptron",
    "authors_draw",
    "perceptron_from_authors",
]
