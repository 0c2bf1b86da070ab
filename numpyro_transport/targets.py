"""Unnormalized targets with closed-form answers, for tests and benchmarks.

Each [`Target`][numpyro_transport.targets.Target] carries an unnormalized log-density over R^d and
whatever is known exactly about it: log Z, mean, covariance, mode weights and an exact sampler.
[`eight_schools_models`][numpyro_transport.targets.eight_schools_models] gives three NumPyro models
of one data set with their exact evidences, for model comparison.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import logsumexp
from scipy import integrate, special, stats

__all__ = [
    "Target",
    "gaussian",
    "mixture",
    "two_mode",
    "gmm40",
    "funnel",
    "EIGHT_SCHOOLS",
    "eight_schools_models",
    "Regression",
    "flat_regression",
]


class Target(NamedTuple):
    """An unnormalized density with known properties.

    Attributes:
        name: short label used in benchmark tables.
        logdensity_fn: ``x (d,) -> log γ(x)``, unnormalized.
        dim: dimension d.
        log_z: exact log ∫γ, or ``None`` if unknown.
        mean: exact mean of the normalized density, or ``None``.
        cov: exact covariance of the normalized density, or ``None``.
        sample: ``(rng_key, n) -> (n, d)`` exact draws, or ``None``.
        mode_means: for mixtures: component means ``(K, d)``.
        mode_weights: for mixtures: component weights ``(K,)``.
    """

    name: str
    logdensity_fn: Callable
    dim: int
    log_z: float | None = None
    mean: jax.Array | None = None
    cov: jax.Array | None = None
    sample: Callable | None = None
    mode_means: jax.Array | None = None
    mode_weights: jax.Array | None = None


def _mvn_logpdf_unnorm(x, mean, prec_chol):
    z = prec_chol.T @ (x - mean)
    return -0.5 * jnp.sum(z**2)


def gaussian(mean, cov, log_z=0.0, name="gaussian"):
    """``γ(x) = exp(log_z) · N(x; mean, cov)``, written without its normalizing constant.

    The log-density omits ``-½ log det(2πΣ)``, so ∫γ = exp(log_z) exactly and a sampler that
    drops a constant is caught.

    Args:
        mean: ``(d,)`` mean.
        cov: ``(d, d)`` covariance.
        log_z: the exact log ∫γ.
        name: the target's label.

    Returns:
        The target, with its moments and an exact sampler.
    """
    mean = jnp.asarray(mean, dtype=jnp.float32)
    cov = jnp.asarray(cov, dtype=jnp.float32)
    d = mean.shape[0]
    prec_chol = jnp.linalg.cholesky(jnp.linalg.inv(cov))
    half_logdet = 0.5 * jnp.linalg.slogdet(2 * jnp.pi * cov)[1]
    offset = log_z - half_logdet

    def logdensity_fn(x):
        return _mvn_logpdf_unnorm(x, mean, prec_chol) + offset

    def sample(key, n):
        return jax.random.multivariate_normal(key, mean, cov, (n,))

    return Target(name, logdensity_fn, d, float(log_z), mean, cov, sample)


def mixture(means, scales, weights, name="mixture"):
    """Normalized mixture of isotropic Gaussians ``Σ_k w_k N(μ_k, s_k² I)``; log Z = 0.

    Args:
        means: ``(K, d)`` component means μ_k.
        scales: ``(K,)`` component standard deviations s_k.
        weights: ``(K,)`` component weights w_k, summing to 1.
        name: the target's label.

    Returns:
        The target, with its moments, an exact sampler and its modes.
    """
    means = jnp.asarray(means, dtype=jnp.float32)
    scales = jnp.asarray(scales, dtype=jnp.float32)
    weights = jnp.asarray(weights, dtype=jnp.float32)
    k, d = means.shape
    log_w = jnp.log(weights)

    def logdensity_fn(x):
        sq = jnp.sum((x - means) ** 2, axis=-1)
        comp = -0.5 * sq / scales**2 - d * jnp.log(scales) - 0.5 * d * jnp.log(2 * jnp.pi)
        return logsumexp(log_w + comp)

    def sample(key, n):
        k1, k2 = jax.random.split(key)
        idx = jax.random.categorical(k1, log_w, shape=(n,))
        eps = jax.random.normal(k2, (n, d))
        return means[idx] + scales[idx, None] * eps

    mean = weights @ means
    second = jnp.einsum("k,ki,kj->ij", weights, means, means) + jnp.eye(d) * jnp.sum(
        weights * scales**2
    )
    cov = second - jnp.outer(mean, mean)
    return Target(name, logdensity_fn, d, 0.0, mean, cov, sample, means, weights)


def two_mode(dim=1, weights=(0.3, 0.7), separation=4.0, scale=0.5):
    """Two separated modes with unequal weights at ``∓separation/2`` along the diagonal.

    Args:
        dim: d.
        weights: the weights of the mode at ``−separation/2`` and of the one at
            ``+separation/2``.
        separation: distance between the two means.
        scale: standard deviation of each mode, in every coordinate.

    Returns:
        The mixture [`Target`][numpyro_transport.targets.Target].
    """
    direction = jnp.ones(dim) / jnp.sqrt(dim)
    means = jnp.stack([-0.5 * separation * direction, 0.5 * separation * direction])
    return mixture(means, jnp.full(2, scale), weights, name=f"two-mode d={dim}")


def gmm40(seed=0, num_modes=40, box=40.0):
    """FAB's 40-mode mixture: unit-variance modes, means uniform on ``[-box, box]²``.

    Args:
        seed: seed of the means.
        num_modes: number of equally weighted modes.
        box: half-width of the square of the means.

    Returns:
        The mixture [`Target`][numpyro_transport.targets.Target], in two dimensions.
    """
    means = jax.random.uniform(jax.random.key(seed), (num_modes, 2), minval=-box, maxval=box)
    return mixture(means, jnp.ones(num_modes), jnp.full(num_modes, 1.0 / num_modes), name="gmm-40")


def funnel(dim=10, scale=3.0):
    """Neal's funnel (PDDS/AFT convention): ``v ~ N(0, scale²)``, ``x_{2:d} | v ~ N(0, e^v I)``.

    Normalized, so log Z = 0.

    Args:
        dim: d, with ``v`` the first coordinate.
        scale: standard deviation of ``v``.

    Returns:
        The target, with its exact mean and sampler (no covariance).
    """

    def logdensity_fn(x):
        v, rest = x[0], x[1:]
        lp_v = -0.5 * (v / scale) ** 2 - jnp.log(scale) - 0.5 * jnp.log(2 * jnp.pi)
        lp_rest = -0.5 * jnp.sum(rest**2) * jnp.exp(-v) - 0.5 * (dim - 1) * (
            v + jnp.log(2 * jnp.pi)
        )
        return lp_v + lp_rest

    def sample(key, n):
        k1, k2 = jax.random.split(key)
        v = scale * jax.random.normal(k1, (n, 1))
        return jnp.concatenate([v, jnp.exp(0.5 * v) * jax.random.normal(k2, (n, dim - 1))], axis=1)

    mean = jnp.zeros(dim)
    return Target(f"funnel d={dim}", logdensity_fn, dim, 0.0, mean, None, sample)


#: The eight schools data (Rubin 1981): ``(sigma, y)``, the standard errors and the estimated
#: coaching effects.
EIGHT_SCHOOLS = (
    np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0]),
    np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0]),
)


def _pooled(sigma, y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    with numpyro.plate("school", sigma.shape[0]):
        numpyro.sample("y", dist.Normal(mu, sigma), obs=y)


def _hierarchical(sigma, y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("school", sigma.shape[0]):
        eta = numpyro.sample("eta", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(mu + tau * eta, sigma), obs=y)


def _unpooled(sigma, y):
    with numpyro.plate("school", sigma.shape[0]):
        theta = numpyro.sample("theta", dist.Normal(0.0, 5.0))
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


def _log_normal_marginal(y, prior_var, school_var):
    """log N(y; 0, prior_var·11ᵀ + diag(school_var)): the school effects share a N(0, prior_var)
    mean, integrated out."""
    cov = prior_var * np.ones((y.shape[0], y.shape[0])) + np.diag(school_var)
    return float(stats.multivariate_normal(np.zeros(y.shape[0]), cov).logpdf(y))


def _hierarchical_log_z(sigma, y) -> float:
    """log ∫ HalfCauchy(τ; 5) N(y; 0, 25·11ᵀ + diag(τ² + σ²)) dτ, by adaptive quadrature."""
    peak = max(_log_normal_marginal(y, 25.0, tau**2 + sigma**2) for tau in (0.0, 5.0, 20.0))

    def integrand(tau):
        log_prior = stats.halfcauchy(scale=5.0).logpdf(tau)
        return np.exp(log_prior + _log_normal_marginal(y, 25.0, tau**2 + sigma**2) - peak)

    value, _ = integrate.quad(integrand, 0.0, np.inf, epsabs=0.0, epsrel=1e-10, limit=200)
    return peak + float(np.log(value))


def eight_schools_models() -> dict:
    """Three models of the eight schools data, with their exact log evidence.

    With the data ``(sigma, y)`` of ``EIGHT_SCHOOLS`` (each model is called as
    ``model(sigma, y)``):

    - **pooled**: one effect μ ~ N(0, 5²) for all schools, y_j ~ N(μ, σ_j²); exactly
      y ~ N(0, 25·11ᵀ + diag σ²);
    - **hierarchical** (non-centred): μ ~ N(0, 5²), τ ~ HalfCauchy(5), θ_j = μ + τ·η_j with
      η_j ~ N(0, 1); given τ, y ~ N(0, 25·11ᵀ + diag(τ² + σ²)), and log Z is the quadrature of
      that over τ's prior;
    - **unpooled**: independent effects θ_j ~ N(0, 5²); exactly y_j ~ N(0, 25 + σ_j²).

    Returns:
        ``{name: (model, log_z)}`` for ``"pooled"``, ``"hierarchical"`` and ``"unpooled"``.

    Examples:
        >>> from numpyro_transport.targets import eight_schools_models
        >>> {name: round(log_z, 3) for name, (_, log_z) in eight_schools_models().items()}
        {'pooled': -30.844, 'hierarchical': -31.311, 'unpooled': -31.521}
    """
    sigma, y = EIGHT_SCHOOLS
    return {
        "pooled": (_pooled, _log_normal_marginal(y, 25.0, sigma**2)),
        "hierarchical": (_hierarchical, _hierarchical_log_z(sigma, y)),
        "unpooled": (
            _unpooled,
            float(np.sum(stats.norm(0.0, np.sqrt(25.0 + sigma**2)).logpdf(y))),
        ),
    }


class Regression(NamedTuple):
    """A NumPyro regression model, its data and its exact posterior.

    Attributes:
        model: the model, called as ``model(x, y)``.
        x: the covariate, ``(n,)``.
        y: the responses, ``(n,)``.
        moments: ``{site: (posterior mean, posterior sd)}``.
        mode: the posterior mode in the unconstrained coordinates ``(a, b, log s)`` (the
            latent sites flattened in name order, as the kernel flattens them).
        mode_cov: the inverse Hessian of the potential at ``mode``, the Laplace covariance.
    """

    model: Callable
    x: np.ndarray
    y: np.ndarray
    moments: dict
    mode: np.ndarray
    mode_cov: np.ndarray


def _flat_regression_model(x, y):
    real, positive = dist.constraints.real, dist.constraints.positive
    a = numpyro.sample("a", dist.ImproperUniform(real, (), ()))
    b = numpyro.sample("b", dist.ImproperUniform(real, (), ()))
    s = numpyro.sample("s", dist.ImproperUniform(positive, (), ()))
    numpyro.sample("y", dist.Normal(a + b * x, s), obs=y)


def flat_regression(num_data=50, start=1990.0, seed=1) -> Regression:
    """y_i ~ N(a + b·x_i, s²) with flat priors on a, b and s > 0, on an uncentred covariate.

    ``x`` is evenly spaced over [start, start + 10] (a calendar year, say) and
    ``y = 3 + x/2 + N(0, 1)`` noise from ``seed``. With p(a, b, s) ∝ 1 the posterior is far
    narrower than any prior and (a, b) are correlated to about −0.999999. In closed form, with
    β̂ the least-squares fit, S its residual sum of squares, X = [1, x], n data and ν = n − 3:

    - (a, b) is multivariate Student-t, ν degrees of freedom, mean β̂ and covariance
      S/(ν − 2)·(XᵀX)⁻¹;
    - s² is inverse-gamma((n − 3)/2, S/2), so E[s] = √(S/2)·Γ((n − 4)/2)/Γ((n − 3)/2);
    - over (a, b, log s) (the Jacobian adds log s) the mode is (β̂, ½ log(S/(n − 1))) and the
      inverse Hessian there is diag(S/(n − 1)·(XᵀX)⁻¹, 1/(2(n − 1))).

    Args:
        num_data: n.
        start: the covariate's smallest value.
        seed: seed of the noise.

    Returns:
        The [`Regression`][numpyro_transport.targets.Regression].

    Examples:
        >>> from numpyro_transport.targets import flat_regression
        >>> target = flat_regression()
        >>> {k: (round(m, 3), round(sd, 3)) for k, (m, sd) in target.moments.items()}
        {'a': (51.501, 88.683), 'b': (0.476, 0.044), 's': (0.921, 0.097)}
    """
    x = np.linspace(start, start + 10.0, num_data)
    y = 3.0 + 0.5 * x + np.random.default_rng(seed).normal(0.0, 1.0, num_data)
    design = np.stack([np.ones(num_data), x], axis=1)
    gram_inv = np.linalg.inv(design.T @ design)
    beta = gram_inv @ design.T @ y
    rss = float(np.sum((y - design @ beta) ** 2))
    nu = num_data - 3
    cov = rss / (nu - 2) * gram_inv
    alpha = nu / 2
    mean_s = np.sqrt(rss / 2) * np.exp(special.gammaln(alpha - 0.5) - special.gammaln(alpha))
    sd_s = np.sqrt(rss / 2 / (alpha - 1) - mean_s**2)
    moments = {
        "a": (float(beta[0]), float(np.sqrt(cov[0, 0]))),
        "b": (float(beta[1]), float(np.sqrt(cov[1, 1]))),
        "s": (float(mean_s), float(sd_s)),
    }
    s2 = rss / (num_data - 1)
    mode = np.append(beta, 0.5 * np.log(s2))
    mode_cov = np.zeros((3, 3))
    mode_cov[:2, :2] = s2 * gram_inv
    mode_cov[2, 2] = 1 / (2 * (num_data - 1))
    return Regression(_flat_regression_model, x, y, moments, mode, mode_cov)
