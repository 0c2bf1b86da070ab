"""Particle independent Metropolis–Hastings (Andrieu, Doucet & Holenstein 2010) on a sweep.

A frozen sweep gives weighted particles (θ_i, W_i) and an unbiased evidence estimate Ẑ*. PIMH
draws θ* with probability W_i and moves the chain from (θ, Ẑ) to (θ*, Ẑ*) with probability
min(1, Ẑ*/Ẑ), where Ẑ came with θ. The chain targets exp(logdensity)/Z exactly, for any number
of particles.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from numpyro_transport.sweep import SweepResult
from numpyro_transport.weights import ess

__all__ = ["PIMHState", "PIMHInfo", "accept"]


class PIMHState(NamedTuple):
    """State of a PIMH chain over a flat position.

    Attributes:
        position: ``(d,)`` current draw θ.
        logdensity: log-density at ``position`` (from the sweep that proposed it).
        log_evidence: log Ẑ of the sweep that proposed ``position`` (−∞ before the first one,
            so that the first proposal is always accepted).
    """

    position: jax.Array
    logdensity: jax.Array
    log_evidence: jax.Array


class PIMHInfo(NamedTuple):
    """Information on one PIMH transition.

    Attributes:
        acceptance_rate: min(1, Ẑ*/Ẑ); 0 when the sweep or its proposal is not finite.
        is_accepted: Whether the chain moved to the proposal.
        log_evidence: log Ẑ* of the proposing sweep (accepted or not).
        num_evaluations: Log-density evaluations of the transition (the sweep's).
        ess: Final ESS fraction 1/(N ΣW²) of the proposing sweep.
    """

    acceptance_rate: jax.Array
    is_accepted: jax.Array
    log_evidence: jax.Array
    num_evaluations: jax.Array
    ess: jax.Array


def accept(rng_key, state: PIMHState, result: SweepResult) -> tuple[PIMHState, PIMHInfo]:
    """One PIMH transition: draw θ* from ``result`` by weight, accept w.p. min(1, Ẑ*/Ẑ).

    A state with log Ẑ = −∞ accepts any finite proposal (how a chain leaves its warm-up).

    Args:
        rng_key: a JAX PRNG key (the choice of θ* and the accept test).
        state: the current [`PIMHState`][numpyro_transport.pimh.PIMHState].
        result: the [`SweepResult`][numpyro_transport.sweep.SweepResult] of a fresh frozen sweep.

    Returns:
        The next [`PIMHState`][numpyro_transport.pimh.PIMHState] and the transition's
        [`PIMHInfo`][numpyro_transport.pimh.PIMHInfo].
    """
    k_select, k_accept = jax.random.split(rng_key)
    index = jax.random.categorical(k_select, result.log_weights)
    proposal = result.particles[index]
    logdensity = result.particle_log_density[index]
    finite = (
        jnp.isfinite(result.log_evidence)
        & jnp.isfinite(logdensity)
        & jnp.all(jnp.isfinite(proposal))
    )
    ratio = jnp.exp(jnp.minimum(result.log_evidence - state.log_evidence, 0.0))
    prob = jnp.where(finite, ratio, 0.0)
    is_accepted = jax.random.uniform(k_accept) < prob
    new_state = jax.tree.map(
        lambda new, old: jnp.where(is_accepted, new, old),
        PIMHState(proposal, logdensity, result.log_evidence),
        state,
    )
    info = PIMHInfo(
        acceptance_rate=prob,
        is_accepted=is_accepted,
        log_evidence=result.log_evidence,
        num_evaluations=result.num_evaluations,
        ess=ess(result.log_weights) / result.log_weights.shape[0],
    )
    return new_state, info
