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


#: Seed 0's first draws of mu and per-iteration log Ẑ* before the one-driver refactor (commit
#: 261c108, plain PIMH): one chain (sequential, test_kernel_contract.py) and two (vectorized,
#: test_arviz.py). The
#: refactor changed no draw (to float32 rounding: the weight helpers now shared round
#: differently, by up to 3e-4 nats in log Ẑ*).
PINNED = {
    ("sequential", 1): (
        [[1.0219134092330933, 0.6639392375946045, 0.9769778251647949, 1.0212023258209229]],
        [[-7.0679168701171875, -7.116748809814453, -7.126546859741211, -7.061635971069336]],
    ),
    ("vectorized", 2): (
        [
            [0.4193340241909027, 1.4474077224731445, 1.0809636116027832, 0.742447018623352],
            [1.315079689025879, 0.7536027431488037, 1.1972758769989014, 0.7928594946861267],
        ],
        [
            [-7.044110298156738, -7.060976028442383, -7.196556091308594, -7.050605773925781],
            [-7.145478248596191, -7.094971656799316, -7.108023166656494, -7.06559944152832],
        ],
    ),
}


def assert_pinned(mcmc, chain_method, num_chains):
    """``mcmc`` (seed 0, one draw per sweep) gave the draws pinned before the refactor."""
    mu, log_z = PINNED[chain_method, num_chains]
    grouped = mcmc.get_samples(group_by_chain=True)
    np.testing.assert_allclose(np.asarray(grouped["mu"])[:, :4], mu, rtol=1e-4)
    extra = mcmc.get_extra_fields(group_by_chain=True)
    np.testing.assert_allclose(np.asarray(extra["log_evidence"])[:, :4], log_z, atol=1e-3)
    assert np.all(extra["new_sweep"])
