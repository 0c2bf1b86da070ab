"""Many exact draws per sweep: the index refresh draws by weight, the chain stays exact under
every chain method, an iteration without a proposal runs no sweep, and the evidence uses each
proposed sweep once."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.diagnostics import effective_sample_size
from numpyro.infer import MCMC
from scipy import stats

from numpyro_transport import AST, log_evidence, pimh
from numpyro_transport.kernel import draws_for

OPTIONS = dict(num_particles=32, max_inner_blocks=1, max_steps=32)
DRAWS_PER_SWEEP = 8
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
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=Y_OBS)


def test_refresh_draws_the_index_by_weight():
    """Seeds 0–3999: the refreshed index follows the weights (χ² at 0.1 %; never a zero-weight
    particle), and a uniform draw of the index fails the same test."""
    w = jnp.array([0.05, 0.15, 0.8, 0.0])
    system = pimh.ParticleSystem(jnp.arange(4.0)[:, None], jnp.zeros(4), jnp.log(w), 0.0)
    state = pimh.PIMHState(system, jnp.zeros((), jnp.int32))
    keys = jax.random.split(jax.random.key(0), 4000)
    index = jax.vmap(lambda k: pimh.refresh(k, state).index)(keys)
    counts = np.bincount(np.asarray(index), minlength=4)
    assert counts[3] == 0
    assert stats.chisquare(counts[:3], 4000 * np.asarray(w[:3])).pvalue > 1e-3
    uniform = np.bincount(np.asarray(jax.random.randint(keys[0], (4000,), 0, 3)), minlength=3)
    assert stats.chisquare(uniform, 4000 * np.asarray(w[:3])).pvalue < 1e-3


def test_draws_rule():
    """``draws_for``: the sweep's effective sample size N·ESS, at least 1 and at most N."""
    assert int(draws_for(jnp.float32(0.5), 64)) == 32
    assert int(draws_for(jnp.float32(0.001), 64)) == 1
    assert int(draws_for(jnp.float32(1.0), 64)) == 64
    assert int(draws_for(jnp.float32(jnp.nan), 64)) == 1


@pytest.mark.parametrize("chain_method", ["sequential", "vectorized", "parallel"])
def test_many_draws_per_sweep_are_exact(chain_method):
    """Seed 0, 2 chains × 400 draws, 8 draws per sweep (50 sweeps a chain): the mixture's mode
    weight within 4 Monte Carlo standard errors of 0.7 (se from the draws' ESS) and mu's draws
    pass a Kolmogorov–Smirnov test against N(1/2, 1/2) at the ESS (D·√ESS < 1.95, p ≈ 0.001);
    every 8th iteration proposes a sweep and the evidence uses those only (within 4 se of the
    exact log Z)."""
    mcmc = MCMC(
        AST(mixture_and_conjugate, draws_per_sweep=DRAWS_PER_SWEEP, **OPTIONS),
        num_warmup=3,
        num_samples=400,
        num_chains=2,
        chain_method=chain_method,
        progress_bar=False,
    )
    mcmc.run(jax.random.key(0))
    samples = mcmc.get_samples(group_by_chain=True)
    new = np.asarray(mcmc.get_extra_fields(group_by_chain=True)["new_sweep"])
    assert np.all(new[:, ::DRAWS_PER_SWEEP]) and new.sum() == 2 * 400 // DRAWS_PER_SWEEP

    right = (np.asarray(samples["x"]) > 0).astype(float)
    ess = float(effective_sample_size(right))
    se = np.sqrt(0.7 * 0.3 / ess)
    assert abs(right.mean() - 0.7) < 4 * se, (right.mean(), se, ess)

    mu = np.asarray(samples["mu"])
    ess_mu = float(effective_sample_size(mu))
    ks = stats.kstest(mu.reshape(-1), stats.norm(0.5, np.sqrt(0.5)).cdf).statistic
    assert ks * np.sqrt(ess_mu) < 1.95, (ks, ess_mu)

    log_z, se_z = log_evidence(mcmc)
    exact = float(dist.Normal(0.0, np.sqrt(2.0)).log_prob(Y_OBS))
    assert abs(log_z - exact) < 4 * se_z + 0.01, (log_z, se_z, exact)


def test_an_iteration_without_a_proposal_runs_no_sweep():
    """Under ``chain_method="vectorized"`` the kernel chooses between a sweep and a refresh once
    for all chains, so an iteration that only refreshes evaluates the target zero times (counted
    by a host callback in the potential), while one that proposes evaluates it."""
    calls = []

    def potential(z):
        jax.debug.callback(lambda: calls.append(1))
        return 0.5 * jnp.sum(z["x"] ** 2)

    kernel = AST(potential_fn=potential, draws_per_sweep=3, **OPTIONS)
    init = {"x": jnp.zeros((2, 2))}
    state = kernel.init(jax.random.split(jax.random.key(0), 2), 1, init_params=init)
    sample = jax.jit(kernel.sample)
    counts = []
    for _ in range(7):  # warm-up, then propose, refresh, refresh, propose, refresh, refresh
        calls.clear()
        state = jax.block_until_ready(sample(state, (), {}))
        jax.effects_barrier()
        counts.append(len(calls))
    assert all(counts[i] > 0 for i in (0, 1, 4)), counts
    assert all(counts[i] == 0 for i in (2, 3, 5, 6)), counts
    assert np.asarray(state.new_sweep).tolist() == [False, False]
