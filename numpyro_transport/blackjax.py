"""Annealed stochastic transport as a BlackJAX sampling algorithm.

``init`` runs the warm-up: adaptive sweeps that fit the Gaussian reference to the target and
freeze the λ-grid (:mod:`numpyro_transport.warmup`). Each ``step`` is then one particle
independent Metropolis–Hastings transition on a frozen sweep (:mod:`numpyro_transport.pimh`):
exact for any number of particles, and free of gradients. Positions are pytrees, flattened with
``jax.flatten_util.ravel_pytree``.
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

from numpyro_transport import pimh
from numpyro_transport import warmup as _warmup
from numpyro_transport.config import TransportConfig
from numpyro_transport.reference import Reference, broad, from_moments
from numpyro_transport.sweep import Schedule, sweep

__all__ = ["ASTState", "ASTInfo", "init", "build_kernel", "as_top_level_api", "ast"]

#: Information on one transition (fields documented in :class:`~numpyro_transport.pimh.PIMHInfo`).
ASTInfo = pimh.PIMHInfo


class ASTState(NamedTuple):
    """State of the AST chain.

    position
        Current draw θ, a pytree like the initial position.
    logdensity
        log-density at ``position``.
    log_evidence
        log Ẑ of the sweep that proposed ``position``; −∞ after ``init``, so the first step
        always moves.
    reference
        The Gaussian :class:`~numpyro_transport.reference.Reference` fitted by the warm-up,
        over the flattened position.
    schedule
        The :class:`~numpyro_transport.sweep.Schedule` (λ-grid and inner sizes) frozen by the
        warm-up; every step replays it, so each Ẑ* is unbiased.
    """

    position: ArrayTree
    logdensity: jax.Array
    log_evidence: jax.Array
    reference: Reference
    schedule: Schedule


def _flat(logdensity_fn: Callable, unravel: Callable) -> Callable:
    return lambda u: logdensity_fn(unravel(u))


class _Warmup(NamedTuple):
    """Carry of the warm-up loop: the warm-up state, sweeps run, sweeps run after tempering."""

    state: _warmup.WarmupState
    num_sweeps: jax.Array
    num_final_phase: jax.Array


def init(
    position: ArrayLikeTree,
    logdensity_fn: Callable,
    rng_key: PRNGKey | None = None,
    *,
    config: TransportConfig | None = None,
    num_warmup_sweeps: int = 3,
    tempering_ess: float = 0.05,
    max_tempering_sweeps: int = 20,
    reference: tuple | None = None,
) -> ASTState:
    """Warm up on ``logdensity_fn`` and return the chain state at ``position``.

    As in :func:`~numpyro_transport.transport`: from the reference N(position, I) (or
    ``reference=(mean, cov)`` over the flattened position), moved first by a tempered SMC run
    if it is far from the target (:func:`~numpyro_transport.warmup.smc_reference`), adaptive
    sweeps of the tempered target p^β·reference^(1−β) refit the reference while β < 1 (at most
    ``max_tempering_sweeps``), then ``num_warmup_sweeps`` more run, the last at β = 1 with its
    grid frozen (see :mod:`numpyro_transport.warmup`). Pure JAX: jit-able and vmap-able over
    positions and keys. ``rng_key`` defaults to ``jax.random.key(0)``, ``config`` to
    ``TransportConfig()``.
    """
    if num_warmup_sweeps < 1:
        raise ValueError(f"num_warmup_sweeps={num_warmup_sweeps!r} must be at least 1.")
    rng_key = jax.random.key(0) if rng_key is None else rng_key
    config = TransportConfig() if config is None else config
    flat, unravel = ravel_pytree(position)
    flat_logdensity = _flat(logdensity_fn, unravel)
    start = (
        broad(flat.shape[0])._replace(mean=flat) if reference is None else from_moments(*reference)
    )
    pool_key, sweep_key = jax.random.split(rng_key)
    state, _ = _warmup.init(pool_key, flat_logdensity, start, config, tempering_ess)
    state = jax.lax.cond(
        state.temperature < _warmup.SMC_BELOW,
        lambda s: _warmup.smc_reference(
            jax.random.fold_in(rng_key, 1), s, flat_logdensity, config, tempering_ess
        )[0],
        lambda s: s,
        state,
    )

    def warmup_sweep(carry: _Warmup) -> _Warmup:
        state, i, j = carry
        tempering = (state.temperature < 1) & (i < max_tempering_sweeps) & (j == 0)
        final = ~tempering & (j == num_warmup_sweeps - 1)
        result = sweep(
            jax.random.fold_in(sweep_key, i),
            flat_logdensity,
            state.reference,
            config,
            state.schedule,
            temperature=_warmup.sweep_temperature(state, final),
            adaptive=True,
        )
        state, _ = _warmup.adapt(state, result, flat_logdensity, config, tempering_ess, final)
        return _Warmup(state, i + 1, j + jnp.where(tempering, 0, 1))

    zero = jnp.zeros((), jnp.int32)
    done = jax.lax.while_loop(
        lambda carry: carry.num_final_phase < num_warmup_sweeps,
        warmup_sweep,
        _Warmup(state, zero, zero),
    )
    logdensity = flat_logdensity(flat)
    return ASTState(
        position,
        logdensity,
        jnp.full_like(logdensity, -jnp.inf),
        done.state.reference,
        done.state.schedule,
    )


def build_kernel(config: TransportConfig) -> Callable:
    """Build the AST kernel: one PIMH transition on a frozen sweep.

    Returns
    -------
    A kernel ``(rng_key, state, logdensity_fn) -> (state, info)`` of type
    ``(PRNGKey, ASTState, Callable) -> (ASTState, ASTInfo)``; pure JAX, so jit-able.
    """

    def kernel(
        rng_key: PRNGKey, state: ASTState, logdensity_fn: Callable
    ) -> tuple[ASTState, ASTInfo]:
        flat, unravel = ravel_pytree(state.position)
        flat_logdensity = _flat(logdensity_fn, unravel)
        k_sweep, k_accept = jax.random.split(rng_key)
        result = sweep(k_sweep, flat_logdensity, state.reference, config, state.schedule)
        chain = pimh.PIMHState(flat, state.logdensity, state.log_evidence)
        chain, info = pimh.accept(k_accept, chain, result)
        new_state = state._replace(
            position=unravel(chain.position),
            logdensity=chain.logdensity,
            log_evidence=chain.log_evidence,
        )
        return new_state, info

    return kernel


def as_top_level_api(
    logdensity_fn: Callable,
    *,
    num_particles: int = 256,
    num_warmup_sweeps: int = 3,
    tempering_ess: float = 0.05,
    max_tempering_sweeps: int = 20,
    reference: tuple | None = None,
    **options,
) -> SamplingAlgorithm:
    """The user interface of the AST kernel: warm-up in ``init``, PIMH transitions in ``step``.

    Each step costs about N·M·K log-density evaluations (N particles, M inner draws, K steps
    of the frozen grid; see ``info.num_evaluations``) and no gradient. ``init`` runs the
    warm-up, which costs a few such sweeps.

    Parameters
    ----------
    logdensity_fn
        The unnormalized log-density of the target, over pytree positions. Non-finite values
        give zero weight.
    num_particles
        N, particles per sweep.
    num_warmup_sweeps
        Adaptive sweeps (≥ 1) run by ``init`` after the tempered ones; the last one's λ-grid
        is frozen.
    tempering_ess
        Warm-up tempers towards p^β·reference^(1−β) while importance sampling from the
        reference has an ESS fraction below this.
    max_tempering_sweeps
        Cap on those tempered sweeps.
    reference
        Optional ``(mean, cov)`` of the first reference over the flattened position; default
        N(position, I).
    **options
        Other :class:`~numpyro_transport.TransportConfig` options.

    Returns
    -------
    A ``SamplingAlgorithm`` with ``init(position, rng_key=None)`` and ``step(rng_key, state)``.

    Examples
    --------
    Sample N(1, I) in two dimensions, where Z = 2π. ``step`` is pure, so
    ``blackjax.util.run_inference_algorithm`` jit-compiles the chain; keep only the positions
    (each state also carries the frozen reference and grid):

    >>> import jax, jax.numpy as jnp
    >>> import blackjax
    >>> from numpyro_transport import combine_evidence
    >>> from numpyro_transport.blackjax import ast
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
    config = TransportConfig(num_particles=num_particles, **options)
    initialize = functools.partial(
        init,
        config=config,
        num_warmup_sweeps=num_warmup_sweeps,
        tempering_ess=tempering_ess,
        max_tempering_sweeps=max_tempering_sweeps,
        reference=reference,
    )
    return build_sampling_algorithm(
        build_kernel(config), initialize, logdensity_fn, pass_rng_key_to_init=True
    )


#: ``ast(logdensity_fn, ...)`` builds the algorithm; ``ast.init`` and ``ast.build_kernel`` are
#: the low-level pieces, as for ``blackjax.mala``.
ast = GenerateSamplingAPI(as_top_level_api, init, build_kernel)
