"""The small model and options shared by the kernel tests.

Runs with the same model source, options and shapes compile to the same XLA program, so the
persistent compilation cache of ``conftest.py`` compiles each one once across test modules.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC
from numpyro.infer.util import potential_energy

from numpyro_transport import AST

Y = jnp.array([0.5, 1.2, 0.3, 1.9, 1.1])
OPTIONS = dict(num_particles=32, max_inner_blocks=1, max_steps=32)
NUM_SAMPLES = 6


#: ``transport()`` options of the half-normal target (test_api.py, test_arviz.py).
HALF_NORMAL_OPTIONS = dict(dim=1, num_particles=256, progress=False)


def half_normal(u):
    """N(0, 1) on u > 0 and NaN elsewhere: Z = √(2π)/2."""
    return jnp.where(u[0] > 0, -0.5 * u[0] ** 2, jnp.nan)


def model(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    numpyro.deterministic("snr", mu / sigma)
    with numpyro.plate("obs", y.shape[0]):
        numpyro.sample("y", dist.Normal(mu, sigma), obs=y)


#: Draws per sweep of the exactness runs of ``mixture_and_conjugate``.
DRAWS_PER_SWEEP = 8
#: Its observation.
Y_OBS = 1.0


def mixture_and_conjugate():
    """Two independent sites with closed-form posteriors: ``x`` is the mixture
    0.3·N(−2, 0.5²) + 0.7·N(2, 0.5²) (its prior, unobserved), and ``mu`` ~ N(0, 1) observed
    through y = 1 ~ N(mu, 1), so mu | y ~ N(1/2, 1/2); log Z = log N(1; 0, 2)."""
    mix = dist.MixtureSameFamily(
        dist.Categorical(jnp.array([0.3, 0.7])), dist.Normal(jnp.array([-2.0, 2.0]), 0.5)
    )
    numpyro.sample("x", mix)
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    numpyro.deterministic("twice_mu", 2 * mu)
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=Y_OBS)


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


def assert_potential_energy(state, batched=False, model=model, args=(Y,)):
    """The state's potential energy (which AST recovers from the sweep's inner log-ratios
    instead of evaluating it) equals NumPyro's at the state's draw."""
    energy = lambda z: potential_energy(model, args, {}, z)  # noqa: E731
    expected = jax.vmap(energy)(state.z) if batched else energy(state.z)
    np.testing.assert_allclose(state.potential_energy, expected, rtol=1e-4, atol=1e-4)
