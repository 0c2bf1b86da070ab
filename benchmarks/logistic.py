"""Synthetic Bayesian logistic regression, a target whose log Z and moments are unknown."""

import jax
import jax.numpy as jnp

from numpyro_transport.targets import Target

__all__ = ["logistic_regression"]


def logistic_regression(seed=0, num_data=200, dim=5) -> Target:
    """Posterior of ``dim`` logistic-regression coefficients on synthetic data.

    Design: ``dim - 1`` standardized Gaussian covariates plus an intercept column (last).
    True coefficients ~ N(0, I), labels ~ Bernoulli(sigmoid(X β)). The log-density is the
    normalized prior N(0, I) plus the log-likelihood, so Z is the marginal likelihood of the
    data. ``log_z``, ``mean`` and ``cov`` are unknown (``None``).
    """
    k_x, k_beta, k_y = jax.random.split(jax.random.key(seed), 3)
    raw = jax.random.normal(k_x, (num_data, dim - 1))
    covariates = (raw - raw.mean(axis=0)) / raw.std(axis=0)
    design = jnp.concatenate([covariates, jnp.ones((num_data, 1))], axis=1)
    true_beta = jax.random.normal(k_beta, (dim,))
    labels = jax.random.bernoulli(k_y, jax.nn.sigmoid(design @ true_beta)).astype(design.dtype)
    signs = 2.0 * labels - 1.0  # y ∈ {0, 1} -> ±1: log p(y | η) = log σ(±η)

    def logdensity_fn(beta):
        log_prior = -0.5 * jnp.sum(beta**2) - 0.5 * dim * jnp.log(2 * jnp.pi)
        return log_prior + jnp.sum(jax.nn.log_sigmoid(signs * (design @ beta)))

    name = f"logistic d={dim} n={num_data}"
    return Target(name, logdensity_fn, dim, log_z=None, mean=None)
