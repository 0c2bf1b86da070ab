"""Annealed stochastic transport as a BlackJAX sampling algorithm.

``init`` runs the warm-up of [`numpyro_transport.driver`][numpyro_transport.driver]: adaptive sweeps
that fit the Gaussian reference to the target and freeze the λ-grid. Each ``step`` is then one
particle independent Metropolis–Hastings transition on a frozen sweep
([`numpyro_transport.pimh`][numpyro_transport.pimh]): exact for any number of particles, and free of
gradients. Positions are pytrees, flattened with ``jax.flatten_util.ravel_pytree``.
"""

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from blackjax import GenerateSamplingAPI
from blackjax.base import SamplingAlgorithm, build_sampling_algorithm
from blackjax.types import ArrayLikeTree, ArrayTree, PRNGKey
from jax.flatten_util import ravel_pytree

from numpyro_transport import driver, pimh
from numpyro_transport.config import TransportConfig
from numpyro_transport.reference import Reference, broad, from_moments
from numpyro_transport.sweep import Schedule, run_sweep
from numpyro_transport.validation import check_logdensity, check_reference, integer, real

__all__ = ["ASTChainState", "ASTInfo", "init", "build_kernel", "as_top_level_api", "ast"]

#: Information on one transition (fields documented in
#: [`PIMHInfo`][numpyro_transport.pimh.PIMHInfo]).
ASTInfo = pimh.PIMHInfo


class ASTChainState(NamedTuple):
    """State of the AST chain of the BlackJAX API.

    Attributes:
        position: current draw θ, a pytree like the initial position.
        logdensity: log-density at ``position``.
        log_evidence: log Ẑ of the sweep that proposed ``position``; −∞ after ``init``, so
            the first step always moves.
        reference: the Gaussian [`Reference`][numpyro_transport.Reference] fitted by
            the warm-up, over the flattened position.
        schedule: the [`Schedule`][numpyro_transport.sweep.Schedule] (λ-grid and inner sizes)
            frozen by the warm-up; every step replays it, so each Ẑ* is unbiased.
    """

    position: ArrayTree
    logdensity: jax.Array
    log_evidence: jax.Array
    reference: Reference
    schedule: Schedule


def _flat(logdensity_fn: Callable, unravel: Callable) -> Callable:
    return lambda u: logdensity_fn(unravel(u))


def init(
    position: ArrayLikeTree,
    logdensity_fn: Callable,
    rng_key: PRNGKey | None = None,
    *,
    config: TransportConfig | None = None,
    num_warmup: int = driver.NUM_WARMUP,
    tempering_ess: float = 0.05,
    reference: tuple | None = None,
) -> ASTChainState:
    """Warm up on ``logdensity_fn`` and return the chain state at ``position``.

    From the reference N(position, I) (or ``reference=(mean, cov)`` over the flattened
    position), moved first by a tempered SMC run if it is far from the target, ``num_warmup``
    warm-up sweeps fit the reference and fix the λ-grid (the warm-up rule of
    [`numpyro_transport.driver`][numpyro_transport.driver]). Pure JAX: jit-able and vmap-able over
    positions and keys.

    Args:
        position: the initial position, a pytree.
        logdensity_fn: the unnormalized log-density over pytree positions.
        rng_key: a JAX PRNG key; defaults to ``jax.random.key(0)``.
        config: the [`TransportConfig`][numpyro_transport.TransportConfig]; defaults to
            ``TransportConfig()``.
        num_warmup: warm-up sweeps (≥ 1), tempered ones included.
        tempering_ess: warm-up tempers towards p^β·reference^(1−β) while importance sampling
            from the reference has an ESS fraction below this.
        reference: optional ``(mean, cov)`` of the first reference over the flattened
            position.

    Returns:
        The chain state at ``position``, with the warmed-up reference and frozen grid.
    """
    integer("num_warmup", num_warmup, 1, ": the last warm-up sweep fixes the λ-grid")
    real("tempering_ess", tempering_ess, 0, 1, open_low=True, open_high=True)
    rng_key = jax.random.key(0) if rng_key is None else rng_key
    config = TransportConfig() if config is None else config
    flat, unravel = ravel_pytree(position)
    flat_logdensity = _flat(logdensity_fn, unravel)
    check_logdensity(flat_logdensity, flat.shape[0])
    dim = flat.shape[0]
    start = (
        broad(dim)._replace(mean=flat)
        if reference is None
        else from_moments(*check_reference(*reference, dim))
    )
    pool_key, sweep_key = jax.random.split(rng_key)
    state, _ = driver.init(pool_key, flat_logdensity, start, config, tempering_ess)
    state = jax.lax.cond(
        driver.needs_smc_reference(state),
        lambda s: driver.smc_reference(
            jax.random.fold_in(rng_key, 1), s, flat_logdensity, config, tempering_ess
        ),
        lambda s: s,
        state,
    )
    state = driver.warmup_loop(sweep_key, state, flat_logdensity, config, tempering_ess, num_warmup)
    logdensity = flat_logdensity(flat)
    return ASTChainState(
        position,
        logdensity,
        jnp.full_like(logdensity, -jnp.inf),
        state.warmup.reference,
        state.warmup.schedule,
    )


def build_kernel(config: TransportConfig) -> Callable:
    """Build the AST kernel: one PIMH transition on a frozen sweep.

    Args:
        config: the [`TransportConfig`][numpyro_transport.TransportConfig] of the sweeps.

    Returns:
        A kernel ``(rng_key, state, logdensity_fn) -> (state, info)`` of type
        ``(PRNGKey, ASTChainState, Callable) -> (ASTChainState, ASTInfo)``; pure JAX, so
        jit-able.
    """

    def kernel(
        rng_key: PRNGKey, state: ASTChainState, logdensity_fn: Callable
    ) -> tuple[ASTChainState, ASTInfo]:
        flat, unravel = ravel_pytree(state.position)
        flat_logdensity = _flat(logdensity_fn, unravel)
        k_sweep, k_accept = jax.random.split(rng_key)
        result = run_sweep(k_sweep, flat_logdensity, state.reference, config, state.schedule)
        # The state keeps the draw and its log Ẑ, not the system it came from.
        chain = pimh.init(flat, state.logdensity, config.num_particles, state.log_evidence)
        chain, info = pimh.propose(k_accept, chain, result)
        new_state = state._replace(
            position=unravel(chain.position),
            logdensity=chain.logdensity,
            log_evidence=chain.system.log_evidence,
        )
        return new_state, info

    return kernel


def as_top_level_api(
    logdensity_fn: Callable,
    *,
    num_particles: int = 256,
    num_warmup: int = driver.NUM_WARMUP,
    tempering_ess: float = 0.05,
    reference: tuple | None = None,
    **options,
) -> SamplingAlgorithm:
    """The user interface of the AST kernel: warm-up in ``init``, PIMH transitions in ``step``.

    Each step costs about N·M·K log-density evaluations (N particles, M inner draws, K steps
    of the frozen grid; see ``info.num_evaluations``) and no gradient. ``init`` runs the
    warm-up, which costs a few such sweeps.

    Args:
        logdensity_fn: the unnormalized log-density of the target, over pytree positions.
            Non-finite values give zero weight.
        num_particles: N, particles per sweep.
        num_warmup: warm-up sweeps (≥ 1) run by ``init``, tempered ones included; the last
            one's λ-grid is frozen (the warm-up rule of
            [`numpyro_transport.driver`][numpyro_transport.driver]).
        tempering_ess: warm-up tempers towards p^β·reference^(1−β) while importance sampling
            from the reference has an ESS fraction below this.
        reference: optional ``(mean, cov)`` of the first reference over the flattened
            position; default N(position, I).
        **options: other [`TransportConfig`][numpyro_transport.TransportConfig] options.

    Returns:
        A ``SamplingAlgorithm`` with ``init(position, rng_key=None)`` and
        ``step(rng_key, state)``.

    Examples:
        Sample N(1, I) in two dimensions, where Z = 2π. ``step`` is pure, so
        ``blackjax.util.run_inference_algorithm`` jit-compiles the chain; keep only the
        positions (each state also carries the frozen reference and grid):

        >>> import jax, jax.numpy as jnp
        >>> import blackjax
        >>> from numpyro_transport.weights import combine_evidence
        >>> from numpyro_transport.blackjax_api import ast
        >>> logdensity_fn = lambda x: -0.5 * jnp.sum((x["theta"] - 1.0) ** 2)
        >>> algorithm = ast(logdensity_fn, num_particles=32, max_inner_blocks=1, max_steps=32)
        >>> _, (positions, infos) = blackjax.util.run_inference_algorithm(
        ...     jax.random.key(0),
        ...     algorithm,
        ...     200,
        ...     initial_position={"theta": jnp.zeros(2)},
        ...     transform=lambda state, info: (state.position, info),
        ... )
        >>> positions["theta"].shape
        (200, 2)
        >>> bool(jnp.all(jnp.abs(positions["theta"].mean(0) - 1.0) < 0.4))
        True

        Each step's sweep estimates Z without bias, so the chain also gives the evidence:

        >>> log_z, se = combine_evidence(infos.log_evidence)
        >>> bool(abs(log_z - jnp.log(2 * jnp.pi)) < 4 * se + 0.01)
        True
    """
    config = TransportConfig.from_options("ast()", num_particles=num_particles, **options)
    integer("num_warmup", num_warmup, 1, ": the last warm-up sweep fixes the λ-grid")
    real("tempering_ess", tempering_ess, 0, 1, open_low=True, open_high=True)
    initialize = functools.partial(
        init,
        config=config,
        num_warmup=num_warmup,
        tempering_ess=tempering_ess,
        reference=reference,
    )
    return build_sampling_algorithm(
        build_kernel(config), initialize, logdensity_fn, pass_rng_key_to_init=True
    )


#: ``ast(logdensity_fn, ...)`` builds the algorithm; ``ast.init`` and ``ast.build_kernel`` are
#: the low-level pieces, as for ``blackjax.mala``.
ast = GenerateSamplingAPI(as_top_level_api, init, build_kernel)
