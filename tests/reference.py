"""Plain NumPy reference implementations of the formulas in docs/design.md, section 1."""

import numpy as np


def project(X, V):
    return V - np.sum(X * V, axis=-1, keepdims=True) * X


def usa_velocity(X, m, beta, sign=1.0):
    K = np.exp(beta * X @ X.T)
    return sign * project(X, (K * m[None, :]) @ X)


def sa_velocity(X, m, beta, sign=1.0):
    S = beta * X @ X.T + np.log(m)[None, :]
    S = S - S.max(axis=1, keepdims=True)
    P = np.exp(S)
    P /= P.sum(axis=1, keepdims=True)
    return sign * project(X, P @ X)


def energy(X, m, beta, sign=1.0, potential=None):
    K = np.exp(beta * X @ X.T)
    F = sign / (2 * beta) * m @ K @ m
    if potential is not None:
        F += 0.5 * np.sum(m * potential)
    return F


def attention_stats(Q, K, V, beta, log_w):
    """(L, Y): L_i = log sum_j w_j e^{beta <q_i, k_j>}, Y_i = the softmax mean of v_j."""
    S = beta * Q @ K.T + log_w[None, :]
    M = S.max(axis=1, keepdims=True)
    P = np.exp(S - M)
    total = P.sum(axis=1)
    return M[:, 0] + np.log(total), (P @ V) / total[:, None]
