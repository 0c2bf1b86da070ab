"""The posteriordb translations run, and their log densities are Stan's.

Stan's log density is written out again below in numpy/scipy, loop for loop where the Stan
program loops, and compared with NumPyro's at reference draws through differences between
draws, which cancel the constants Stan drops. Everything runs in float64 (``gp_pois_regr`` needs
it) and under ``jax.jit``, which keeps the file fast.
"""

import json
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from numpyro.handlers import substitute, trace
from numpyro.infer.util import initialize_model, log_density, potential_energy, unconstrain_fn
from scipy import stats
from scipy.special import logsumexp

from benchmarks.posteriordb.models import (
    POSTERIORS,
    flatten_samples,
    latent_values,
    posteriordb_dir,
    unflatten,
)

pytestmark = pytest.mark.skipif(
    not posteriordb_dir().is_dir(),
    reason=f"posteriordb references not found at {posteriordb_dir()} (set POSTERIORDB_DIR)",
)

DRAW_INDICES = [(0, 0), (4, 321), (9, 999)]  # (chain, draw) of the reference points compared


# ---------------------------------------------------------------------------------------------
# Stan's log densities, without Jacobians, up to constants: params are the sampled variables.


def _normal(x, loc, scale):
    return np.sum(stats.norm.logpdf(x, loc, scale))


def _eight_schools_noncentered(p, d):
    theta = p["mu"] + p["tau"] * p["theta_trans"]
    prior = _normal(p["theta_trans"], 0, 1) + _normal(p["mu"], 0, 5)
    return prior + stats.cauchy.logpdf(p["tau"], 0, 5) + _normal(d["y"], theta, d["sigma"])


def _eight_schools_centered(p, d):
    prior = _normal(p["mu"], 0, 5) + stats.cauchy.logpdf(p["tau"], 0, 5)
    return prior + _normal(p["theta"], p["mu"], p["tau"]) + _normal(d["y"], p["theta"], d["sigma"])


def _ark(p, d):
    y, K = d["y"], int(d["K"])
    lp = _normal(p["alpha"], 0, 10) + _normal(p["beta"], 0, 10)
    lp += stats.cauchy.logpdf(p["sigma"], 0, 2.5)
    for t in range(K, len(y)):
        mu = p["alpha"] + sum(p["beta"][k] * y[t - k - 1] for k in range(K))
        lp += _normal(y[t], mu, p["sigma"])
    return lp


def _garch11(p, d):
    assert p["alpha0"] > 0 and 0 < p["alpha1"] < 1 and 0 < p["beta1"] < 1 - p["alpha1"]
    y = d["y"]
    sigma = np.empty(len(y))
    sigma[0] = d["sigma1"]
    for t in range(1, len(y)):
        var = p["alpha0"] + p["alpha1"] * (y[t - 1] - p["mu"]) ** 2
        sigma[t] = np.sqrt(var + p["beta1"] * sigma[t - 1] ** 2)
    return _normal(y, p["mu"], sigma)


def _low_dim_gauss_mix(p, d):
    mu, sigma, theta = p["mu"], p["sigma"], p["theta"]
    assert mu[0] < mu[1]
    lp = _normal(sigma, 0, 2) + _normal(mu, 0, 2) + stats.beta.logpdf(theta, 5, 5)
    first = np.log(theta) + stats.norm.logpdf(d["y"], mu[0], sigma[0])
    second = np.log1p(-theta) + stats.norm.logpdf(d["y"], mu[1], sigma[1])
    return lp + np.sum(np.logaddexp(first, second))


def _gp_pois_regr(p, d):
    x, n = d["x"], len(d["x"])
    cov = p["alpha"] ** 2 * np.exp(-((x[:, None] - x[None, :]) ** 2) / (2 * p["rho"] ** 2))
    f = np.linalg.cholesky(cov + 1e-10 * np.eye(n)) @ p["f_tilde"]
    lp = stats.gamma.logpdf(p["rho"], 25, scale=1 / 4) + _normal(p["alpha"], 0, 2)
    return lp + _normal(p["f_tilde"], 0, 1) + np.sum(stats.poisson.logpmf(d["k"], np.exp(f)))


def _diamonds(p, d):
    xc = d["X"][:, 1:] - d["X"][:, 1:].mean(axis=0)
    lp = _normal(p["b"], 0, 1) + stats.t.logpdf(p["Intercept"], 3, 8, 10)
    lp += stats.t.logpdf(p["sigma"], 3, 0, 10)
    return lp + _normal(d["Y"], p["Intercept"] + xc @ p["b"], p["sigma"])


def _hmm_example(p, d):
    y, mu = d["y"], p["mu"]
    rows = (p["theta1"], p["theta2"])
    assert 0 < mu[0] < mu[1]
    gamma = np.empty((len(y), 2))
    gamma[0] = stats.norm.logpdf(y[0], mu, 1)
    for t in range(1, len(y)):
        for k in range(2):
            acc = [gamma[t - 1, j] + np.log(rows[j][k]) for j in range(2)]
            gamma[t, k] = logsumexp(acc) + stats.norm.logpdf(y[t], mu[k], 1)
    return _normal(mu[0], 3, 1) + _normal(mu[1], 10, 1) + logsumexp(gamma[-1])


def _wells_interaction_c_model(p, d):
    c_dist100 = (d["dist"] - d["dist"].mean()) / 100
    c_arsenic = d["arsenic"] - d["arsenic"].mean()
    beta = p["beta"]
    eta = p["alpha"] + beta[0] * c_dist100 + beta[1] * c_arsenic + beta[2] * c_dist100 * c_arsenic
    return np.sum(d["switched"] * eta - np.logaddexp(0, eta))


STAN_LOG_DENSITY = {
    "eight_schools-eight_schools_noncentered": _eight_schools_noncentered,
    "eight_schools-eight_schools_centered": _eight_schools_centered,
    "arK-arK": _ark,
    "garch-garch11": _garch11,
    "low_dim_gauss_mix-low_dim_gauss_mix": _low_dim_gauss_mix,
    "gp_pois_regr-gp_pois_regr": _gp_pois_regr,
    "diamonds-diamonds": _diamonds,
    "hmm_example-hmm_example": _hmm_example,
    "wells_data-wells_interaction_c_model": _wells_interaction_c_model,
}


def test_every_posterior_has_a_stan_log_density():
    assert STAN_LOG_DENSITY.keys() == POSTERIORS.keys()


# ---------------------------------------------------------------------------------------------
# Fixtures


class Case(NamedTuple):
    name: str
    model: object
    data: dict  # model kwargs
    stan_data: dict  # data.json as numpy arrays
    info: dict
    moments: dict  # flat name -> (mean, sd)
    draws: dict | None
    points: list  # reference variables at a few reference points

    def latent(self, point):
        return latent_values(self.name, point, self.data)


@pytest.fixture(scope="module", autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def _reference_points(draws, moments):
    """A few reference draws, or for a moments-only reference the mean and two points about
    one sd away from it."""
    if draws is not None:
        return [{name: value[index] for name, value in draws.items()} for index in DRAW_INDICES]
    means, sds = (np.array([m[i] for m in moments.values()]) for i in (0, 1))
    offsets = np.random.default_rng(0).standard_normal((len(DRAW_INDICES) - 1, len(means)))
    rows = [means] + [means + sds * z for z in offsets]
    return [unflatten(dict(zip(moments, row, strict=True))) for row in rows]


@pytest.fixture(scope="module", params=list(POSTERIORS))
def case(request, x64):
    posterior = POSTERIORS[request.param]
    folder = posteriordb_dir() / posterior.name
    stan_data = {
        k: np.asarray(v) for k, v in json.loads((folder / "data.json").read_text()).items()
    }
    moments, draws = posterior.reference_moments_fn(), posterior.reference_draws_fn()
    return Case(
        posterior.name,
        posterior.model,
        posterior.data_fn(),
        stan_data,
        json.loads((folder / "info.json").read_text()),
        moments,
        draws,
        _reference_points(draws, moments),
    )


def _stack(points):
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *points)


# ---------------------------------------------------------------------------------------------
# Tests


def test_initialize_model(case):
    init = jax.jit(lambda key: initialize_model(key, case.model, model_kwargs=case.data).param_info)
    z, energy, grad = init(jax.random.key(0))
    assert np.isfinite(energy)
    assert np.all(np.isfinite(ravel_pytree(grad)[0]))
    assert ravel_pytree(z)[0].size == case.info["unconstrained_dim"]


def test_potential_energy_at_reference_mean(case):
    means = unflatten({name: mean for name, (mean, _) in case.moments.items()})
    z = jax.jit(lambda p: unconstrain_fn(case.model, (), case.data, p))(case.latent(means))
    energy, grad = jax.jit(
        jax.value_and_grad(lambda z: potential_energy(case.model, (), case.data, z))
    )(z)
    assert np.isfinite(energy)
    assert np.all(np.isfinite(ravel_pytree(grad)[0]))


def test_log_density_matches_stan(case):
    """Differences of the log joint between reference points equal Stan's. A wrong prior,
    likelihood term, constant-free parameter or data transform changes them."""
    latent = [case.latent(point) for point in case.points]
    numpyro_lp = jax.jit(jax.vmap(lambda p: log_density(case.model, (), case.data, p)[0]))(
        _stack(latent)
    )
    stan_lp = np.array(
        [STAN_LOG_DENSITY[case.name](jax.tree.map(np.asarray, p), case.stan_data) for p in latent]
    )
    np.testing.assert_allclose(numpyro_lp[1:] - numpyro_lp[0], stan_lp[1:] - stan_lp[0], 1e-8, 1e-6)
    assert np.ptp(stan_lp) > 1e-3  # the points differ enough for the check to bite


def test_sites_carry_reference_names_and_values(case):
    """Every reference scalar is a model site under its posteriordb name, and the model's
    sites (transformed parameters included) reproduce the reference point they came from."""

    def site_values(latent):
        sites = trace(substitute(case.model, latent)).get_trace(**case.data)
        return {
            name: site["value"]
            for name, site in sites.items()
            if site["type"] == "deterministic"
            or (site["type"] == "sample" and not site["is_observed"])
        }

    values = jax.jit(site_values)(case.latent(case.points[-1]))
    flat = flatten_samples(values, sample_ndim=0)
    reference = flatten_samples(case.points[-1], sample_ndim=0)
    assert set(case.moments) <= set(flat)
    assert set(reference) == set(case.moments)
    for name in case.moments:
        np.testing.assert_allclose(flat[name], reference[name], rtol=1e-9, atol=1e-9)


def test_flatten_samples_matches_reference_moments(case):
    if case.draws is None:
        pytest.skip("moments-only reference")
    flat = flatten_samples(case.draws)
    assert flat.keys() == case.moments.keys()
    for name, (mean, sd) in case.moments.items():
        assert flat[name].shape == (10, 1000)
        np.testing.assert_allclose([flat[name].mean(), flat[name].std(ddof=1)], [mean, sd], 1e-6)


def test_flatten_samples_rejects_inconsistent_sample_axes():
    with pytest.raises(ValueError, match="sample axes"):
        flatten_samples({"mu": np.zeros(100), "theta": np.zeros((100, 8))})


def test_unflatten_inverts_flatten():
    point = {"mu": np.array(1.5), "theta": np.arange(3.0)}
    restored = unflatten(flatten_samples(point, sample_ndim=0))
    assert restored.keys() == point.keys()
    for name, value in point.items():
        np.testing.assert_array_equal(restored[name], value)


def test_garch_dependent_bound_has_stan_jacobian():
    """beta1 in (0, 1 - alpha1) is unconstrained as in Stan, beta1 = (1 - alpha1) logit⁻¹(u),
    so the unconstrained density carries Stan's log-Jacobian, log(1 - alpha1) included."""
    name = "garch-garch11"
    posterior = POSTERIORS[name]
    data, draws = posterior.data_fn(), posterior.reference_draws_fn()
    stan_data = {k: np.asarray(v) for k, v in data.items()}
    points = [{k: v[index] for k, v in draws.items()} for index in DRAW_INDICES]
    z = jax.jit(jax.vmap(lambda p: unconstrain_fn(posterior.model, (), data, p)))(_stack(points))
    energy = jax.jit(jax.vmap(lambda z: potential_energy(posterior.model, (), data, z)))(z)

    def stan_unconstrained(p):
        alpha1, share = p["alpha1"], p["beta1"] / (1 - p["alpha1"])
        log_jacobian = (
            np.log(p["alpha0"])
            + np.log(alpha1 * (1 - alpha1))
            + np.log(1 - alpha1)
            + np.log(share * (1 - share))
        )
        return _garch11(p, stan_data) + log_jacobian

    stan = np.array([stan_unconstrained(p) for p in points])
    np.testing.assert_allclose(energy[0] - energy[1:], stan[1:] - stan[0], 1e-8, 1e-6)
