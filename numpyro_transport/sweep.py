"""One SMC sweep along the SL path: ``init``, ``build_kernel`` and the sweep driver.

Random-weight SMC with intermediate targets Γ_k = Z·ν_{λ_k}, each estimated per particle by the
unbiased Ĝ_k of [`numpyro_transport.drift`][numpyro_transport.drift], and the Brownian-bridge
backward kernel L. Particle i's incremental weight is

    log w = log Ĝ_k(y') − log Ĝ_{k-1}(y) + log L(y' → y) − log M_k(y → y'),

(at λ_0 = 0 the middle terms vanish), and log Ẑ = Σ_k log Σ_i W^i_{k-1} w^i_k. For a fixed grid
and fixed inner sizes Ẑ is unbiased. The final selection J ∝ ω_J among a particle's own draws at
Λ makes the output exact: x_J ~ π under the extended target, whatever Λ.

The adaptive sweep picks δ_k = 2ε/M̂_{k-1} (I-MMSE: ε nats per step, M̂ = Σ W tr Ĉ), halves δ
while CESS < c_min, adapts the inner size to the inner ESS, stops at Λ or once the last
conditional is nearly Gaussian, and records the grid in a
[`Schedule`][numpyro_transport.sweep.Schedule]. A frozen sweep replays a schedule, so its Ẑ
is exactly unbiased.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from blackjax.smc.resampling import systematic
from jax.scipy.special import logsumexp

from numpyro_transport import drift as _drift
from numpyro_transport import progress_bar as _progress
from numpyro_transport.config import TransportConfig
from numpyro_transport.moves import draw_noise, get_move
from numpyro_transport.path import backward_logpdf, gaussian_logpdf
from numpyro_transport.reference import Reference, to_original, whiten
from numpyro_transport.weights import ess, kahan_add, normalize

__all__ = [
    "Schedule",
    "TransportState",
    "StepInfo",
    "SweepResult",
    "init",
    "build_kernel",
    "run_sweep",
    "empty_schedule",
    "empty_steps",
]


class Schedule(NamedTuple):
    """A frozen λ-grid (padded to ``max_steps``).

    Attributes:
        lambdas: ``(max_steps,)`` λ_1 … λ_K, then padding.
        num_blocks: ``(max_steps,)`` inner blocks b_k (inner size b_k·M) at λ_k.
        num_steps: K.
    """

    lambdas: jax.Array
    num_blocks: jax.Array
    num_steps: jax.Array


class TransportState(NamedTuple):
    """The particle population at one λ.

    Attributes:
        y: ``(N, d)`` positions in SL coordinates.
        log_weights: ``(N,)`` normalized log SMC weights log W.
        log_g: ``(N,)`` log Ĝ(y) at the current λ (0 at λ = 0).
        draws: the particles' own [`InnerDraws`][numpyro_transport.drift.InnerDraws] at (y, λ).
        lam: current λ.
        num_blocks: inner blocks active in ``draws``.
        log_evidence: running log Ẑ (Kahan-compensated sum of the increments).
        log_evidence_carry: the Kahan compensation term.
    """

    y: jax.Array
    log_weights: jax.Array
    log_g: jax.Array
    draws: _drift.InnerDraws
    lam: jax.Array
    num_blocks: jax.Array
    log_evidence: jax.Array
    log_evidence_carry: jax.Array


class StepInfo(NamedTuple):
    """Diagnostics of one step λ_{k-1} → λ_k.

    Attributes:
        lam: λ_k.
        delta: δ_k = λ_k − λ_{k-1}.
        ess: ESS/N after reweighting (a fraction in [0, 1]).
        cess: conditional ESS (a fraction in [0, 1]).
        log_increment: log Σ_i W_{k-1}^i w_k^i; ≈ 0 for k ≥ 2 when the drift is good.
        inner_ess_min: smallest own inner ESS over the particles at λ_k.
        inner_ess_median: median own inner ESS over the particles at λ_k.
        inner_ess_max: largest own inner ESS over the particles at λ_k.
        mmse: M̂(λ_{k-1}) = Σ W tr Ĉ, the I-MMSE curve.
        resampled: whether the population was resampled.
        num_evaluations: target evaluations spent (retries included).
        num_retries: δ halvings of the CESS guard.
        num_inner: inner size M_k.
        num_positive_infinite: inner draws of the proposals where the log-density was +∞ (given
            zero weight; an error for the front-ends).
    """

    lam: jax.Array
    delta: jax.Array
    ess: jax.Array
    cess: jax.Array
    log_increment: jax.Array
    inner_ess_min: jax.Array
    inner_ess_median: jax.Array
    inner_ess_max: jax.Array
    mmse: jax.Array
    resampled: jax.Array
    num_evaluations: jax.Array
    num_retries: jax.Array
    num_inner: jax.Array
    num_positive_infinite: jax.Array


def empty_steps(shape=()) -> StepInfo:
    """Zeroed [`StepInfo`][numpyro_transport.sweep.StepInfo] arrays of ``shape`` (the dtypes every
    step produces).

    Args:
        shape: the shape of every field, e.g. ``(max_steps,)``; scalars by default.

    Returns:
        The zeroed [`StepInfo`][numpyro_transport.sweep.StepInfo].
    """
    real = jnp.zeros(shape, jnp.result_type(float))
    count = jnp.zeros(shape, jnp.int32)
    return StepInfo(
        *([real] * 9),
        resampled=jnp.zeros(shape, bool),
        num_evaluations=count,
        num_retries=count,
        num_inner=count,
        num_positive_infinite=count,
    )


class SweepResult(NamedTuple):
    """Output of one sweep, in the original coordinates u = μ̂ + L x.

    Attributes:
        particles: ``(N, d)`` exact final selections θ_i.
        particle_log_density: ``(N,)`` log p(θ_i), recovered from the selected draws' inner
            log-ratios (no further evaluation of p).
        log_weights: ``(N,)`` their normalized log-weights.
        samples: ``(N, d)`` equal-weight resample of the particles, randomly permuted.
        log_evidence: log Ẑ.
        log_evidence_is: the λ = 0 importance-sampling estimate from the reference (a
            baseline).
        ess_is: the ESS fraction of that importance sample.
        mean: Rao–Blackwellized mean over all N·M final draws.
        cov: Rao–Blackwellized covariance over all N·M final draws.
        num_steps: K.
        completed: whether the sweep ended by its own rule rather than at ``max_steps``.
        num_evaluations: target evaluations of the sweep.
        steps: [`StepInfo`][numpyro_transport.sweep.StepInfo] arrays of length ``max_steps`` (first
            K valid).
        schedule: the grid that was run.
    """

    particles: jax.Array
    particle_log_density: jax.Array
    log_weights: jax.Array
    samples: jax.Array
    log_evidence: jax.Array
    log_evidence_is: jax.Array
    ess_is: jax.Array
    mean: jax.Array
    cov: jax.Array
    num_steps: jax.Array
    completed: jax.Array
    num_evaluations: jax.Array
    steps: StepInfo
    schedule: Schedule


def init(rng_key, logdensity_fn, dim, config: TransportConfig) -> TransportState:
    """All particles at y = 0 (λ = 0), with inner draws from the reference N(0, I).

    Args:
        rng_key: a JAX PRNG key for the inner noise.
        logdensity_fn: the whitened target ``x (d,) -> log γ(x)``.
        dim: d.
        config: the [`TransportConfig`][numpyro_transport.TransportConfig].

    Returns:
        The initial [`TransportState`][numpyro_transport.sweep.TransportState].
    """
    n, m = config.num_particles, config.num_inner
    y = jnp.zeros((n, dim))
    noise = _drift.new_noise(rng_key, n, config.max_inner_blocks, m, dim)
    draws = _drift.draw(logdensity_fn, noise, y, 0.0, 1, config.gradient_control_variate)
    zero = jnp.zeros(())
    return TransportState(
        y, jnp.full(n, -jnp.log(n)), jnp.zeros(n), draws, zero, jnp.ones((), jnp.int32), zero, zero
    )


def build_kernel(logdensity_fn, config: TransportConfig):
    """The SMC step ``kernel(key, state, drift, lam_next, num_blocks) -> (state, info)``.

    In the kernel, ``drift`` is the [`DriftEstimate`][numpyro_transport.drift.DriftEstimate] of
    ``state``.

    Args:
        logdensity_fn: the whitened target ``x (d,) -> log γ(x)``.
        config: the [`TransportConfig`][numpyro_transport.TransportConfig].

    Returns:
        The kernel, which moves, reweights and (when the ESS is low) resamples the particles,
        returning the new [`TransportState`][numpyro_transport.sweep.TransportState] and the step's
        [`StepInfo`][numpyro_transport.sweep.StepInfo].
    """
    move = get_move(config.move)
    n, m = config.num_particles, config.num_inner
    per_particle = (0, 0, 0, None)

    def kernel(rng_key, state: TransportState, drift, lam_next, num_blocks):
        k_move, k_draw, k_resample = jax.random.split(rng_key, 3)
        delta = lam_next - state.lam
        move_noise = draw_noise(k_move, n, state.y.shape[-1], drift.weights.shape[-1])
        y_new = jax.vmap(move.sample, per_particle)(move_noise, state.y, drift, delta)
        log_m = jax.vmap(move.logpdf, per_particle)(y_new, state.y, drift, delta)

        noise = _drift.refresh_noise(k_draw, state.draws.noise, config.inner_correlation)
        grad = config.gradient_control_variate
        draws = _drift.draw(logdensity_fn, noise, y_new, lam_next, num_blocks, grad)
        log_g = _drift.log_g(draws, y_new, lam_next, num_blocks * m)
        log_w = log_g - state.log_g + backward_logpdf(state.y, y_new, state.lam, lam_next) - log_m
        log_w = jnp.where(jnp.isfinite(log_w), log_w, -jnp.inf)

        joint = state.log_weights + log_w
        log_increment = logsumexp(joint)
        alive = jnp.isfinite(log_increment)
        log_weights = jnp.where(alive, joint - log_increment, -jnp.log(n))
        cess = jnp.exp(2 * log_increment - logsumexp(state.log_weights + 2 * log_w))
        weights = jnp.exp(log_weights)
        ess_fraction = ess(log_weights) / n
        resampled = ess_fraction < config.resample_threshold
        idx = jnp.where(resampled, systematic(k_resample, weights, n), jnp.arange(n))
        log_weights = jnp.where(resampled, -jnp.log(n), log_weights)
        total, carry = kahan_add(state.log_evidence, state.log_evidence_carry, log_increment)

        _, inner_ess = normalize(draws.log_r)
        new_state = TransportState(
            y_new[idx],
            log_weights,
            log_g[idx],
            jax.tree.map(lambda a: a[idx], draws),
            lam_next,
            num_blocks,
            total,
            carry,
        )
        info = StepInfo(
            lam=lam_next,
            delta=delta,
            ess=ess_fraction,
            cess=jnp.where(alive, cess, 0.0),
            log_increment=log_increment,
            inner_ess_min=jnp.min(inner_ess),
            inner_ess_median=jnp.median(inner_ess),
            inner_ess_max=jnp.max(inner_ess),
            mmse=_mmse(drift, state.log_weights),
            resampled=resampled,
            num_evaluations=jnp.asarray(n * m, jnp.int32) * num_blocks,
            num_retries=jnp.zeros((), jnp.int32),
            num_inner=num_blocks * m,
            num_positive_infinite=jnp.sum(draws.num_positive_infinite, dtype=jnp.int32),
        )
        return new_state, info

    return kernel


def _mmse(drift: _drift.DriftEstimate, log_weights):
    """M̂ = Σ_i W_i tr Ĉ_i for the shrunk Ĉ, from the support points (no d×d matrices)."""
    centre = jnp.einsum("nk,nkd->nd", drift.weights, drift.points)
    spread = jnp.sum((drift.points - centre[:, None]) ** 2, -1)
    dim = drift.points.shape[-1]
    trace = drift.cov_scale * jnp.einsum("nk,nk->n", drift.weights, spread)
    trace = trace + dim * drift.iso_var
    return jnp.sum(jnp.exp(log_weights) * trace)


def _step(kernel, config):
    """One step λ_k → λ_{k+1}, adaptive or replaying a schedule (``adaptive`` may be traced,
    so one compiled sweep serves both).

    Adaptive: I-MMSE δ, CESS-guarded halving, the inner-size rule and the stopping rule. Frozen:
    λ_{k+1} and the inner size come from the schedule, with no retries.
    """

    def step(rng_key, state, k, num_blocks, schedule: Schedule, adaptive):
        k_est, k_step = jax.random.split(rng_key)
        drift = _drift.estimate(k_est, state.draws, state.y, state.lam, state.num_blocks, config)
        delta = jnp.clip(
            2 * config.epsilon / _mmse(drift, state.log_weights), 0.0, config.max_lambda
        )
        delta = jnp.where(jnp.isfinite(delta), delta, config.max_lambda)
        blocks = jnp.where(adaptive, num_blocks, schedule.num_blocks[k])

        def attempt(key, delta):
            # Snap to Λ rather than leave a sliver: halving then converges and ends.
            gap = config.max_lambda - state.lam
            near_end = (1.5 * delta >= gap) | (gap <= 1e-3 * config.max_lambda)
            lam_next = jnp.where(near_end, config.max_lambda, state.lam + delta)
            lam_next = jnp.where(adaptive, lam_next, schedule.lambdas[k])
            return kernel(key, state, drift, lam_next, blocks)

        def retry_cond(carry):
            _, _, info, retries, _ = carry
            low = info.cess < config.cess_threshold
            return (retries < 0) | (adaptive & low & (retries < config.max_retries))

        def retry_body(carry):
            key, _, info, retries, spent = carry
            key, sub = jax.random.split(key)
            new_state, new_info = attempt(sub, 0.5 * info.delta)
            return key, new_state, new_info, retries + 1, spent + new_info.num_evaluations

        # One compiled attempt serves the first try (retries = −1, δ/2 of a dummy 2δ) and every
        # retry, which keeps the compiled sweep half as large.
        dummy = empty_steps()._replace(delta=2 * delta)
        start = (k_step, state, dummy, -jnp.ones((), jnp.int32), jnp.zeros((), jnp.int32))
        _, new_state, info, retries, spent = jax.lax.while_loop(retry_cond, retry_body, start)
        info = info._replace(num_retries=retries, num_evaluations=spent)

        median = info.inner_ess_median
        grow = (median < config.target_inner_ess) & (blocks < config.max_inner_blocks)
        shrink = (median >= 2.5 * config.target_inner_ess) & (blocks > 1)
        next_blocks = jnp.where(grow, 2 * blocks, jnp.where(shrink, blocks // 2, blocks))
        next_blocks = jnp.minimum(next_blocks, config.max_inner_blocks)
        gaussian_enough = median >= config.final_inner_ess * blocks * config.num_inner
        done = jnp.where(
            adaptive,
            (new_state.lam >= config.max_lambda) | gaussian_enough,
            k + 1 >= schedule.num_steps,
        )
        return new_state, info, next_blocks, done

    return step


def run_sweep(
    rng_key,
    logdensity_fn,
    reference: Reference,
    config: TransportConfig,
    schedule: Schedule | None = None,
    progress: bool = False,
    temperature=1.0,
    adaptive=None,
) -> SweepResult:
    """Run one sweep from λ = 0; adaptive when ``schedule`` is None, else frozen on it.

    Args:
        rng_key: a JAX PRNG key.
        logdensity_fn: the target over the original coordinates u, ``u (d,) -> log p(u)``.
        reference: the Gaussian [`Reference`][numpyro_transport.Reference] that whitens
            the target.
        config: the [`TransportConfig`][numpyro_transport.TransportConfig].
        schedule: the [`Schedule`][numpyro_transport.sweep.Schedule] to replay; ``None`` for an
            adaptive sweep.
        progress: every step reports λ to the host bar of
            [`numpyro_transport.progress_bar`][numpyro_transport.progress_bar]; ``False``
            compiles no report, a traced bool compiles one that runs only when it is true.
        temperature: β; below 1 the sweep targets p^β·reference^(1−β) instead (warm-up
            only).
        adaptive: a traced bool, by default ``schedule is None``, that chooses between adapting
            and replaying ``schedule`` inside one compiled function.

    Returns:
        The sweep's [`SweepResult`][numpyro_transport.sweep.SweepResult], in the original
        coordinates.
    """
    target = whiten(logdensity_fn, reference, temperature)
    dim = reference.mean.shape[0]
    k_init, k_loop, k_final = jax.random.split(rng_key, 3)
    state = init(k_init, target, dim, config)
    kernel = build_kernel(target, config)
    n_max = config.max_steps
    empty_info = empty_steps((n_max,))
    recorded = empty_schedule(config)
    if adaptive is None:
        adaptive = schedule is None
    schedule = recorded if schedule is None else schedule
    step = _step(kernel, config)

    def body(carry):
        key, state, k, _, blocks, infos, recorded = carry
        key, sub = jax.random.split(key)
        state, info, next_blocks, done = step(sub, state, k, blocks, schedule, adaptive)
        infos = jax.tree.map(lambda buf, v: buf.at[k].set(v), infos, info)
        recorded = Schedule(
            recorded.lambdas.at[k].set(info.lam),
            recorded.num_blocks.at[k].set(state.num_blocks),
            k + 1,
        )
        if progress is not False:  # a traced flag: one program, reports only when asked

            def report(lam, last):
                jax.debug.callback(_progress.update, lam, last)

            jax.lax.cond(progress, report, lambda *_: None, info.lam, done | (k + 1 >= n_max))
        return key, state, k + 1, done, next_blocks, infos, recorded

    def cond(carry):
        _, _, k, done, *_ = carry
        return (~done) & (k < n_max)

    # The λ = 0 pool is plain importance sampling from the reference: a baseline to beat.
    initial = state.draws.log_r.reshape(-1)
    start = (k_loop, state, jnp.zeros((), jnp.int32), jnp.asarray(False), state.num_blocks)
    key, state, k, done, _, infos, recorded = jax.lax.while_loop(
        cond, body, start + (empty_info, recorded)
    )
    return _finalize(k_final, state, reference, config, infos, recorded, done, initial, temperature)


def empty_schedule(config: TransportConfig) -> Schedule:
    """A schedule with no steps, padded to ``config.max_steps``.

    Args:
        config: the [`TransportConfig`][numpyro_transport.TransportConfig].

    Returns:
        The empty [`Schedule`][numpyro_transport.sweep.Schedule].
    """
    n_max = config.max_steps
    return Schedule(jnp.zeros(n_max), jnp.ones(n_max, jnp.int32), jnp.zeros((), jnp.int32))


def _finalize(rng_key, state, reference, config, infos, recorded, done, initial, temperature):
    n = config.num_particles
    k_select, k_resample, k_perm = jax.random.split(rng_key, 3)
    draw_w, _ = normalize(state.draws.log_r)
    pick = jax.vmap(lambda key, w: jax.random.choice(key, w.shape[0], p=w))(
        jax.random.split(k_select, n), draw_w
    )
    chosen = state.draws.x[jnp.arange(n), pick]
    particles = to_original(reference, chosen)
    # r = β(log p(u) + log|det L|) − β log N(x; 0, I) (see reference.whiten), solved for log p.
    log_r = state.draws.log_r[jnp.arange(n), pick]
    log_normal = gaussian_logpdf(chosen, 0.0, 1.0)
    particle_log_density = log_r / temperature + log_normal - reference.log_det
    weights = jnp.exp(state.log_weights)
    idx = systematic(k_resample, weights, n)
    samples = particles[jax.random.permutation(k_perm, idx)]

    rb = (weights[:, None] * draw_w).reshape(-1)
    flat = state.draws.x.reshape(-1, state.draws.x.shape[-1])
    mean_x = rb @ flat
    centred = flat - mean_x
    cov_x = (centred * rb[:, None]).T @ centred
    scale = reference.scale_tril
    num_initial = n * config.num_inner
    _, initial_ess = normalize(initial)
    return SweepResult(
        particles=particles,
        particle_log_density=particle_log_density,
        log_weights=state.log_weights,
        samples=samples,
        log_evidence=state.log_evidence,
        log_evidence_is=logsumexp(initial) - jnp.log(num_initial),
        ess_is=initial_ess / num_initial,
        mean=reference.mean + scale @ mean_x,
        cov=scale @ cov_x @ scale.T,
        num_steps=recorded.num_steps,
        completed=done,
        num_evaluations=jnp.sum(infos.num_evaluations) + num_initial,
        steps=infos,
        schedule=recorded,
    )
