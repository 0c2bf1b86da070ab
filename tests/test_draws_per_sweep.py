"""Many exact draws per sweep: the index refresh draws by weight, the rule, and an iteration
without a proposal runs no sweep. (Exactness under every chain method, and the evidence over
the proposed sweeps: test_kernel_contract.py's ``test_chain_methods``.)"""

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats
from shared import OPTIONS

from numpyro_transport import AST, pimh
from numpyro_transport.kernel import draws_for


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
