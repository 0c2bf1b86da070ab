"""The BlackJAX-style API (after blackjax's tests/mcmc/test_sampling.py): exact moments on a
Gaussian, a jit-able step that traces once, and pytree positions.

One algorithm (a pytree target, small options) serves every test, so it compiles once.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.diagnostics import effective_sample_size

from numpyro_transport import TransportConfig, combine_evidence
from numpyro_transport.blackjax_api import ASTChainState, ASTInfo, ast

OPTIONS = dict(num_particles=32, max_inner_blocks=1, max_steps=32)
# Two leaves, {"a": scalar, "b": (2,)}, independent N(1, 1) and N(−3, 0.5²), in ravel order.
LOC, SCALE = np.array([1.0, -3.0, -3.0]), np.array([1.0, 0.5, 0.5])
LOG_Z = np.sum(0.5 * np.log(2 * np.pi) + np.log(SCALE))  # of the unnormalized density below
POSITION = {"a": jnp.zeros(()), "b": jnp.zeros(2)}


def gaussian_logdensity(position):
    b = (position["b"] + 3.0) / 0.5
    return -0.5 * (position["a"] - 1.0) ** 2 - 0.5 * jnp.sum(b**2)


def _flat(positions):
    """``(steps, 3)`` draws in ravel order."""
    return np.concatenate([positions["a"][:, None], positions["b"]], axis=1)


@pytest.fixture(scope="module")
def algorithm():
    return ast(gaussian_logdensity, **OPTIONS)


@pytest.fixture(scope="module")
def initial_state(algorithm):
    """``init`` is pure JAX; jit-compiled, the warm-up costs less than op by op."""
    return jax.jit(algorithm.init)(POSITION, jax.random.key(0))


@pytest.fixture(scope="module")
def step(algorithm):
    """The jitted step; ``chex.assert_max_traces`` fails any test that retraces it."""
    return jax.jit(chex.assert_max_traces(algorithm.step, n=1))


def run(step, state, rng_key, num_steps):
    """``num_steps`` jitted steps from ``state``: the final state, and the stacked positions and
    infos."""
    trace = []
    for key in jax.random.split(rng_key, num_steps):
        state, info = step(key, state)
        trace.append((state.position, info))
    positions, infos = jax.tree.map(lambda *a: np.stack(a), *trace)
    return state, positions, infos


def test_gaussian_moments_and_evidence(step, initial_state):
    """Seed 1, 20 burn-in steps then 400 draws; each coordinate's mean and standard deviation,
    and log Ẑ (mean of the sweeps' Ẑ), lie within 4 standard errors, the chain's from its ESS."""
    state, _, _ = run(step, initial_state, jax.random.key(1), 20)
    _, positions, infos = run(step, state, jax.random.key(2), 400)
    for x, loc, scale in zip(_flat(positions).T, LOC, SCALE, strict=True):
        mean, std = x.mean(), x.std()
        se_mean = std / np.sqrt(effective_sample_size(x[None]))
        squares = (x - mean) ** 2
        se_std = squares.std() / np.sqrt(effective_sample_size(squares[None])) / (2 * std)
        assert abs(mean - loc) < 4 * se_mean, (mean, loc, se_mean)
        assert abs(std - scale) < 4 * se_std, (std, scale, se_std)

    log_z, se = combine_evidence(infos.log_evidence)
    assert abs(log_z - LOG_Z) < 4 * se + 0.01
    assert 0.2 < infos.acceptance_rate.mean() <= 1
    assert np.all(infos.num_evaluations > 0)


def test_jitted_step_traces_once(step, initial_state):
    """jit works on ``step``; states from ``init`` and from ``step`` share one trace."""
    state, _, infos = run(step, initial_state, jax.random.key(3), 5)
    assert isinstance(state, ASTChainState)
    assert infos.is_accepted[0]  # log Ẑ = −∞ after init: the first step always moves
    assert np.all(np.isfinite(infos.log_evidence))
    assert np.all((infos.ess > 0) & (infos.ess <= 1))
    assert step._cache_size() == 1


def test_pytree_position_keeps_its_structure(step, initial_state):
    """The start N(0, I) is far from the target, so the warm-up tempers first (β starts near
    0.17). Seed 0: the fitted reference sits on the target in ravel order (within 0.3), and
    ``init`` and ``step`` keep the structure, shapes and dtypes of the position."""
    reference = initial_state.reference
    np.testing.assert_allclose(reference.mean, LOC, atol=0.3)
    std = np.sqrt(np.diag(reference.scale_tril @ reference.scale_tril.T))
    np.testing.assert_allclose(std, SCALE, atol=0.3)

    new_state, info = step(jax.random.key(1), initial_state)
    assert isinstance(info, ASTInfo)
    leaves = jax.tree.map(lambda v: (v.shape, v.dtype), POSITION)
    for s in (initial_state, new_state):
        assert jax.tree.map(lambda v: (v.shape, v.dtype), s.position) == leaves


def test_low_level_api_matches_the_top_level_one(algorithm, initial_state):
    """``ast.init`` and ``ast.build_kernel`` are the pieces that ``ast(...)`` binds, as for
    ``blackjax.mala`` (checked abstractly: the same state and transition types and shapes)."""
    config = TransportConfig(**OPTIONS)
    key = jax.random.key(0)
    state = jax.eval_shape(
        lambda key: ast.init(POSITION, gaussian_logdensity, key, config=config), key
    )
    kernel = ast.build_kernel(config)
    low_level = jax.eval_shape(lambda k, s: kernel(k, s, gaussian_logdensity), key, initial_state)
    top_level = jax.eval_shape(algorithm.step, key, initial_state)
    assert state == jax.eval_shape(lambda: initial_state)
    assert low_level == top_level
