"""Warm-up: adaptive sweeps that move the reference onto the target, then freeze.

The state of the warm-up is the reference N(μ̂, LLᵀ), the tempering exponent β and the
importance ESS of the target from the reference, measured on one fixed pool of N·M standard
normal draws (common random numbers, so two references are compared without noise).

Each warm-up sweep is adaptive and targets p^β·ref^(1−β), where β is the largest exponent whose
λ = 0 importance ESS from the reference is at least ``tempering_ess``: a target the sweep can
reach even when the reference is far from p. Its Rao–Blackwellized moments, extrapolated in
natural parameters towards β = 1, give candidate references; the best on the pool is kept only if
it beats the current one, so a sweep that degenerated can never drag the reference away. The
tempered sweeps continue until β = 1; then sweeps at β = 1 refit further, and the last warm-up
sweep (no refit) fixes the λ-grid and inner sizes for the production sweeps.

When the first reference is so far from p that β̂ < ``SMC_BELOW``,
[`smc_reference`][numpyro_transport.warmup.smc_reference] runs BlackJAX's adaptive tempered SMC
with a gradient-free random-walk kernel
([`numpyro_transport.tempered`][numpyro_transport.tempered]) from the reference to p, and adopts
its moments if they score better on the pool: a posterior 100× narrower than its prior takes one
SMC run there, where the tempered sweeps gain a factor of 2–4 in β each.

These are the pieces; [`numpyro_transport.driver`][numpyro_transport.driver] runs them, for
every front-end.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from blackjax.smc.solver import dichotomy

from numpyro_transport import rng
from numpyro_transport.config import TransportConfig
from numpyro_transport.path import standard_normal_logpdf
from numpyro_transport.reference import Reference, from_moments, from_samples, to_original
from numpyro_transport.sweep import Schedule, SweepResult, empty_schedule
from numpyro_transport.tempered import build_tempered_smc
from numpyro_transport.weights import ess_fraction

#: Candidate refits judged after each warm-up sweep
#: ([`extrapolated_refits`][numpyro_transport.warmup.extrapolated_refits]).
REFIT_LEVELS = 6
#: A first reference with β̂ below this goes through
#: [`smc_reference`][numpyro_transport.warmup.smc_reference] first: a tempered sweep multiplies β̂
#: by 2–4, so one sweep would not reach β = 1 from there.
SMC_BELOW = 0.5
#: Bisection steps of the tempering exponent β̂ (a precision of 2⁻⁴⁰).
BISECTIONS = 40

__all__ = [
    "WarmupState",
    "init",
    "adapt",
    "pool_log_ratios",
    "tempering_exponent",
    "sweep_temperature",
    "extrapolated_refits",
    "smc_reference",
]


class WarmupState(NamedTuple):
    """What the warm-up has learned so far.

    Attributes:
        reference: the current [`Reference`][numpyro_transport.Reference].
        schedule: the λ-grid of the last adaptive sweep on this reference (frozen at the end).
        temperature: β of the next warm-up sweep, in (0, 1].
        pool_ess: ESS fraction of importance sampling p from ``reference`` on the pool.
        pool_key: the key of the fixed pool.
    """

    reference: Reference
    schedule: Schedule
    temperature: jax.Array
    pool_ess: jax.Array
    pool_key: jax.Array


def pool_log_ratios(pool_key, logdensity_fn, reference: Reference, num: int):
    """log p(u) − log N(u; μ̂, LLᵀ) at ``num`` reference draws (−∞ where p is non-finite).

    Args:
        pool_key: the key of the pool's standard normal draws (common random numbers).
        logdensity_fn: the unnormalized log-density ``u (d,) -> log p(u)``.
        reference: the [`Reference`][numpyro_transport.Reference] the draws come from.
        num: the pool's size, N·M.

    Returns:
        ``(num,)`` log-ratios.
    """
    x = rng.normal(pool_key, (num, reference.mean.shape[0]))
    log_p = jax.vmap(logdensity_fn)(to_original(reference, x)) + reference.log_det
    # +∞ stays (the front-ends' start check reports it); NaN and −∞ are zero weight.
    return jnp.where(jnp.isnan(log_p), -jnp.inf, log_p - standard_normal_logpdf(x))


def tempering_exponent(log_r, target_ess: float):
    """Largest β ≤ 1 with ``ess_fraction(log_r, β) ≥ target_ess``: 1 if β = 1 keeps it, else
    40 bisection steps of BlackJAX's tempering solver (``blackjax.smc.solver.dichotomy``) on
    [0, 1], and 0 if not even β = 0 keeps it (too few finite ratios).

    Args:
        log_r: ``(n,)`` importance log-ratios of the pool.
        target_ess: the ESS fraction to keep.

    Returns:
        β̂ in [0, 1], a scalar array.
    """
    # eps = 0: the bisection runs all its steps (f(a) ≥ 0 > f(b) keeps f(a) − f(b) > 0).
    beta = dichotomy(
        lambda b: ess_fraction(log_r, b) - target_ess, 0.0, 1.0, eps=0.0, max_iter=BISECTIONS
    )
    # A strong dtype: the solver's branches return Python floats (weakly typed), and a state
    # whose β̂ changed weak type between init and sample would retrace NumPyro's sampler.
    return jnp.where(jnp.isnan(beta), 0.0, beta).astype(log_r.dtype)


def init(
    pool_key,
    logdensity_fn,
    reference: Reference,
    config: TransportConfig,
    tempering_ess,
    log_r=None,
):
    """Warm-up state for ``reference``, and the pool's log-ratios.

    Args:
        pool_key: the key of the fixed pool of N·M reference draws.
        logdensity_fn: the unnormalized log-density ``u (d,) -> log p(u)``.
        reference: the first [`Reference`][numpyro_transport.Reference].
        config: the [`TransportConfig`][numpyro_transport.TransportConfig] (pool size N·M).
        tempering_ess: the ESS fraction that sets β̂
            ([`tempering_exponent`][numpyro_transport.warmup.tempering_exponent]).
        log_r: the pool's log-ratios, if already computed.

    Returns:
        The first [`WarmupState`][numpyro_transport.warmup.WarmupState] and the pool's ``(N·M,)``
        log-ratios (to check the start).
    """
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
    """β of the next sweep: 1 for the ``final`` (frozen-grid) sweep.

    Args:
        state: the [`WarmupState`][numpyro_transport.warmup.WarmupState].
        final: whether the next sweep is the last warm-up sweep (may be traced).

    Returns:
        β, a scalar array.
    """
    return jnp.where(final, 1.0, state.temperature)


def _score(log_r, tempering_ess):
    """Quality of a reference on the pool: β̂ + ESS_p, where β̂ ≤ 1 is how far towards p importance
    sampling from it can temper with an ESS fraction ≥ ``tempering_ess``. It keeps growing in high
    dimension, where ESS_p alone is ≈ 1/n for every poor reference."""
    beta = tempering_exponent(log_r, tempering_ess)
    return beta, beta + ess_fraction(log_r)


def extrapolated_refits(result: SweepResult, reference: Reference, temperature):
    """Gaussian fits of p from a sweep of the tempered target p^β·ref^(1−β).

    In natural parameters (precision P, shift h = Pμ) the tempered target's Gaussian fit is
    (1−β)·ref + β·fit(p), so fit(p) ≈ ref + (fit_β − ref)/β. The β-fit is noisy, so the
    candidates climb a ladder τ = min(1, 4^k β), k < ``REFIT_LEVELS``, each the fit of
    p^τ·ref^(1−τ). Levels that reach τ = 1 more than once instead inflate the covariance by
    1.15^j (importance sampling forgives a reference too wide far more than one too narrow).
    Fits that are not positive definite come out non-finite and are never chosen.

    Args:
        result: the [`SweepResult`][numpyro_transport.sweep.SweepResult] of the tempered sweep (its
            Rao–Blackwellized ``mean`` and ``cov``).
        reference: the [`Reference`][numpyro_transport.Reference] the sweep ran on.
        temperature: β of the sweep.

    Returns:
        A stack of ``REFIT_LEVELS`` candidate references (leading axis on every field).
    """
    eye = jnp.eye(reference.mean.shape[0])
    p_ref = jax.scipy.linalg.cho_solve((reference.scale_tril, True), eye)
    h_ref = p_ref @ reference.mean
    p_b = jnp.linalg.inv(0.5 * (result.cov + result.cov.T))
    h_b = p_b @ result.mean

    def level(tau, inflation):
        ratio = tau / temperature
        precision = p_ref + ratio * (p_b - p_ref)
        cov = jnp.linalg.inv(0.5 * (precision + precision.T))
        return from_moments(cov @ (h_ref + ratio * (h_b - h_ref)), inflation * cov)

    taus = jnp.minimum(1.0, temperature * 4.0 ** jnp.arange(REFIT_LEVELS))
    repeats = jnp.maximum(jnp.cumsum(taus >= 1.0) - 1, 0)
    return jax.vmap(level)(taus, 1.15**repeats)


def _best(state: WarmupState, candidates: Reference, logdensity_fn, config, tempering_ess, allow):
    """Judge a stack of candidate references on the pool (``_score``, common random
    numbers; non-finite ones never win) and adopt the best if ``allow`` and it beats the current
    reference: its β̂ becomes the next temperature. Returns (state, adopted); the schedule is
    kept."""
    num_pool = config.num_particles * config.num_inner

    def judge(candidate):
        log_r = pool_log_ratios(state.pool_key, logdensity_fn, candidate, num_pool)
        beta, score = _score(log_r, tempering_ess)
        finite = jnp.all(jnp.isfinite(candidate.scale_tril)) & jnp.all(jnp.isfinite(candidate.mean))
        return beta, ess_fraction(log_r), jnp.where(finite, score, -jnp.inf)

    betas, esses, scores = jax.vmap(judge)(candidates)
    best = jnp.argmax(scores)
    adopted = allow & (scores[best] > state.temperature + state.pool_ess)

    def pick(new, old):
        return jnp.where(adopted, new[best], old)

    new_state = WarmupState(
        jax.tree.map(pick, candidates, state.reference),
        state.schedule,
        pick(betas, state.temperature),
        pick(esses, state.pool_ess),
        state.pool_key,
    )
    return new_state, adopted


def smc_reference(
    rng_key, state: WarmupState, logdensity_fn, config: TransportConfig, tempering_ess
):
    """Adopt the moments of a tempered SMC run from ``state.reference`` to p if they score better.

    The run has N·M particles and max(10, min(d, 50)) random-walk steps per tempering step
    (its mixing time grows like d).

    Args:
        rng_key: a JAX PRNG key for the SMC run.
        state: the [`WarmupState`][numpyro_transport.warmup.WarmupState] whose reference the run
            starts from.
        logdensity_fn: the unnormalized log-density ``u (d,) -> log p(u)``.
        config: the [`TransportConfig`][numpyro_transport.TransportConfig] (N·M particles).
        tempering_ess: the ESS fraction that sets β̂ of a reference.

    Returns:
        The new state, whether the fit was adopted, and the log-density evaluations spent
        (BlackJAX's T·N·M·(steps + 3), plus the pool).
    """
    dim = state.reference.mean.shape[0]
    num_pool = config.num_particles * config.num_inner
    steps = max(10, min(dim, 50))
    run = build_tempered_smc(
        logdensity_fn,
        state.reference.mean,
        state.reference.scale_tril,
        inner="rmh",
        num_particles=num_pool,
        num_mcmc_steps=steps,
    )
    out = run(rng_key)
    candidate = jax.tree.map(lambda a: a[None], from_samples(out.particles, out.weights))
    new_state, adopted = _best(state, candidate, logdensity_fn, config, tempering_ess, True)
    evaluations = out.num_steps * num_pool * (steps + 3) + num_pool
    return new_state, adopted, evaluations.astype(jnp.int32)


def adapt(
    state: WarmupState,
    result: SweepResult,
    logdensity_fn,
    config: TransportConfig,
    tempering_ess,
    final,
):
    """Learn from one adaptive warm-up ``result`` swept on ``state.reference`` at β.

    Records its grid; unless ``final``, considers the extrapolated refits of
    [`extrapolated_refits`][numpyro_transport.warmup.extrapolated_refits] and keeps the best on the
    pool if it beats the current reference (``_score``, common random numbers); β becomes the new
    reference's β̂.

    Args:
        state: the [`WarmupState`][numpyro_transport.warmup.WarmupState] the sweep ran on.
        result: the adaptive sweep's [`SweepResult`][numpyro_transport.sweep.SweepResult].
        logdensity_fn: the unnormalized log-density ``u (d,) -> log p(u)``.
        config: the [`TransportConfig`][numpyro_transport.TransportConfig].
        tempering_ess: the ESS fraction that sets β̂ of a reference.
        final: whether this was the last warm-up sweep (no refit; may be traced).

    Returns:
        The new state (with the sweep's grid) and whether a refit was accepted.
    """
    temperature = sweep_temperature(state, final)
    candidates = extrapolated_refits(result, state.reference, temperature)
    new_state, adopted = _best(state, candidates, logdensity_fn, config, tempering_ess, ~final)
    return new_state._replace(schedule=result.schedule), adopted
