"""Matplotlib figures for meanfield runs. Every function returns the Figure it drew.

matplotlib is imported lazily and the Agg backend is used when no display is set, so these
work on headless machines and in CI.
"""

from __future__ import annotations

import os

import numpy as np


def _plt():
    import matplotlib

    if not os.environ.get("DISPLAY") and matplotlib.get_backend().lower() != "agg":
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def circle_trajectory(trajectory, ax=None, title: str = "Particles on the circle"):
    """Angle of every particle versus time (one line per particle); d = 2 only."""
    plt = _plt()
    xs = np.asarray(trajectory.xs)
    if xs.shape[-1] != 2:
        raise ValueError(f"circle_trajectory needs d = 2 points; got d = {xs.shape[-1]}.")
    ts = np.asarray(trajectory.ts)
    theta = np.arctan2(xs[..., 1], xs[..., 0])
    fig = ax.figure if ax is not None else plt.figure(figsize=(7, 4))
    ax = ax or fig.add_subplot()
    # Plot the unwrapped angle so a particle crossing +-pi does not draw a vertical jump.
    ax.plot(ts, np.unwrap(theta, axis=0), lw=0.7, alpha=0.8)
    ax.set_xlabel("time t")
    ax.set_ylabel("angle theta_i(t) [rad, unwrapped]")
    ax.set_title(title)
    return fig


def sphere_scatter(X, ax=None, title: str = "Particles on S^2", color=None, label=None):
    """3D scatter of points on S^2 with a wireframe sphere."""
    plt = _plt()
    X = np.asarray(X)
    if X.shape[-1] != 3:
        raise ValueError(f"sphere_scatter needs d = 3 points; got d = {X.shape[-1]}.")
    fig = ax.figure if ax is not None else plt.figure(figsize=(5, 5))
    ax = ax or fig.add_subplot(projection="3d")
    u, v = np.mgrid[0 : 2 * np.pi : 30j, 0 : np.pi : 15j]
    ax.plot_wireframe(np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v), color="0.85", lw=0.4)
    ax.scatter(X[:, 0], X[:, 1], X[:, 2], s=8, c=color, label=label, depthshade=False)
    ax.set_box_aspect((1, 1, 1))
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.set_zlabel("x3")
    ax.set_title(title)
    return fig


def energy_curve(ts, energies, ax=None, title: str = "Energy along the flow", ylabel="F_s"):
    """Energy versus time: the staircase of metastable plateaus."""
    plt = _plt()
    fig = ax.figure if ax is not None else plt.figure(figsize=(6, 4))
    ax = ax or fig.add_subplot()
    ax.plot(np.asarray(ts), np.asarray(energies), lw=1.5)
    ax.set_xlabel("time t")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return fig


def cosine_histogram(X, ax=None, bins: int = 50, title: str = "Pairwise cosine similarities"):
    """Histogram of <x_i, x_j> over pairs i < j."""
    plt = _plt()
    X = np.asarray(X)
    G = X @ X.T
    vals = G[np.triu_indices(len(X), k=1)]
    fig = ax.figure if ax is not None else plt.figure(figsize=(6, 4))
    ax = ax or fig.add_subplot()
    ax.hist(vals, bins=bins, range=(-1, 1), density=True, color="C0", alpha=0.8)
    ax.set_xlabel("cosine similarity <x_i, x_j>")
    ax.set_ylabel("density")
    ax.set_title(title)
    return fig


def sweep_curve(betas, values, ax=None, ylabel="", title="", band=None, logx=True, label=None):
    """A quantity versus beta, with an optional (low, high) band (e.g. over seeds)."""
    plt = _plt()
    fig = ax.figure if ax is not None else plt.figure(figsize=(6, 4))
    ax = ax or fig.add_subplot()
    betas = np.asarray(betas)
    ax.plot(betas, np.asarray(values), "o-", label=label)
    if band is not None:
        ax.fill_between(betas, np.asarray(band[0]), np.asarray(band[1]), alpha=0.25)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel("inverse temperature beta")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return fig


def save(fig, path) -> str:
    """Save and close a figure; returns the path."""
    plt = _plt()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)
