"""Warm-up: adaptive sweeps that move the reference onto the target, then freeze.

The state of the warm-up is the reference N(μ̂, LLᵀ), the tempering exponent β and the
importance ESS of the target from the reference, measured on one fixed pool of N·M standard
normal draws (common random numbers, so two references are compared without noise).

Each warm-up sweep is adaptive and targets p^β·ref^(1−β). Its Rao–Blackwellized moments give a
candidate reference, which is kept only if importance sampling of p from it has a larger ESS on
the pool: a sweep that degenerated can never drag the reference away. β starts at the largest
value whose λ = 0 importance ESS is at least ``tempering_ess`` and rises with each accepted refit
(to 1 once a refit fails to improve). The last warm-up sweep runs at β = 1 with no refit, and
its λ-grid and inner sizes are frozen for the production sweeps.

The same functions drive :func:`numpyro_transport.transport` and the :class:`~numpyro_transport.AST`
kernel, where warm-up iterations are these sweeps.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from numpyro_transport import rng
from numpyro_transport.config import TransportConfig
from numpyro_transport.reference import Reference, from_moments, to_original
from numpyro_transport.sweep import Schedule, SweepResult, empty_schedule

__all__ = [
    "WarmupState",
    "init",
    "adapt",
    "pool_log_ratios",
    "ess_fraction",
    "tempering_exponent",
]


#: Covariance inflations of each candidate refit (the best on the pool is kept).
REFIT_INFLATIONS = (1.0,)


class WarmupState(NamedTuple):
    """What the warm-up has learned so far.

    - **reference** - the current :class:`~numpyro_transport.reference.Reference`.
    - **schedule** - the λ-grid of the last adaptive sweep on this reference (frozen at the end).
    - **temperature** - β of the next warm-up sweep, in (0, 1].
    - **pool_ess** - ESS fraction of importance sampling p from ``reference`` on the pool.
    - **pool_key** - the key of the fixed pool.
    """

    reference: Reference
    schedule: Schedule
    temperature: jax.Array
    pool_ess: jax.Array
    pool_key: jax.Array


def pool_log_ratios(pool_key, logdensity_fn, reference: Reference, num: int):
    """log p(u) − log N(u; μ̂, LLᵀ) at ``num`` reference draws (−∞ where p is non-finite)."""
    x = rng.normal(pool_key, (num, reference.mean.shape[0]))
    log_p = jax.vmap(logdensity_fn)(to_original(reference, x)) + reference.log_det
    log_ref = -0.5 * jnp.sum(x**2, -1) - 0.5 * x.shape[-1] * jnp.log(2 * jnp.pi)
    return jnp.where(jnp.isfinite(log_p), log_p - log_ref, -jnp.inf)


def ess_fraction(log_r, beta=1.0):
    """ESS/n of the importance weights exp(β r); 0 when no weight is finite."""
    scaled = jnp.where(jnp.isfinite(log_r), beta * log_r, -jnp.inf)
    top = jnp.max(scaled)
    w = jnp.exp(scaled - jnp.where(jnp.isfinite(top), top, 0.0))
    ess = jnp.sum(w) ** 2 / jnp.sum(w**2) / log_r.shape[0]
    return jnp.where(jnp.isfinite(top), ess, 0.0)


def tempering_exponent(log_r, target_ess: float):
    """Largest β ≤ 1 with ``ess_fraction(log_r, β) ≥ target_ess`` (bisection; 1 if β = 1 does)."""

    def bisect(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        ok = ess_fraction(log_r, mid) >= target_ess
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

    lo, _ = jax.lax.fori_loop(0, 40, bisect, (jnp.zeros(()), jnp.ones(())))
    return jnp.where(ess_fraction(log_r) >= target_ess, 1.0, lo)


def init(
    pool_key,
    logdensity_fn,
    reference: Reference,
    config: TransportConfig,
    tempering_ess,
    log_r=None,
):
    """Warm-up state for ``reference``, and the pool's log-ratios (to check the start; pass them
    as ``log_r`` if already computed)."""
    if log_r is None:
        num_pool = config.num_particles * config.num_inner
        log_r = pool_log_ratios(pool_key, logdensity_fn, reference, num_pool)
    state = WarmupState(
        reference,
        empty_schedule(config),
        tempering_exponent(log_r, tempering_ess),
        ess_fraction(log_r),
        pool_key,
    )
    return state, log_r


def sweep_temperature(state: WarmupState, final):
    """β of the next sweep: 1 for the ``final`` (frozen-grid) sweep."""
    return jnp.where(final, 1.0, state.temperature)


def adapt(
    state: WarmupState,
    result: SweepResult,
    logdensity_fn,
    config: TransportConfig,
    tempering_ess,
    final,
):
    """Learn from one adaptive warm-up ``result`` swept on ``state.reference``.

    Records its grid; unless ``final``, refits the reference to its moments when that improves
    the pool ESS, and raises β. Returns the new state and whether the refit was accepted.
    """
    num_pool = config.num_particles * config.num_inner

    def judge(inflation):
        candidate = from_moments(result.mean, inflation * result.cov)
        log_r = pool_log_ratios(state.pool_key, logdensity_fn, candidate, num_pool)
        return candidate, log_r, ess_fraction(log_r)

    # Moments from a degenerate sweep are noisy, and importance sampling punishes a reference
    # that is too narrow in any direction far more than one too wide: judge inflated fits too.
    candidates, log_rs, esses = jax.vmap(judge)(jnp.asarray(REFIT_INFLATIONS))
    best = jnp.argmax(esses)
    candidate = jax.tree.map(lambda a: a[best], candidates)
    log_r, new_ess = log_rs[best], esses[best]
    finite = jnp.all(jnp.isfinite(candidate.scale_tril)) & jnp.all(jnp.isfinite(candidate.mean))
    accepted = finite & ~final & (new_ess > state.pool_ess)
    beta = jnp.where(
        accepted,
        jnp.maximum(state.temperature, tempering_exponent(log_r, tempering_ess)),
        1.0,
    )
    new_state = WarmupState(
        jax.tree.map(lambda a, b: jnp.where(accepted, a, b), candidate, state.reference),
        result.schedule,
        beta,
        jnp.where(accepted, new_ess, state.pool_ess),
        state.pool_key,
    )
    return new_state, accepted
