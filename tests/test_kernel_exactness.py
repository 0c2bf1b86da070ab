"""AST's draws and evidence against closed forms: PIMH invariance from a wrong start, a conjugate
model with simplex and positive sites, the Laplace reference of a posterior far narrower than its
prior (and, slow, AST there), and an enumerated discrete site (slow; mode weights next to NUTS are
checked in test_compare.py).

Tolerances are k = 4 Monte Carlo standard errors, with effective sample sizes from
``numpyro.diagnostics.effective_sample_size``; each test states its seed.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from jax.scipy.special import gammaln
from numpyro.diagnostics import effective_sample_size
from numpyro.infer import MCMC
from scipy import stats

from numpyro_transport import AST, log_evidence, pimh
from numpyro_transport.model import setup_model
from numpyro_transport.targets import flat_regression

K = 4.0


def _ess(draws):
    """ESS of ``(chains, draws)`` values."""
    return float(effective_sample_size(np.asarray(draws, dtype=np.float64)))


def _z_mean(draws, truth):
    draws = np.asarray(draws, dtype=np.float64)
    return (draws.mean() - truth) / (draws.std() / np.sqrt(_ess(draws)))


def _assert_evidence(mcmc, truth):
    log_z, se = log_evidence(mcmc)
    assert abs(log_z - truth) < K * se + 0.01, (log_z, se, truth)


# -- PIMH invariance ---------------------------------------------------------------------------

WEIGHTS, MEANS, SD = np.array([0.3, 0.7]), np.array([-2.0, 2.0]), 0.6


def _mixture_potential(z):
    x = z["x"]
    log_p = jax.scipy.special.logsumexp(
        jnp.log(WEIGHTS) + jax.scipy.stats.norm.logpdf(x, MEANS, SD)
    )
    return -log_p


def _mixture_cdf(x):
    return np.sum(WEIGHTS * stats.norm.cdf(np.asarray(x)[:, None], MEANS, SD), axis=-1)


def test_pimh_invariant_from_a_wrong_start():
    """Seed 0. After warm-up the chain is put at x = 8 with a log Ẑ 3 nats too high (sticky).
    After 200 burn-in draws, the KS distance to the exact mixture is below the 1% critical value
    for the effective sample size, and the acceptance rate matches 2Φ(−σ/√2), the rate for
    log-normal Ẑ with the σ measured over the proposals, within 0.1."""
    kernel = AST(
        potential_fn=_mixture_potential, num_particles=8, reference=(jnp.zeros(1), 9.0 * jnp.eye(1))
    )
    mcmc = MCMC(kernel, num_warmup=3, num_samples=1000, progress_bar=False)
    mcmc.warmup(jax.random.key(0), init_params={"x": jnp.zeros(())})
    at_8 = -_mixture_potential({"x": jnp.asarray(8.0)})
    wrong = mcmc.post_warmup_state._replace(
        z={"x": jnp.asarray(8.0)},
        potential_energy=-at_8,
        chain=pimh.init(jnp.full(1, 8.0), at_8, 8, log_evidence=3.0),
    )
    mcmc.post_warmup_state = wrong
    mcmc.run(jax.random.key(1))
    x = np.asarray(mcmc.get_samples()["x"])[200:]
    distance = stats.kstest(x, _mixture_cdf).statistic
    n_eff = _ess(x[None])
    assert distance < 1.63 / np.sqrt(n_eff), (distance, n_eff)

    extra = mcmc.get_extra_fields()
    sigma = float(np.std(extra["log_evidence"][extra["new_sweep"]]))  # each proposal once
    predicted = 2 * stats.norm.cdf(-sigma / np.sqrt(2))
    observed = float(np.mean(extra["accept_prob"][200:]))
    assert abs(observed - predicted) < 0.1, (observed, predicted, sigma)
    assert 0.1 < sigma  # the test has teeth: proposals do get rejected


# -- Conjugate model with simplex and positive sites ----------------------------------------------

ALPHA, COUNTS = np.array([1.0, 2.0, 3.0]), np.array([3.0, 7.0, 10.0])
A, B, Y = 2.0, 1.0, np.array([4.0, 6.0, 3.0, 5.0, 7.0])


def conjugate(counts, y):
    p = numpyro.sample("p", dist.Dirichlet(ALPHA))
    numpyro.sample("counts", dist.Multinomial(int(COUNTS.sum()), p), obs=counts)
    rate = numpyro.sample("rate", dist.Gamma(A, B))
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("y", dist.Poisson(rate), obs=y)


def _conjugate_log_z():
    n, s, m = COUNTS.sum(), Y.sum(), Y.shape[0]
    dirmult = (
        gammaln(n + 1)
        - gammaln(COUNTS + 1).sum()
        + gammaln(ALPHA.sum())
        - gammaln(ALPHA.sum() + n)
        + (gammaln(ALPHA + COUNTS) - gammaln(ALPHA)).sum()
    )
    poisson_gamma = (
        -gammaln(Y + 1).sum()
        + A * np.log(B)
        - gammaln(A)
        + gammaln(A + s)
        - (A + s) * np.log(B + m)
    )
    return float(dirmult + poisson_gamma)


def test_conjugate_simplex_and_positive_sites():
    """Seed 2, 2 chains. Posterior Dirichlet(α + counts) and Gamma(a + Σy, b + n): means within
    4 MC standard errors, variances within 4 standard errors (√(2/ESS)·var), log Z within 4 se."""
    mcmc = MCMC(
        AST(conjugate, num_particles=64),
        num_warmup=3,
        num_samples=200,
        num_chains=2,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(2), jnp.asarray(COUNTS), jnp.asarray(Y))
    draws = mcmc.get_samples(group_by_chain=True)
    post_alpha = ALPHA + COUNTS
    shape, rate = A + Y.sum(), B + Y.shape[0]
    cases = [
        (draws["p"][..., k], stats.beta(post_alpha[k], post_alpha.sum() - post_alpha[k]))
        for k in range(3)
    ]
    cases.append((draws["rate"], stats.gamma(shape, scale=1 / rate)))
    for values, truth in cases:
        values = np.asarray(values, dtype=np.float64)
        assert abs(_z_mean(values, truth.mean())) < K
        var_se = truth.var() * np.sqrt(2 / _ess(values))
        assert abs(values.var() - truth.var()) < K * var_se
    np.testing.assert_allclose(np.asarray(draws["p"]).sum(-1), 1.0, rtol=1e-5)
    _assert_evidence(mcmc, _conjugate_log_z())


# -- A posterior far narrower than its prior: the Laplace reference ----------------------------

PRIOR_SD = 10.0
NARROW_Y = np.random.default_rng(5).normal(np.arange(4.0)[:, None], 1.0, size=(4, 200))


def narrow(y):
    """Four means, each with 200 unit-variance observations under a N(0, 10²) prior: the
    posterior sds are 140× narrower than the prior's."""
    mu = numpyro.sample("mu", dist.Normal(0.0, PRIOR_SD).expand([y.shape[0]]).to_event(1))
    numpyro.sample("y", dist.Normal(mu[:, None], 1.0).to_event(2), obs=y)


def _narrow_posterior():
    """Exact posterior means and variance of ``narrow``'s four means."""
    n, s2 = NARROW_Y.shape[1], PRIOR_SD**2
    return s2 * NARROW_Y.sum(1) / (1 + n * s2), s2 / (1 + n * s2)


def test_improper_priors_get_the_exact_laplace_reference():
    """A regression with flat priors on an uncentred covariate (the slope's posterior sd is
    1/2000 of the intercept's, correlation −0.999999): in float32 the set-up's first reference
    is N(mode, 1.2·H⁻¹) of the closed form: the mode to 10⁻³ of each coordinate's sd, the
    covariance's diagonal to 10 % (the float32 Hessian, whose (a, b) block has correlation
    0.999999, gives 4 %), and the slope's variance given the intercept (2·10⁻⁶ of its own)
    within a factor 2.5 (float32 and the 10⁻⁶ relative jitter give 2). NumPyro's Laplace with
    BFGS diverged here, and a jitter relative to the mean variance made that conditional
    variance 10⁴ times too wide."""
    target = flat_regression()
    with pytest.warns(UserWarning, match="improper priors"):
        setup = setup_model(target.model, (target.x, target.y))
    reference = setup.reference
    sd = np.sqrt(np.diag(target.mode_cov))
    error = np.abs(np.asarray(reference.mean, np.float64) - target.mode) / sd
    assert np.all(error < 1e-3), error
    tril = np.asarray(reference.scale_tril, np.float64)
    cov, expected = tril @ tril.T, 1.2 * target.mode_cov
    np.testing.assert_allclose(np.diag(cov), np.diag(expected), rtol=0.1)
    conditional = lambda c: c[1, 1] - c[0, 1] ** 2 / c[0, 0]  # noqa: E731
    assert 0.4 < conditional(cov) / conditional(expected) < 2.5


@pytest.mark.slow
def test_flat_regression_with_the_defaults():
    """``MCMC(AST(model))`` with its defaults (float32, 5 warm-up sweeps, 4 vectorized chains ×
    1000 draws, seed 0) on the improper-prior regression: each site's posterior mean within
    4 Monte Carlo standard errors (sd/√ESS) of the closed form, its sd within 10 %. With the
    prior-scale reference of improper sites the chains stuck (ESS 5, s = 1.04 for 0.92)."""
    target = flat_regression()
    mcmc = MCMC(
        AST(target.model, progress_bar=False),
        num_warmup=5,
        num_samples=1000,
        num_chains=4,
        chain_method="vectorized",
        progress_bar=False,
    )
    with pytest.warns(UserWarning, match="improper priors"):
        mcmc.run(jax.random.key(0), target.x, target.y)
    draws = mcmc.get_samples(group_by_chain=True)
    for site, (mean, sd) in target.moments.items():
        chains = np.asarray(draws[site], np.float64)
        ess = float(effective_sample_size(chains))
        assert abs(chains.mean() - mean) < 4 * sd / np.sqrt(ess), (site, chains.mean(), ess)
        assert abs(chains.std() / sd - 1) < 0.1, (site, chains.std(), sd)


# The tempered SMC start from prior moments is also covered by test_gaussian.py (d = 50), the
# kernel's SMC program by test_kernel_contract.py, and the Laplace reference by the tests above.
@pytest.mark.slow
@pytest.mark.parametrize("reference", [None, "laplace"])
def test_posterior_far_narrower_than_its_prior(reference):
    """Seed 4, 2 chains. From prior moments (β̂ ≈ 0, so the warm-up's tempered SMC run moves the
    reference first; without it 3 warm-up sweeps ended at β = 0.17 and the means were far off)
    and from reference='laplace', the posterior means and variances are within 4 standard errors
    and log Z within 4 se of the closed form (per mean: y ~ N(0, I + s²11ᵀ))."""
    mcmc = MCMC(
        AST(narrow, num_particles=64, reference=reference),
        num_warmup=3,
        num_samples=200,
        num_chains=2,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(4), jnp.asarray(NARROW_Y))
    post_mean, post_var = _narrow_posterior()
    draws = np.asarray(mcmc.get_samples(group_by_chain=True)["mu"], dtype=np.float64)
    for j in range(NARROW_Y.shape[0]):
        values = draws[..., j]
        assert abs(_z_mean(values, post_mean[j])) < K
        assert abs(values.var() - post_var) < K * post_var * np.sqrt(2 / _ess(values))
    n, s2, sums = NARROW_Y.shape[1], PRIOR_SD**2, NARROW_Y.sum(1)
    log_z = np.sum(
        -0.5 * n * np.log(2 * np.pi)
        - 0.5 * np.log1p(n * s2)
        - 0.5 * ((NARROW_Y**2).sum(1) - s2 * sums**2 / (1 + n * s2))
    )
    _assert_evidence(mcmc, float(log_z))


# -- Enumerated discrete site ---------------------------------------------------------------------


def enumerated(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    z = numpyro.sample("z", dist.Bernoulli(0.3), infer={"enumerate": "parallel"})
    numpyro.sample("y", dist.Normal(mu + 3.0 * z, 1.0), obs=y)


def test_enumerated_model_sets_up():
    """The set-up's prior draws evaluate the potential with z summed out (as NumPyro's
    initialize_model prepares the model): a raw ``potential_energy(..., enum=True)`` samples z
    without a key and failed. The reference is N(prior moments of mu) = N(0, 1) to 0.2."""
    pytest.importorskip("funsor")
    setup = setup_model(enumerated, (2.0,))
    assert abs(float(setup.reference.mean[0])) < 0.2
    assert abs(float(setup.reference.scale_tril[0, 0]) - 1) < 0.2


@pytest.mark.slow
def test_enumerated_discrete_site_is_summed_out():
    """Seed 4. z ~ Bernoulli(0.3) is summed out of the potential (needs funsor):
    p(y) = 0.7 N(y; 0, 2) + 0.3 N(y; 3, 2), and E[mu | y] = Σ_z p(z | y)(y − 3z)/2."""
    pytest.importorskip("funsor")
    y = 2.0
    mcmc = MCMC(
        AST(enumerated, num_particles=64), num_warmup=3, num_samples=300, progress_bar=False
    )
    mcmc.run(jax.random.key(4), y)
    parts = np.array([0.7, 0.3]) * stats.norm.pdf(y, [0.0, 3.0], np.sqrt(2.0))
    _assert_evidence(mcmc, float(np.log(parts.sum())))
    posterior_z = parts / parts.sum()
    mean = float(posterior_z @ ((y - 3.0 * np.array([0.0, 1.0])) / 2))
    assert abs(_z_mean(np.asarray(mcmc.get_samples()["mu"])[None], mean)) < K
