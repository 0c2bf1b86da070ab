"""Particle independent Metropolis–Hastings (Andrieu, Doucet & Holenstein 2010) on sweeps, with
many exact draws per sweep.

A frozen sweep gives a particle system: weighted particles (θ_i, W_i) and an unbiased evidence
estimate Ẑ. PIMH targets the extended distribution

    π̃(system, k) = ψ(system) · (Ẑ / Z) · W_k,

where ψ is the law of a sweep's particle system and k an index into it; its marginal of θ_k is
exactly exp(logdensity)/Z, for any number of particles. Two moves leave π̃ invariant:

- [`propose`][numpyro_transport.pimh.propose]: a fresh sweep's system replaces the chain's with
  probability min(1, Ẑ*/Ẑ) (an independence sampler on the systems; the index comes along,
  drawn ∝ W*);
- [`refresh`][numpyro_transport.pimh.refresh]: a Gibbs draw of the index given the system,
  k ~ W (the conditional of π̃).

So a cycle of one proposal and any number of refreshes is exact, and a chain that keeps the
accepted system serves a new exact draw at every refresh, at the cost of one categorical draw
instead of a sweep.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from numpyro_transport.sweep import SweepResult
from numpyro_transport.weights import ess

__all__ = ["ParticleSystem", "PIMHState", "PIMHInfo", "system_of", "init", "propose", "refresh"]


class ParticleSystem(NamedTuple):
    """The weighted particles of one sweep.

    Attributes:
        particles: ``(N, d)`` the sweep's exact final selections θ_i.
        log_density: ``(N,)`` log p(θ_i).
        log_weights: ``(N,)`` their normalized log-weights log W_i.
        log_evidence: log Ẑ of the sweep (−∞ for a system that must be replaced by the next
            proposal, e.g. an adaptive warm-up sweep's).
    """

    particles: jax.Array
    log_density: jax.Array
    log_weights: jax.Array
    log_evidence: jax.Array


class PIMHState(NamedTuple):
    """State of a PIMH chain: a particle system and the index of the current draw.

    Attributes:
        system: the chain's [`ParticleSystem`][numpyro_transport.pimh.ParticleSystem].
        index: the current draw's index k; the draw is ``system.particles[k]``.
    """

    system: ParticleSystem
    index: jax.Array

    @property
    def position(self):
        """The current draw θ_k, ``(d,)``."""
        return self.system.particles[self.index]

    @property
    def logdensity(self):
        """log p(θ_k) of the current draw."""
        return self.system.log_density[self.index]


class PIMHInfo(NamedTuple):
    """Information on one PIMH proposal.

    Attributes:
        acceptance_rate: min(1, Ẑ*/Ẑ); 0 when the sweep or its drawn particle is not finite.
        is_accepted: whether the chain moved to the proposed system.
        log_evidence: log Ẑ* of the proposing sweep (accepted or not).
        num_evaluations: log-density evaluations of the proposing sweep.
        ess: final ESS fraction 1/(N ΣW²) of the proposing sweep.
    """

    acceptance_rate: jax.Array
    is_accepted: jax.Array
    log_evidence: jax.Array
    num_evaluations: jax.Array
    ess: jax.Array


def system_of(result: SweepResult) -> ParticleSystem:
    """The particle system of a sweep.

    Args:
        result: the sweep's [`SweepResult`][numpyro_transport.sweep.SweepResult].

    Returns:
        Its particles, their log-densities and log-weights, and its log Ẑ.
    """
    return ParticleSystem(
        result.particles, result.particle_log_density, result.log_weights, result.log_evidence
    )


def init(position, logdensity, num_particles: int, log_evidence=-jnp.inf) -> PIMHState:
    """A chain at ``position`` (by default one whose system the first proposal replaces).

    Args:
        position: ``(d,)`` the current draw.
        logdensity: log p at ``position``.
        num_particles: N, the size of the systems the chain will hold.
        log_evidence: log Ẑ of the sweep that proposed ``position``; −∞ (default) before any.

    Returns:
        A [`PIMHState`][numpyro_transport.pimh.PIMHState] whose system holds ``position`` N
        times, with that log Ẑ.
    """
    particles = jnp.broadcast_to(position, (num_particles, *jnp.shape(position)))
    log_w = jnp.full(num_particles, -jnp.log(num_particles), jnp.result_type(float))
    system = ParticleSystem(
        particles,
        jnp.full(num_particles, logdensity),
        log_w,
        jnp.asarray(log_evidence, log_w.dtype),
    )
    return PIMHState(system, jnp.zeros((), jnp.int32))


def refresh(rng_key, state: PIMHState) -> PIMHState:
    """Gibbs refresh of the index: k ~ W, the conditional of the extended target.

    Args:
        rng_key: a JAX PRNG key.
        state: the chain.

    Returns:
        The chain with a new index drawn ∝ the weights of its system.
    """
    index = jax.random.categorical(rng_key, state.system.log_weights)
    return state._replace(index=index.astype(jnp.int32))


def propose(rng_key, state: PIMHState, result: SweepResult) -> tuple[PIMHState, PIMHInfo]:
    """One PIMH proposal: the sweep's system, with an index drawn ∝ W*, replaces the chain's
    with probability min(1, Ẑ*/Ẑ). A chain with log Ẑ = −∞ accepts any finite proposal.

    Args:
        rng_key: a JAX PRNG key.
        state: the chain.
        result: the proposing frozen sweep.

    Returns:
        The new chain and the [`PIMHInfo`][numpyro_transport.pimh.PIMHInfo] of the proposal.
    """
    k_select, k_accept = jax.random.split(rng_key)
    proposal = refresh(k_select, PIMHState(system_of(result), state.index))
    finite = (
        jnp.isfinite(result.log_evidence)
        & jnp.isfinite(proposal.logdensity)
        & jnp.all(jnp.isfinite(proposal.position))
    )
    ratio = jnp.exp(jnp.minimum(result.log_evidence - state.system.log_evidence, 0.0))
    prob = jnp.where(finite, ratio, 0.0)
    is_accepted = jax.random.uniform(k_accept) < prob
    new_state = jax.tree.map(lambda new, old: jnp.where(is_accepted, new, old), proposal, state)
    info = PIMHInfo(
        acceptance_rate=prob,
        is_accepted=is_accepted,
        log_evidence=result.log_evidence,
        num_evaluations=result.num_evaluations,
        ess=ess(result.log_weights) / result.log_weights.shape[0],
    )
    return new_state, info
