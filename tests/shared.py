"""The small model and options shared by the kernel tests.

Runs with the same model source, options and shapes compile to the same XLA program, so the
persistent compilation cache of ``conftest.py`` compiles each one once across test modules.
"""

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC

from numpyro_transport import AST

Y = jnp.array([0.5, 1.2, 0.3, 1.9, 1.1])
OPTIONS = dict(num_particles=32, max_inner_blocks=1, max_steps=32)
NUM_SAMPLES = 6


def model(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    numpyro.deterministic("snr", mu / sigma)
    with numpyro.plate("obs", y.shape[0]):
        numpyro.sample("y", dist.Normal(mu, sigma), obs=y)


def make_mcmc(num_chains=1, chain_method="sequential", kernel=AST, **kwargs):
    """An MCMC run of ``model`` with 2 warm-up and ``NUM_SAMPLES`` sampling iterations."""
    return MCMC(
        kernel(model, **OPTIONS),
        num_warmup=2,
        num_samples=NUM_SAMPLES,
        num_chains=num_chains,
        chain_method=chain_method,
        progress_bar=kwargs.pop("progress_bar", False),
        **kwargs,
    )
