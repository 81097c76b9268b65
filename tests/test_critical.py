"""Critical points: residuals, Hessians vs finite differences, verdicts, Newton, the paper's bounds.

Notation: phi_mu(y) = (s / beta) sum_j m_j e^{beta <y, x_j>} + v(y)/2 and
f(x_1..x_k) = F_s[sum m_i delta_{x_i}]. On S^1, with x_j = (cos t_j, sin t_j), the second
derivative of e^{beta cos(theta - t)} in theta is e^{beta c}(beta s^2 - c) with
c = cos(theta - t), s = sin(theta - t); it is negative exactly for |theta - t| below the
concavity angle of the kernel.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import meanfield as mf
from meanfield.atoms import cluster
from meanfield.critical._critical import (
    MASS_BOUND_LIMIT,
    concavity_angle,
    find_critical_point,
    global_maximiser,
    mass_bound,
    newton_refine,
    splitting_hessian,
    stability_report,
    stationarity_residual,
    tangent_basis,
    transport_hessian,
)


def polygon(k, offset=0.3):
    return mf.angles_to_circle(offset + 2 * jnp.pi * jnp.arange(k) / k)


SIMPLEX_3D = jnp.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1.0]]) / jnp.sqrt(3.0)


def circle_splitting(k, beta, sign):
    """Closed form of the splitting Hessian at every atom of the equal-mass k-gon (d = 2)."""
    u = 2 * np.pi * np.arange(k) / k
    c, s = np.cos(u), np.sin(u)
    return sign * np.mean(np.exp(beta * c) * (beta * s**2 - c))


# ----------------------------------------------------------------------------- known points


def test_single_dirac_attractive_is_strictly_stable():
    """s = +1, no perceptron, mu = delta_x: phi(y) = e^{beta <y, x>} / beta is maximal at
    y = x with Hess_S phi(x) = -e^{beta} I (splitting-stable), and f(x) = e^{beta}/(2 beta)
    is constant (transport Hessian = 0, all of it along rotations). So it is strictly
    stable modulo rotations; it is the global maximum of F_+ (K <= e^beta)."""
    model = mf.MeanField(2.0, sign=1)
    X, m = jnp.array([[0.0, 0.6, 0.8]]), jnp.ones(1)
    rep = stability_report(model, X, m)
    assert rep.residual < 1e-14
    np.testing.assert_allclose(rep.splitting_eigenvalues, -np.exp(2.0), rtol=1e-12)
    assert rep.symmetry_dim == 2 and rep.transport_eigenvalues.size == 0
    assert rep.stable and rep.strictly_stable


@pytest.mark.parametrize("sign", [1, -1])
def test_antipodal_pair(sign):
    """x_2 = -x_1, masses 1/2: phi(y) = s cosh(beta <y, x_1>) / beta, so the splitting Hessian
    is -s sinh(beta) I at both atoms. f depends only on <x_1, x_2>, through
    s e^{beta <x_1, x_2>} / (4 beta), and <x_1, x_2> = -1 is its minimum: off the rotation
    orbit the transport Hessian has the sign of s. So neither sign gives a stable point:
    s = +1 is splitting-stable but transport-unstable (the atoms want to merge),
    s = -1 is transport-stable but splitting-unstable (atoms want to spread)."""
    beta = 2.0
    model = mf.MeanField(beta, sign=sign)
    X = jnp.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    rep = stability_report(model, X)
    assert rep.residual < 1e-13 and rep.stationary
    np.testing.assert_allclose(rep.splitting_eigenvalues, -sign * np.sinh(beta), rtol=1e-12)
    assert np.all(sign * rep.transport_eigenvalues > 0)
    assert not rep.stable and not rep.strictly_stable
    assert rep.splitting_stable == (sign == 1) and rep.transport_stable == (sign == -1)


@pytest.mark.parametrize("k", [3, 4, 5])
@pytest.mark.parametrize("sign", [1, -1])
def test_regular_polygons(k, sign):
    """Equal-mass regular k-gons on S^1 are stationary by symmetry. The splitting Hessian
    is the closed form `circle_splitting`. In angles, f = sum_{ij} g(t_i - t_j) with
    g(u) = s e^{beta cos u} / (2 beta k^2), so d^2 f along delta is
    sum_{i != j} g''(t_i - t_j)(delta_i - delta_j)^2. When every pairwise angle exceeds the
    concavity angle (2 pi / k > theta_c(beta = 1) = 0.905), g'' has the sign of s for all
    pairs, so off the rotation orbit (delta constant) the transport Hessian has the sign of
    s: for s = +1 the polygon is unstable, for s = -1 transport-stable but (self term
    e^{beta}/k dominates) splitting-unstable."""
    beta = 1.0
    assert 2 * np.pi / k > float(concavity_angle(beta))
    rep = stability_report(mf.MeanField(beta, sign=sign), polygon(k))
    assert rep.residual < 1e-13
    np.testing.assert_allclose(
        rep.splitting_eigenvalues.ravel(), circle_splitting(k, beta, sign), rtol=1e-12
    )
    assert rep.symmetry_dim == 1
    assert np.all(sign * rep.transport_eigenvalues > 0)
    assert not rep.stable
    if sign == -1:
        assert rep.transport_stable and not rep.splitting_stable


def test_regular_simplex_repulsive_is_splitting_unstable():
    """Regular simplex (k = d + 1 = 4 on S^2), s = -1, equal masses: stationary by symmetry.
    Hess_S phi(x_i)[xi, xi] = sum_j m_j e^{beta c_ij}(c_ij - beta <xi, x_j>^2); its trace is
    (m e^{beta}(d-1) - 3 m e^{-beta/3}((d-1)/3 + beta (1 - 1/9))) > 0 at beta = 2, and by the
    symmetry of the simplex (its stabiliser acts irreducibly on x_i^perp) the Hessian is a
    multiple of I: positive definite, so splitting increases F: unstable."""
    beta, d = 2.0, 3
    rep = stability_report(mf.MeanField(beta, sign=-1), SIMPLEX_3D)
    assert rep.residual < 1e-13
    trace = 0.25 * (np.exp(beta) * (d - 1) - 3 * np.exp(-beta / 3) * (2 / 3 + beta * 8 / 9))
    np.testing.assert_allclose(rep.splitting_eigenvalues, trace / (d - 1), rtol=1e-12)
    assert not rep.stable and rep.symmetry_dim == 3


def test_random_configuration_is_not_stationary(getkey):
    p = mf.Perceptron.random(getkey(), 3, activation="gelu")
    model = mf.MeanField(2.0, sign=-1, perceptron=p)
    X = mf.uniform_sphere(getkey(), 6, 3)
    res = float(stationarity_residual(model, X))
    np.testing.assert_allclose(res, float(jnp.max(jnp.linalg.norm(model.velocity(X), axis=1))))
    rep = stability_report(model, X)
    assert res > 1e-2 and not rep.stationary and not rep.stable


def test_residual_field_options_and_units(getkey):
    p = mf.Perceptron.random(getkey(), 3, activation="gelu")
    X = mf.uniform_sphere(getkey(), 6, 3)
    usa = mf.MeanField(3.0, sign=-1, perceptron=p)
    sa = mf.MeanField(3.0, sign=-1, attention="sa", perceptron=p)
    np.testing.assert_allclose(stationarity_residual(sa, X), stationarity_residual(usa, X))
    v_sa = jnp.max(jnp.linalg.norm(sa.velocity(X), axis=1))
    np.testing.assert_allclose(stationarity_residual(sa, X, field="model"), v_sa)
    for kw in (dict(shift_kernel=True), dict(rescaled_time=True)):
        mdl = mf.MeanField(3.0, sign=-1, perceptron=p, **kw)
        v = jnp.max(jnp.linalg.norm(mdl.velocity(X), axis=1))
        np.testing.assert_allclose(stationarity_residual(mdl, X), v, rtol=1e-12)
    gen = mf.MeanField(3.0, attention="general")
    with pytest.raises(ValueError, match="no energy"):
        stationarity_residual(gen, X)


# ----------------------------------------------------------------------------- Hessians


@pytest.fixture
def smooth_case(getkey):
    p = mf.Perceptron.random(getkey(), 3, activation="gelu", bias_scale=0.3)
    model = mf.MeanField(1.5, sign=-1, perceptron=p)
    X = mf.uniform_sphere(getkey(), 4, 3)
    m = jnp.array([0.1, 0.2, 0.3, 0.4])
    return model, X, m


def test_tangent_basis_is_orthonormal(getkey):
    for x in mf.uniform_sphere(getkey(), 5, 4):
        E = tangent_basis(x)
        np.testing.assert_allclose(E.T @ E, np.eye(3), atol=1e-14)
        np.testing.assert_allclose(E.T @ x, 0, atol=1e-14)


def test_splitting_hessian_matches_finite_differences(smooth_case, getkey):
    model, X, m = smooth_case
    H = splitting_hessian(model, X, m)
    h = 1e-4
    for i in range(X.shape[0]):
        E = tangent_basis(X[i])
        xi = E @ jax.random.normal(getkey(), (2,))
        Y = jnp.stack([mf.exp_map(X[i], t * xi) for t in (-h, 0.0, h)])
        phi = model.first_variation(Y, X, m)
        fd = (phi[0] - 2 * phi[1] + phi[2]) / h**2  # exact second derivative along a geodesic
        np.testing.assert_allclose(xi @ E @ H[i] @ E.T @ xi, fd, rtol=1e-5)


def test_transport_hessian_matches_finite_differences(smooth_case, getkey):
    model, X, m = smooth_case
    k = X.shape[0]
    Hw = transport_hessian(model, X, m)
    H = transport_hessian(model, X, m, weighted=False)
    sq = np.repeat(np.sqrt(np.asarray(m)), 2)
    np.testing.assert_allclose(Hw, H / np.outer(sq, sq), rtol=1e-12)
    E = jax.vmap(tangent_basis)(X)
    h = 1e-4
    for _ in range(3):
        c = jax.random.normal(getkey(), (k, 2))
        V = jnp.einsum("iap,ip->ia", E, c)
        F = [model.energy(mf.exp_map(X, t * V), m) for t in (-h, 0.0, h)]
        fd = (F[0] - 2 * F[1] + F[2]) / h**2
        np.testing.assert_allclose(c.reshape(-1) @ H @ c.reshape(-1), fd, rtol=1e-5)


# ----------------------------------------------------------------------------- Newton


def test_newton_reaches_1e_10_from_a_perturbed_critical_point(getkey):
    """A polygon is a (non-degenerate mod rotation) critical point: perturb, refine, return."""
    model = mf.MeanField(1.0, sign=1)
    X = polygon(5)
    Xp = mf.retract(X + 1e-2 * jax.random.normal(getkey(), X.shape))
    assert float(stationarity_residual(model, Xp)) > 1e-3
    cp = newton_refine(model, Xp)
    assert float(cp.residual) <= 1e-10 and bool(cp.converged)
    G = np.asarray(cp.X @ cp.X.T)  # still a regular pentagon
    np.testing.assert_allclose(np.sort(G, axis=1), np.sort(np.asarray(X @ X.T), axis=1), atol=1e-9)


@pytest.mark.parametrize(
    "method",
    [
        pytest.param("ascent", marks=pytest.mark.slow),
        pytest.param("adam", marks=pytest.mark.slow),
        "lbfgs",
        "saddle",
    ],
)
def test_optimisers_find_critical_points(method, getkey):
    """Every search ends (after Newton) at residual <= 1e-10; the ascent methods at a stable
    point. Repulsive with a perceptron on S^1, shifted kernel (the paper's convention)."""
    p = mf.Perceptron(
        mf.angles_to_circle(jnp.array([0.2, 2.5])), jnp.zeros(2), jnp.array([1.0, -0.7]), "gelu"
    )
    model = mf.MeanField(5.0, sign=-1, perceptron=p, shift_kernel=True)
    X0 = polygon(6, offset=0.1)
    cp = find_critical_point(model, X0, method=method, steps=200)
    assert float(cp.residual) <= 1e-10
    if method != "saddle":
        assert stability_report(model, cp.X, cp.m).stable


def test_saddle_search_finds_a_saddle():
    """s = +1, no perceptron, 3 atoms near an equilateral triangle: minimising |grad|^2 and
    Newton converge to the triangle, a strict saddle (transport Hessian > 0 off rotations)."""
    model = mf.MeanField(1.0, sign=1)
    X0 = mf.angles_to_circle(jnp.array([0.0, 2.0, 4.2]))
    cp = find_critical_point(model, X0, method="saddle", steps=100)
    rep = stability_report(model, cp.X, cp.m)
    assert rep.stationary and not rep.stable and np.all(rep.transport_eigenvalues > 0)
    G = np.asarray(cp.X @ cp.X.T)
    np.testing.assert_allclose(G[~np.eye(3, dtype=bool)], -0.5, atol=1e-9)


@pytest.mark.slow
def test_optimise_masses_on_the_simplex(getkey):
    """Replicator ascent on masses: at the end phi_mu is (nearly) constant on the support."""
    p = mf.Perceptron.random(getkey(), 2, activation="relu")
    model = mf.MeanField(3.0, sign=-1, perceptron=p, shift_kernel=True)
    cp = find_critical_point(
        model, polygon(6), method="ascent", steps=2000, learning_rate=0.2, optimize_masses=True
    )
    assert float(cp.residual) <= 1e-10
    phi = np.asarray(model.first_variation(cp.X, cp.X, cp.m))
    assert np.ptp(phi) < 1e-3 * np.abs(phi).max()


# ----------------------------------------------------------------------------- paper


def test_mass_bound_limit_and_monotonicity(getkey):
    np.testing.assert_allclose(MASS_BOUND_LIMIT, 0.5742, atol=1e-4)
    np.testing.assert_allclose(mass_bound(800.0), MASS_BOUND_LIMIT, rtol=1e-14)
    np.testing.assert_allclose(mass_bound(3.0), MASS_BOUND_LIMIT, rtol=1e-14)  # C = 0: constant
    p = mf.Perceptron.random(getkey(), 2)
    C = float(p.lipschitz_constant())
    np.testing.assert_allclose(C, 2 * np.sum(np.abs(p.omega)))  # unit a_k
    betas = [0.5, 1, 3, 10, 30]
    vals = [mass_bound(b, p) for b in betas]
    assert np.all(np.diff(vals) < 0) and vals[-1] > MASS_BOUND_LIMIT
    np.testing.assert_allclose(mass_bound(200.0, p), MASS_BOUND_LIMIT, rtol=1e-6)
    b = 3.0
    direct = (2 * np.exp(b - 1.5) + C) / (2 * np.exp(b - 1.5) + 0.375 * np.exp(b - 0.125))
    np.testing.assert_allclose(mass_bound(b, p), direct, rtol=1e-14)
    np.testing.assert_allclose(mass_bound(b, p, shift_kernel=True), mass_bound(1e-9, p), rtol=1e-6)
    with pytest.raises(ValueError, match="beta"):
        mass_bound(0.0)


@pytest.mark.parametrize("beta", [0.01, 0.3, 1.0, 7.0, 50.0])
def test_concavity_angle_is_where_the_kernel_second_derivative_changes_sign(beta):
    tc = float(concavity_angle(beta))
    K2 = jax.grad(jax.grad(lambda t: jnp.exp(beta * jnp.cos(t))))
    assert float(K2(0.999 * tc)) < 0 < float(K2(1.001 * tc))
    np.testing.assert_allclose(np.cos(tc), (np.sqrt(1 + 4 * beta**2) - 1) / (2 * beta), rtol=1e-9)


@pytest.mark.slow
def test_global_maximiser_is_the_dirac_at_argmax_v(getkey):
    p = mf.Perceptron.random(getkey(), 3, activation="relu")
    model = mf.MeanField(2.0, sign=1, perceptron=p)
    gm = global_maximiser(model, getkey())
    assert float(gm.residual) <= 1e-10
    Y = mf.uniform_sphere(getkey(), 4000, 3)
    assert float(p.potential(gm.X)[0]) >= float(jnp.max(p.potential(Y)))
    rep = stability_report(model, gm.X, gm.m)
    assert rep.stable
    # F at the maximiser beats F at random measures and random Diracs
    F = float(model.energy(gm.X, gm.m))
    assert float(model.energy(Y[:1], jnp.ones(1))) <= F
    assert float(model.energy(Y[:50])) <= F
    with pytest.raises(ValueError, match="s = \\+1"):
        global_maximiser(mf.MeanField(2.0, sign=-1))


# ----------------------------------------------------------------------------- experiments


def flow(model, X, steps, dt=0.1):
    return mf.integrate(model, X, dt=dt, steps=steps).final


def paper_model(beta=5.0, activation="gelu"):
    a = mf.angles_to_circle(jnp.array([0.4, 2.1]))
    p = mf.Perceptron(a, jnp.zeros(2), jnp.array([0.9, -1.3]), activation)
    return mf.MeanField(beta, sign=-1, perceptron=p, shift_kernel=True)


@pytest.mark.slow
def test_flow_ends_at_a_certified_stable_point_repulsive_with_perceptron(getkey):
    """Repulsive d = 2 with perceptron (shifted kernel, beta = 5): the flow from uniform data
    clusters into atoms; Newton-refined, they are certified stable; every cluster obeys
    the mass bound (the kernel-only limit 0.5742 here, see mass_bound's docstring) and
    has diameter below 1/(2 sqrt(beta)). Perturb and flow: it returns."""
    model = paper_model()
    X = flow(model, mf.uniform_sphere(getkey(), 200, 2), 3000)
    atoms = cluster(X, tol=0.05)
    assert 2 <= int(atoms.count) <= 8
    assert float(atoms.max_diameter) < 1 / (2 * np.sqrt(5.0))
    assert float(atoms.largest_mass) < MASS_BOUND_LIMIT
    cp = newton_refine(model, atoms.locations, atoms.masses)
    assert float(cp.residual) <= 1e-10
    rep = stability_report(model, cp.X, cp.m)
    assert rep.strictly_stable
    # perturbation experiment: split each atom into 10 particles displaced by ~0.05 rad
    reps = 10
    Xp = jnp.repeat(cp.X, reps, axis=0)
    mp = jnp.repeat(cp.m, reps) / reps
    Xp = mf.retract(Xp + 0.05 * jax.random.normal(getkey(), Xp.shape))
    back = mf.integrate(model, Xp, m=mp, dt=0.1, steps=2000).final
    after = cluster(back, mp, tol=0.05)
    assert int(after.count) == int(atoms.count)
    np.testing.assert_allclose(after.masses, cp.m, atol=1e-12)
    assert float(jnp.max(jnp.abs(after.locations - cp.X))) < 1e-3


def test_strict_saddle_is_left_by_the_flow(getkey):
    """s = +1 antipodal pair (transport-unstable, see test_antipodal_pair): particles
    perturbed off it by 1e-3 flow away and merge into one atom."""
    model = mf.MeanField(1.0, sign=1)
    X = jnp.repeat(jnp.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]]), 10, axis=0)
    X = mf.retract(X + 1e-3 * jax.random.normal(getkey(), X.shape))
    end = flow(model, X, 3000)
    assert int(cluster(end, tol=0.05).count) == 1
    # ... while exactly at the saddle, it stays
    still = flow(model, jnp.repeat(jnp.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]]), 10, 0), 100)
    assert int(cluster(still, tol=0.05).count) == 2


def test_attractive_flow_ends_in_one_certified_atom(getkey):
    model = mf.MeanField(1.0, sign=1)
    X = flow(model, mf.uniform_sphere(getkey(), 64, 3), 1500, dt=0.2)
    atoms = cluster(X, tol=0.05)
    assert int(atoms.count) == 1
    rep = stability_report(model, atoms.locations, atoms.masses)
    assert rep.stable and rep.strictly_stable


@pytest.mark.slow
def test_linear_activation_has_a_non_atomic_stationary_measure():
    """Linear activation on S^1, a = (e_1, e_2), omega = (w, -w), b = 0: v = w cos(2 theta).
    With s = -1 and density rho = (1 + eps cos 2 theta) / (2 pi),
    int e^{beta cos(theta - t)} rho(t) dt = I_0(beta) + eps I_2(beta) cos 2 theta, so
    phi_mu = -(I_0 + eps I_2 cos 2 theta)/beta + (w/2) cos 2 theta is constant iff
    eps = beta w / (2 I_2(beta)): a spread stationary measure (the global maximiser, as
    F_- is strictly concave in mu). Its n-point periodic trapezoid discretisation is
    stationary to spectral accuracy, and has no atoms."""
    from scipy.special import iv

    beta, w, n = 1.0, 0.1, 64
    eps = beta * w / (2 * iv(2, beta))
    assert 0 < eps < 1
    p = mf.Perceptron(jnp.eye(2), jnp.zeros(2), jnp.array([w, -w]), "linear")
    model = mf.MeanField(beta, sign=-1, perceptron=p)
    th = 2 * jnp.pi * jnp.arange(n) / n
    X = mf.angles_to_circle(th)
    m = (1 + eps * jnp.cos(2 * th)) / n
    m = m / m.sum()
    assert float(stationarity_residual(model, X, m)) < 1e-13
    assert int(cluster(X, m, tol=0.05).count) == n
    # the same model with relu / gelu drives the particles into atoms
    for act in ("relu", "gelu"):
        pa = mf.Perceptron(jnp.eye(2), jnp.zeros(2), jnp.array([3.0, -3.0]), act)
        mdl = mf.MeanField(5.0, sign=-1, perceptron=pa, shift_kernel=True)
        end = flow(mdl, X, 3000)
        assert int(cluster(end, m, tol=0.05).count) <= 8
    # ... whereas the linear flow from uniform stays spread
    end = flow(model, X, 3000)
    assert int(cluster(end, m, tol=0.05).count) == n
