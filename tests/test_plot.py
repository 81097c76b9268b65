"""Every plotting function returns a Figure with the expected axes and non-empty artists,
for d = 2 and d = 3 inputs."""

import warnings

import matplotlib

matplotlib.use("Agg")

import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from meanfield import Trajectory, mass_bound, plot  # noqa: E402
from meanfield.critical import MASS_BOUND_LIMIT  # noqa: E402


def _trajectory(d, n=12, saves=9, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(saves, n, d))
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    return Trajectory(jnp.linspace(0.0, 4.0, saves), jnp.asarray(x))


def _artists(ax):
    return len(ax.lines) + len(ax.collections) + len(ax.patches) + len(ax.images)


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_circle_trajectory_one_line_per_particle():
    fig = plot.circle_trajectory(_trajectory(2, n=12))
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert len(ax.lines) == 12 and ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    with pytest.raises(ValueError, match="d = 2"):
        plot.circle_trajectory(_trajectory(3))


def test_sphere_scatter_draws_sphere_and_points():
    fig = plot.sphere_scatter(_trajectory(3).xs[-1])
    ax = fig.axes[0]
    assert ax.name == "3d" and len(ax.collections) >= 2 and ax.get_title()
    with pytest.raises(ValueError, match="d = 3"):
        plot.sphere_scatter(_trajectory(2).xs[-1])


@pytest.mark.parametrize("d", [2, 3])
def test_snapshots_at_chosen_times(d):
    traj = _trajectory(d)
    fig = plot.snapshots(traj, times=[0.0, 2.0, 4.0], title="snap")
    assert len(fig.axes) == 3
    assert [ax.get_title() for ax in fig.axes] == ["t = 0", "t = 2", "t = 4"]
    assert all(_artists(ax) > 0 for ax in fig.axes)
    if d == 3:
        assert all(ax.name == "3d" for ax in fig.axes)


@pytest.mark.parametrize("d", [2, 3])
def test_energy_and_cosines(d):
    traj = _trajectory(d)
    fig = plot.energy_curve(traj.ts, jnp.cumsum(jnp.ones(9)))
    assert len(fig.axes[0].lines) == 1 and fig.axes[0].get_xlabel() == "time t"
    fig = plot.cosine_histogram(traj.xs[0], label="t = 0")
    plot.cosine_histogram(traj.xs[-1], ax=fig.axes[0], label="end")
    assert len(fig.axes) == 1 and len(fig.axes[0].patches) == 100


def test_phase_diagram_has_colour_bar():
    counts = np.random.default_rng(0).integers(1, 6, size=(4, 3, 9))
    fig = plot.phase_diagram(
        np.linspace(0, 8, 9), [0.5, 1, 2, 4], counts, label="clusters", log=True
    )
    assert len(fig.axes) == 2  # the diagram and its colour bar
    ax, bar = fig.axes
    assert len(ax.collections) == 1 and ax.get_yscale() == "log"  # geometric betas
    assert ax.get_xlabel() == "time t" and "beta" in ax.get_ylabel()
    assert bar.get_ylabel() == "clusters"
    # the seed mean is what is drawn
    drawn = np.asarray(ax.collections[0].get_array()).reshape(4, 9)
    np.testing.assert_allclose(drawn, counts.mean(axis=1))


def test_phase_diagram_of_a_mass_in_the_unit_interval_is_not_blank():
    """The user report: masses in (0, 1] used to get one colour (a log norm from 1 to 2)."""
    rng = np.random.default_rng(1)
    mass = rng.uniform(0.1, 1.0, size=(9, 4, 5))
    betas = np.arange(1.0, 10.0)  # linear betas 1..9: a linear axis with plain ticks
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no out-of-range warning for in-range data
        fig = plot.phase_diagram(np.arange(5.0), betas, mass, label="largest mass", vmin=0, vmax=1)
    ax = fig.axes[0]
    assert ax.get_yscale() == "linear"
    mesh = ax.collections[0]
    colours = mesh.cmap(mesh.norm(np.asarray(mesh.get_array()).ravel()))
    assert len(np.unique(colours.round(3), axis=0)) > 20  # 45 cells, many colours
    assert mesh.norm.vmin == 0 and mesh.norm.vmax == 1


def test_phase_diagram_warns_outside_the_colour_range_and_checks_shapes():
    values = np.linspace(0, 2, 12).reshape(3, 4)
    with pytest.warns(UserWarning, match="4 of 12 values lie outside the colour range"):
        plot.phase_diagram(np.arange(4.0), [1.0, 2.0, 3.0], values, vmin=0, vmax=1.3)
    with pytest.warns(UserWarning, match="<= 0"):
        plot.phase_diagram(np.arange(4.0), [1.0, 2.0, 3.0], values, log=True)
    with pytest.raises(ValueError, match="`values` must have shape"):
        plot.phase_diagram(np.arange(5.0), [1.0, 2.0, 3.0], values)
    with pytest.raises(ValueError, match="beta_axis"):
        plot.phase_diagram(np.arange(4.0), [1.0, 2.0, 3.0], values, beta_axis="loglog")
    fig = plot.phase_diagram(np.arange(4.0), [1.0, 2.0, 3.0], values, beta_axis="log")
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["1", "2", "3"]  # plain numbers, not 10^0 mathtext


def test_every_figure_passes_keywords_to_matplotlib():
    traj = _trajectory(2)
    fig = plot.circle_trajectory(traj, color="k")
    assert all(line.get_color() == "k" for line in fig.axes[0].lines)
    fig = plot.energy_curve(traj.ts, jnp.arange(9.0), lw=4)
    assert fig.axes[0].lines[0].get_linewidth() == 4
    fig = plot.phase_diagram(np.arange(3.0), [1.0, 2.0], np.ones((2, 3)), cmap="magma")
    assert fig.axes[0].collections[0].cmap.name == "magma"
    fig = plot.sweep_curve([1, 2, 4], [3, 2, 1], marker="s")
    assert fig.axes[0].lines[0].get_marker() == "s"


def test_largest_mass_with_bound_and_limit():
    betas = [0.5, 1.0, 5.0, 50.0]
    masses = np.full((4, 3), 0.4)
    fig = plot.largest_mass(betas, masses, bound=lambda b: mass_bound(b))
    ax = fig.axes[0]
    ys = [line.get_ydata() for line in ax.lines]
    assert any(np.allclose(y, MASS_BOUND_LIMIT) for y in ys)  # the limit line
    assert len(ax.lines) >= 3 and len(ax.collections) == 3 and ax.get_legend() is not None


def test_entropy_curves_and_panels():
    betas = np.geomspace(0.1, 100, 20)
    H = np.stack([np.linspace(1, 0, 20), np.linspace(1, 0.1, 20)])
    ns = [256, 4096]
    raw = H * np.log(ns)[:, None]  # entropies in nats
    fig = plot.entropy_curves(betas, raw, ns, predicted=[3.0, 4.0], measured=[2.5, 3.5])
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and len(ax.lines) == 6  # 2 curves, 2 laws, 2 dots
    np.testing.assert_allclose(ax.lines[0].get_ydata(), H[0])  # divided by log n here
    assert ax.get_legend().get_title().get_text() == "dashed: law, dot: beta*_n"
    fig = plot.entropy_curves(betas, H, ns, normalised=True)
    assert fig.axes[0].get_legend().get_title().get_text() == ""  # no law, no dot: no key
    np.testing.assert_allclose(fig.axes[0].lines[1].get_ydata(), H[1])
    with pytest.raises(ValueError, match="at most log n"):
        plot.entropy_curves(betas, raw, ns, normalised=True)  # nats passed as normalised
    with pytest.raises(ValueError, match="shape"):
        plot.entropy_curves(betas, raw[:1], ns)
    fig = plot.entropy_panels(
        np.stack([betas] * 4),
        np.stack([H] * 4),
        ns,
        ["a", "b", "c", "d"],
        normalised=True,
        predicted=np.ones((4, 2)),
        measured=np.ones((4, 2)),
    )
    assert sum(ax.get_visible() and ax.axison for ax in fig.axes) == 4
    fig = plot.critical_ratios([256, 4096], {"a": [0.8, 0.9], "b": [1.1, 1.05]})
    assert len(fig.axes[0].lines) == 3


@pytest.mark.parametrize("d", [2, 3])
def test_atoms(d):
    traj = _trajectory(d)
    fig = plot.atoms(traj.xs[-1], traj.xs[-1][:3], [0.5, 0.3, 0.2])
    assert len(fig.axes) == 1 and _artists(fig.axes[0]) >= 3 and fig.axes[0].get_title()


@pytest.mark.parametrize("d", [2, 3])
def test_animation_gif(d, tmp_path):
    path = plot.animate(_trajectory(d, saves=4), tmp_path / f"traj{d}.gif", max_frames=4)
    assert (tmp_path / f"traj{d}.gif").stat().st_size > 1000 and path.endswith(".gif")


def test_sweep_curve_and_save(tmp_path):
    fig = plot.sweep_curve([1, 2, 4], [0.1, 0.5, 0.9], band=([0, 0.4, 0.8], [0.2, 0.6, 1.0]))
    assert len(fig.axes[0].lines) == 1 and len(fig.axes[0].collections) == 1
    assert plot.save(fig, tmp_path / "s.png").endswith("s.png")
    assert (tmp_path / "s.png").stat().st_size > 1000
