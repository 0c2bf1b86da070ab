"""Closed-form identities of the path, the moves and the inner estimator."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import multivariate_normal

from numpyro_transport import TransportConfig, drift, moves, targets
from numpyro_transport.path import backward_logpdf, gaussian_logpdf, linear_interpolant
from numpyro_transport.reference import from_moments
from numpyro_transport.sweep import run_sweep

# Compiled whole: op by op, each estimator call compiles dozens of small programs.
draw = jax.jit(drift.draw, static_argnums=(0, 5))
estimate = jax.jit(drift.estimate, static_argnums=(5,))


def test_backward_kernels_compose():
    """E5: N((λ'/λ'')·, …) ∘ N((λ/λ')·, …) = N((λ/λ'')·, λ(1 − λ/λ'')I), checked in 1-D."""
    lam, lam1, lam2 = 0.7, 2.0, 5.5
    y2 = jnp.array([1.3])
    grid = jnp.linspace(-15, 15, 20001)[:, None]
    y0 = jnp.array([0.4])
    integrand = jnp.exp(
        backward_logpdf(grid, y2, lam1, lam2) + backward_logpdf(y0, grid, lam, lam1)
    )
    composed = jnp.trapezoid(integrand, grid[:, 0])
    direct = jnp.exp(backward_logpdf(y0, y2, lam, lam2))
    np.testing.assert_allclose(composed, direct, rtol=1e-4)


def test_backward_kernel_at_zero_is_point_mass():
    assert backward_logpdf(jnp.zeros(3), jnp.ones(3), 0.0, 2.0) == 0.0


def test_linear_interpolant_map():
    """λ = (t/(1−t))² and X_t = α² Y/β."""
    t, x_t = linear_interpolant(jnp.array([[2.0, -1.0]]), jnp.array([4.0]))
    np.testing.assert_allclose(t, 2.0 / 3.0, rtol=1e-6)
    np.testing.assert_allclose(x_t, (1 / 9) / (2 / 3) * np.array([[2.0, -1.0]]), rtol=1e-6)


def _summary(key, k=6, d=4, cov_scale=0.7, iso_var=0.2):
    """One particle's drift estimate, with a shrunk covariance s·Ĉ + v·I."""
    k1, k2, k3 = jax.random.split(key, 3)
    points = jax.random.normal(k1, (k, d))
    weights = jax.nn.softmax(jax.random.normal(k2, (k,)))
    mean = jax.random.normal(k3, (d,))
    return drift.DriftEstimate(
        mean, points, weights, jnp.asarray(3.0), jnp.asarray(cov_scale), jnp.asarray(iso_var)
    )


@pytest.mark.parametrize("k", [3, 6])  # K < d: the K×K Woodbury form; K > d: the d×d form
def test_covariance_move_woodbury_matches_dense(k):
    """V2's log-density equals the dense N(y + δm̂, δI + δ²(s·AᵀA + v·I)) in d = 4."""
    est = _summary(jax.random.key(0), k=k)
    y, delta = jnp.arange(4.0), 0.37
    noise = jax.tree.map(lambda a: a[0], moves.draw_noise(jax.random.key(1), 1, 4, k))
    y_new = moves.covariance.sample(noise, y, est, delta)
    centre = est.weights @ est.points
    a = jnp.sqrt(est.weights)[:, None] * (est.points - centre)
    cov = delta * jnp.eye(4) + delta**2 * (est.cov_scale * a.T @ a + est.iso_var * jnp.eye(4))
    dense = multivariate_normal.logpdf(y_new, y + delta * est.mean, cov)
    factored = moves.covariance.logpdf(y_new, y, est, delta)
    np.testing.assert_allclose(factored, dense, rtol=1e-5)


@pytest.mark.parametrize("name", ["euler", "covariance", "posterior"])
def test_move_samples_match_density(name):
    """Each move's sampler and log-density agree: sample mean and covariance (1e5 draws, seed 2)
    within 5 standard errors of the moments computed from the density on a grid (1-D)."""
    move = moves.get_move(name)
    est = _summary(jax.random.key(2), k=5, d=1)
    y, delta = jnp.array([0.3]), 0.8
    noise = moves.draw_noise(jax.random.key(3), 100_000, 1, 5)
    draws = jax.vmap(lambda e: move.sample(e, y, est, delta))(noise)[:, 0]
    grid = jnp.linspace(-20, 20, 40001)
    dens = jnp.exp(jax.vmap(lambda g: move.logpdf(jnp.array([g]), y, est, delta))(grid))
    np.testing.assert_allclose(jnp.trapezoid(dens, grid), 1.0, atol=1e-4)  # V3 normalizes
    m = jnp.trapezoid(dens * grid, grid)
    v = jnp.trapezoid(dens * (grid - m) ** 2, grid)
    n = draws.shape[0]
    assert abs(draws.mean() - m) < 5 * jnp.sqrt(v / n)
    assert abs(draws.var() - v) < 5 * v * jnp.sqrt(2 / n) * 1.5


def _gaussian_target(d, seed=0):
    """Covariance eigenvalues in [0.1, 1.5], below twice the proposal's, so that importance
    weights from N(0, I) have finite variance and standard errors mean something."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    cov = (q * np.linspace(0.1, 1.5, d)) @ q.T
    return targets.gaussian(0.5 * rng.normal(size=d), cov, log_z=0.7)


def _exact_posterior(target, y, lam):
    prec = jnp.linalg.inv(target.cov) + lam * jnp.eye(target.dim)
    cov = jnp.linalg.inv(prec)
    mean = cov @ (jnp.linalg.solve(target.cov, target.mean) + y)
    if lam == 0:  # Z·ν_0 = Z δ_0: Ĝ at λ = 0 is plain importance sampling of Z
        return mean, cov, target.log_z
    log_g = target.log_z + multivariate_normal.logpdf(
        y, lam * target.mean, lam * jnp.eye(target.dim) + lam**2 * target.cov
    )
    return mean, cov, log_g


def _estimator_config(num_inner, neighbours, batch=16, shrinkage=0.0, blocks=1):
    """Options of the drift estimator: ``num_inner·blocks`` support points, ``neighbours``
    pooled particles, ``batch`` particles per chunk, pseudo-count ``shrinkage``."""
    return TransportConfig(
        num_particles=max(neighbours, 2),
        num_inner=num_inner,
        max_inner_blocks=blocks,
        pool_neighbours=neighbours,
        pool_batch=batch,
        shrinkage=shrinkage,
    )


@pytest.mark.parametrize("lam", [0.0, 0.5, 20.0])
def test_own_estimator_matches_exact_posterior(lam):
    """I2 on N(μ, Σ): m̂, Ĉ and log Ĝ match the exact posterior of X | Y_λ = y and Z·ν_λ(y)
    within 5 Monte Carlo standard errors (40 000 draws, seed 4)."""
    target = _gaussian_target(3)
    y = jnp.array([[0.5, -1.0, 2.0]]) * lam
    m = 40_000
    noise = drift.new_noise(jax.random.key(4), 1, 1, m, 3)
    draws = draw(target.logdensity_fn, noise, y, lam, 1, False)
    own = _estimator_config(m, neighbours=1, batch=1, shrinkage=0.0)
    est = estimate(jax.random.key(5), draws, y, lam, 1, own)
    mean, cov, log_g = _exact_posterior(target, y[0], lam)
    w = est.weights[0]
    ess = est.ess[0]
    c_hat = (w[:, None] * (est.points[0] - est.mean[0])).T @ (est.points[0] - est.mean[0])
    se_mean = jnp.sqrt(jnp.diagonal(c_hat) / ess)
    assert jnp.all(jnp.abs(est.mean[0] - mean) < 5 * se_mean)
    se_cov = jnp.sqrt(2.0 / ess) * jnp.sqrt(jnp.outer(jnp.diagonal(cov), jnp.diagonal(cov)))
    assert jnp.all(jnp.abs(c_hat - cov) < 5 * se_cov + 1e-6)
    ratio = jnp.exp(draws.log_r[0] - jnp.max(draws.log_r[0]))
    se_log_g = jnp.std(ratio) / (jnp.sqrt(m) * jnp.mean(ratio))
    assert abs(drift.log_g(draws, y, lam, m)[0] - log_g) < 5 * se_log_g + 1e-4


def test_pooled_estimator_and_gradient_gate():
    """The pooled estimator (I3, 8 neighbours) recovers the exact drift of every particle within
    5 standard errors of the particle's own estimator, and beats it in RMSE (seed 6); with the
    gradient control variate every pool size is exact on N(0, I)."""
    target = _gaussian_target(2, seed=1)
    lam, n, m = 3.0, 64, 32
    y = lam * target.sample(jax.random.key(6), n) + jnp.sqrt(lam) * jax.random.normal(
        jax.random.key(7), (n, 2)
    )
    noise = drift.new_noise(jax.random.key(8), n, 1, m, 2)
    draws = draw(target.logdensity_fn, noise, y, lam, 1, False)
    est = estimate(jax.random.key(9), draws, y, lam, 1, _estimator_config(m, neighbours=8))
    exact = jax.vmap(lambda yy: _exact_posterior(target, yy, lam)[0])(y)
    post_sd = jnp.sqrt(jnp.diagonal(_exact_posterior(target, y[0], lam)[1]))
    own_se = post_sd / jnp.sqrt(est.ess[:, None])
    assert jnp.all(jnp.abs(est.mean - exact) < 5 * own_se)
    own = estimate(jax.random.key(9), draws, y, lam, 1, _estimator_config(m, neighbours=1))
    assert jnp.mean((est.mean - exact) ** 2) < jnp.mean((own.mean - exact) ** 2)

    white = targets.gaussian(jnp.zeros(2), jnp.eye(2))
    draws = draw(white.logdensity_fn, noise, y, lam, 1, True)
    for neighbours in (1, 8, n):
        config = _estimator_config(m, neighbours=neighbours)
        est = estimate(jax.random.key(10), draws, y, lam, 1, config)
        np.testing.assert_allclose(est.mean, y / (1 + lam), atol=1e-4)


@pytest.mark.parametrize("with_grad", [False, True])
def test_pooled_estimator_ignores_inactive_blocks(with_grad):
    """With b of 4 inner blocks active, the pooled estimate (mean, ESS, support points) equals
    the one computed from the b active blocks alone (seed 11): the block loop and the decoding
    of a support point's (block, neighbour, draw) index are right. (That inactive blocks cost no
    time is measured by benchmarks/step_profile.py, not tested.)"""
    target = _gaussian_target(3, seed=2)
    lam, n, m = 2.0, 32, 8
    y = jax.random.normal(jax.random.key(11), (n, 3)) * 2.0
    noise = drift.new_noise(jax.random.key(12), n, 4, m, 3)
    for active in (1, 2):
        full = draw(target.logdensity_fn, noise, y, lam, active, with_grad)
        alone = draw(target.logdensity_fn, noise[:, :active], y, lam, active, with_grad)
        config = _estimator_config(m, neighbours=8, batch=8, shrinkage=4.0, blocks=2)
        a, b = (estimate(jax.random.key(13), d, y, lam, active, config) for d in (full, alone))
        for name in ("mean", "points", "ess", "cov_scale"):
            np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-5, atol=1e-5)


def test_gaussian_logpdf():
    x = jnp.array([0.3, -1.2])
    np.testing.assert_allclose(
        gaussian_logpdf(x, 1.0, 2.5), multivariate_normal.logpdf(x, jnp.ones(2), 2.5 * jnp.eye(2))
    )


def test_sweep_recovers_the_particles_log_density():
    """The sweep returns log p at its selected particles from their inner log-ratios, undoing the
    whitening (log|det L|) and the warm-up's tempering β: it equals p evaluated there, for β = 1
    and β = 0.3 (seed 14)."""
    target = _gaussian_target(2, seed=3)
    reference = from_moments(jnp.array([0.5, -1.0]), jnp.diag(jnp.array([4.0, 0.25])))
    config = TransportConfig(num_particles=32, max_inner_blocks=1, max_steps=32)
    run = jax.jit(
        lambda beta: run_sweep(
            jax.random.key(14), target.logdensity_fn, reference, config, temperature=beta
        )
    )
    for beta in (1.0, 0.3):
        result = run(beta)
        expected = jax.vmap(target.logdensity_fn)(result.particles)
        np.testing.assert_allclose(result.particle_log_density, expected, rtol=1e-4, atol=1e-4)


def test_reference_keeps_a_narrow_coordinate_and_its_correlation():
    """An intercept with sd 85 and a slope with sd 0.043 at correlation −0.9999 (a regression
    on an uncentred covariate): the reference's covariance is the given one to a relative 1e-5,
    and the slope's variance given the intercept (1e-4 of its own) to 5 %. A jitter relative to
    the mean variance (2.4e-3 here) would make that conditional variance 10,000 times wider."""
    sd, rho = np.array([85.0, 0.043]), -0.9999
    cov = np.outer(sd, sd) * np.array([[1.0, rho], [rho, 1.0]])
    with jax.enable_x64(True):
        reference = from_moments(np.zeros(2), cov)
        got = np.asarray(reference.scale_tril @ reference.scale_tril.T)
    np.testing.assert_allclose(got, cov, rtol=1e-5)
    conditional = lambda c: c[1, 1] - c[0, 1] ** 2 / c[0, 0]  # noqa: E731
    np.testing.assert_allclose(conditional(got), conditional(cov), rtol=0.05)
