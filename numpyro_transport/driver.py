"""The one driver of a run, under every front-end: warm-up sweeps, then frozen sweeps.

[`transport`][numpyro_transport.transport] (a Python loop over jitted steps), the
[`AST`][numpyro_transport.AST] kernel (one step per MCMC iteration), its
``num_particles="auto"`` pilot and the BlackJAX API (a ``lax.fori_loop`` in ``init``) all run
these functions:

1. [`init`][numpyro_transport.driver.init]: the warm-up state of the first reference, scored on a
   fixed pool of N·M reference draws (common random numbers).
2. [`smc_reference`][numpyro_transport.driver.smc_reference]: where
   [`needs_smc_reference`][numpyro_transport.driver.needs_smc_reference] (β̂ < ``SMC_BELOW``), a
   tempered SMC run moves the first reference
   ([`numpyro_transport.warmup.smc_reference`][numpyro_transport.warmup.smc_reference]).
3. [`step`][numpyro_transport.driver.step]: sweep number ``state.iteration``, by **the warm-up
   rule**: the first ``num_warmup`` sweeps are the warm-up, tempered ones included. Warm-up sweep
   w < ``num_warmup`` − 1 adapts its grid on p^β̂·ref^(1−β̂) (β̂ = 1 once importance sampling from
   the reference reaches p) and refits the reference; the last warm-up sweep runs at β = 1,
   refits nothing, and fixes the λ-grid and inner sizes. Every later sweep is frozen on that
   grid, so its Ẑ is unbiased.
4. [`tempering_finished`][numpyro_transport.driver.tempering_finished]: whether the warm-up reached
   β̂ = 1, as data; the front-ends warn
   ([`warn_if_tempering_unfinished`][numpyro_transport.driver.warn_if_tempering_unfinished]).

Every function counts the log-density evaluations it spends; callers never recompute them.
[`run`][numpyro_transport.driver.run] is the host-side loop of these steps (each jitted once), for
[`transport`][numpyro_transport.transport] and the pilot of
[`numpyro_transport.sizing`][numpyro_transport.sizing].
"""

import contextlib
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_transport import progress_bar, warmup
from numpyro_transport.config import TransportConfig
from numpyro_transport.records import SweepRecord, sweep_record
from numpyro_transport.reference import Reference
from numpyro_transport.sweep import SweepResult, run_sweep

__all__ = [
    "NUM_WARMUP",
    "DriverState",
    "StepOutput",
    "init",
    "needs_smc_reference",
    "smc_reference",
    "step",
    "warmup_loop",
    "tempering_finished",
    "warn_if_tempering_unfinished",
    "check_start",
    "Run",
    "run",
]


#: Default warm-up sweeps of [`transport`][numpyro_transport.transport] and the BlackJAX API:
#: room for two tempered sweeps (each multiplies β̂ by 2–4) before two refits at β = 1 and the
#: last sweep.
NUM_WARMUP = 5


class DriverState(NamedTuple):
    """What a run has learned, and spent, so far.

    Attributes:
        warmup: [`WarmupState`][numpyro_transport.warmup.WarmupState]: reference, λ-grid, β̂.
        iteration: sweeps run so far (the warm-up while below ``num_warmup``).
        num_evaluations: log-density evaluations of the pool, the SMC reference and the
            warm-up sweeps with their refits (the cost that per-sweep counts of the frozen
            sweeps leave out).
        smc_ran: whether the tempered SMC run of
            [`smc_reference`][numpyro_transport.driver.smc_reference] ran.
        smc_adopted: whether the fit of that SMC run replaced the first reference.
    """

    warmup: warmup.WarmupState
    iteration: jax.Array
    num_evaluations: jax.Array
    smc_ran: jax.Array
    smc_adopted: jax.Array


class StepOutput(NamedTuple):
    """One sweep of [`step`][numpyro_transport.driver.step].

    Attributes:
        result: the [`SweepResult`][numpyro_transport.sweep.SweepResult].
        record: its [`SweepRecord`][numpyro_transport.records.SweepRecord].
        num_evaluations: evaluations of the sweep and, in warm-up, of judging its refits.
        is_warmup: whether it was a warm-up sweep.
    """

    result: SweepResult
    record: SweepRecord
    num_evaluations: jax.Array
    is_warmup: jax.Array


def _pool_size(config: TransportConfig) -> int:
    return config.num_particles * config.num_inner


def init(
    pool_key,
    logdensity_fn,
    reference: Reference,
    config: TransportConfig,
    tempering_ess,
    log_r=None,
) -> tuple[DriverState, jax.Array]:
    """The state of a run from ``reference``, and the pool's log-ratios.

    Args:
        pool_key: the key of the fixed pool of N·M reference draws that judges references.
        logdensity_fn: the unnormalized log-density ``u (d,) -> log p(u)``.
        reference: the first [`Reference`][numpyro_transport.Reference].
        config: the [`TransportConfig`][numpyro_transport.TransportConfig].
        tempering_ess: ESS fraction of importance sampling from the reference below which the
            warm-up tempers.
        log_r: the pool's log-ratios, if already computed (to check the start); the pool's
            evaluations are counted here either way.

    Returns:
        The first [`DriverState`][numpyro_transport.driver.DriverState] and the pool's ``(N·M,)``
        log-ratios (to check the start).
    """
    state, log_r = warmup.init(pool_key, logdensity_fn, reference, config, tempering_ess, log_r)
    false = jnp.zeros((), bool)
    spent = jnp.asarray(_pool_size(config), jnp.int32)
    return DriverState(state, jnp.zeros((), jnp.int32), spent, false, false), log_r


def needs_smc_reference(state: DriverState):
    """Whether the first reference is too far from p for the tempered sweeps.

    That is β̂ < ``SMC_BELOW``: the tempered sweeps would not reach β = 1 in a few sweeps;
    [`smc_reference`][numpyro_transport.driver.smc_reference] then moves the reference first.

    Args:
        state: the [`DriverState`][numpyro_transport.driver.DriverState] (batched or not).

    Returns:
        A boolean array of the shape of ``state.warmup.temperature``.
    """
    return state.warmup.temperature < warmup.SMC_BELOW


def smc_reference(rng_key, state: DriverState, logdensity_fn, config, tempering_ess):
    """Where [`needs_smc_reference`][numpyro_transport.driver.needs_smc_reference], move the first
    reference by a tempered SMC run.

    Adopts the moments of a tempered SMC run from the reference to p if they score better on
    the pool; elsewhere the state is unchanged (so a batch of chains can run it together).

    Args:
        rng_key: a JAX PRNG key for the SMC run.
        state: the [`DriverState`][numpyro_transport.driver.DriverState] after
            [`init`][numpyro_transport.driver.init].
        logdensity_fn: the unnormalized log-density ``u (d,) -> log p(u)``.
        config: the [`TransportConfig`][numpyro_transport.TransportConfig].
        tempering_ess: ESS fraction below which the warm-up tempers.

    Returns:
        The new [`DriverState`][numpyro_transport.driver.DriverState], with ``smc_ran``,
        ``smc_adopted`` and the evaluations spent.
    """
    needed = needs_smc_reference(state)
    moved, adopted, spent = warmup.smc_reference(
        rng_key, state.warmup, logdensity_fn, config, tempering_ess
    )
    return DriverState(
        jax.tree.map(lambda a, b: jnp.where(needed, a, b), moved, state.warmup),
        state.iteration,
        state.num_evaluations + jnp.where(needed, spent, 0),
        needed,
        needed & adopted,
    )


def step(
    rng_key,
    state: DriverState,
    logdensity_fn,
    config: TransportConfig,
    tempering_ess,
    num_warmup,
    progress: bool = False,
) -> tuple[DriverState, StepOutput]:
    """Sweep number ``state.iteration`` by the warm-up rule (see the module).

    Adaptive and refitting during the warm-up, frozen after it. ``num_warmup`` may be traced;
    one compiled step serves both phases.

    Args:
        rng_key: a JAX PRNG key for the sweep.
        state: the current [`DriverState`][numpyro_transport.driver.DriverState].
        logdensity_fn: the unnormalized log-density ``u (d,) -> log p(u)``.
        config: the [`TransportConfig`][numpyro_transport.TransportConfig].
        tempering_ess: ESS fraction below which the warm-up tempers.
        num_warmup: warm-up sweeps (≥ 1), tempered ones included; may be traced.
        progress: report λ to the progress bar of
            [`numpyro_transport.progress_bar`][numpyro_transport.progress_bar] (a Python or
            traced bool; see [`run_sweep`][numpyro_transport.sweep.run_sweep]).

    Returns:
        The next [`DriverState`][numpyro_transport.driver.DriverState] and the sweep's
        [`StepOutput`][numpyro_transport.driver.StepOutput].
    """
    w = state.warmup
    warm = state.iteration < num_warmup
    final = state.iteration == num_warmup - 1
    temperature = jnp.where(warm, warmup.sweep_temperature(w, final), 1.0)
    result = run_sweep(
        rng_key,
        logdensity_fn,
        w.reference,
        config,
        w.schedule,
        progress,
        temperature,
        adaptive=warm,
    )
    new_w, accepted = jax.lax.cond(
        warm,
        lambda: warmup.adapt(w, result, logdensity_fn, config, tempering_ess, final),
        lambda: (w, jnp.asarray(False)),
    )
    refits = jnp.where(warm, warmup.REFIT_LEVELS * _pool_size(config), 0)
    spent = (result.num_evaluations + refits).astype(jnp.int32)
    new_state = state._replace(
        warmup=new_w,
        iteration=state.iteration + 1,
        num_evaluations=state.num_evaluations + jnp.where(warm, spent, 0),
    )
    record = sweep_record(result, temperature, accepted, state.iteration)
    return new_state, StepOutput(result, record, spent, warm)


def warmup_loop(rng_key, state: DriverState, logdensity_fn, config, tempering_ess, num_warmup):
    """The whole warm-up in a ``lax.fori_loop`` (sweep w gets ``fold_in(rng_key, w)``).

    Args:
        rng_key: a JAX PRNG key, folded in with each sweep's index.
        state: the [`DriverState`][numpyro_transport.driver.DriverState] to start from (after
            [`init`][numpyro_transport.driver.init], and
            [`smc_reference`][numpyro_transport.driver.smc_reference] where needed).
        logdensity_fn: the unnormalized log-density ``u (d,) -> log p(u)``.
        config: the [`TransportConfig`][numpyro_transport.TransportConfig].
        tempering_ess: ESS fraction below which the warm-up tempers.
        num_warmup: warm-up sweeps (≥ 1), tempered ones included.

    Returns:
        The warmed-up [`DriverState`][numpyro_transport.driver.DriverState]: reference and λ-grid
        frozen.
    """

    def body(w, state):
        key = jax.random.fold_in(rng_key, w)
        return step(key, state, logdensity_fn, config, tempering_ess, num_warmup)[0]

    return jax.lax.fori_loop(0, num_warmup, body, state)


def tempering_finished(state: DriverState):
    """Whether importance sampling from the warm-up's reference reached p (β̂ = 1).

    Args:
        state: the [`DriverState`][numpyro_transport.driver.DriverState] (batched or not).

    Returns:
        A boolean array of the shape of ``state.warmup.temperature``.
    """
    return state.warmup.temperature >= 1


def warn_if_tempering_unfinished(temperature, what: str):
    """Warn when a warm-up ended with β̂ < 1.

    Importance sampling from the final reference could not reach the target, so its sweeps are
    unreliable (a missed region, a biased Ẑ).

    Args:
        temperature: β̂ of the final reference, one per chain or a scalar; the smallest counts.
        what: what ran the warm-up, for the message (e.g. ``"transport()"``).
    """
    beta = float(np.min(np.asarray(temperature)))
    if beta < 1:
        warnings.warn(
            f"The warm-up of {what} ended with tempering exponent β = {beta:.2f} < 1: the fitted "
            "Gaussian reference is still far from the target, so log Ẑ and the draws may be "
            "badly biased. Give a better reference=(mean, cov), more warm-up sweeps or more "
            "particles.",
            RuntimeWarning,
            stacklevel=3,
        )


class Run(NamedTuple):
    """What [`run`][numpyro_transport.driver.run] returns (host arrays).

    Attributes:
        state: the [`DriverState`][numpyro_transport.driver.DriverState] after the warm-up.
        warmup: [`StepOutput`][numpyro_transport.driver.StepOutput] of the warm-up sweeps, stacked
            ``(num_warmup, ...)``.
        sweeps: [`StepOutput`][numpyro_transport.driver.StepOutput] of the frozen sweeps, stacked
            ``(num_sweeps, ...)``.
        num_evaluations: log-density evaluations of the whole run.
    """

    state: DriverState
    warmup: StepOutput
    sweeps: StepOutput
    num_evaluations: int


_STATIC = ("logdensity_fn", "config", "tempering_ess")
_init = jax.jit(init, static_argnames=_STATIC)
_smc_reference = jax.jit(smc_reference, static_argnames=_STATIC)
_step = jax.jit(step, static_argnames=_STATIC)


def check_start(log_r, what: str, fix: str):
    """Raise when the pool's log-ratios are non-finite everywhere (no particle can get weight),
    or +∞ anywhere (no density is; NaN and −∞ only mean zero weight).

    Args:
        log_r: the pool's log-ratios, from [`init`][numpyro_transport.driver.init].
        what: what is non-finite, as the front-end calls it (e.g. "log-density").
        fix: what the user can do, in the front-end's terms.
    """
    infinite = int(np.sum(log_r == np.inf))
    if infinite:
        raise ValueError(
            f"The log-density is +inf at {infinite} of the {log_r.shape[0]} initial particles "
            "drawn from the reference Gaussian. A log-density cannot be +inf on a region of "
            "positive volume (the density would not be integrable): return a finite value there, "
            "or -inf outside the support."
        )
    if not np.any(np.isfinite(log_r)):
        raise ValueError(
            f"The {what} is NaN or infinite at all {log_r.shape[0]} initial particles drawn "
            f"from the reference Gaussian, so no particle can get weight. {fix}"
        )


def _require_finite(output: StepOutput):
    infinite = int(np.sum(output.record.steps.num_positive_infinite))
    if infinite:
        raise ValueError(
            f"The log-density returned +inf at {infinite} inner draws of sweep "
            f"{int(output.record.iteration)}. A log-density cannot be +inf on a "
            "region of positive volume: return a finite value there, or -inf outside the support."
        )
    if not np.isfinite(float(output.result.log_evidence)):
        what = "warm-up" if bool(output.is_warmup) else "frozen sweep"
        raise FloatingPointError(
            f"Every particle got zero weight during the {what} (log Ẑ = -inf): the "
            "log-density is non-finite wherever the particles went. Inspect the model's "
            "support, or pass a reference closer to the posterior."
        )


def run(
    rng_key,
    logdensity_fn,
    reference: Reference,
    config: TransportConfig,
    *,
    num_warmup: int,
    num_sweeps: int,
    tempering_ess: float,
    progress: bool = False,
    label: str = "transport",
) -> Run:
    """A whole run on the host: [`init`][numpyro_transport.driver.init],
    [`smc_reference`][numpyro_transport.driver.smc_reference] where needed, the sweeps.

    Runs ``num_warmup + num_sweeps`` [`step`][numpyro_transport.driver.step]s (sweep i gets
    ``fold_in(k_sweeps, i)``), each jitted once and checked for a finite Ẑ.

    Args:
        rng_key: a JAX PRNG key, split into the pool's, the SMC run's and the sweeps' keys.
        logdensity_fn: the unnormalized log-density ``u (d,) -> log p(u)``.
        reference: the first [`Reference`][numpyro_transport.Reference].
        config: the [`TransportConfig`][numpyro_transport.TransportConfig].
        num_warmup: warm-up sweeps (≥ 1), tempered ones included.
        num_sweeps: frozen sweeps after the warm-up.
        tempering_ess: ESS fraction below which the warm-up tempers.
        progress: show a progress bar over the sweeps.
        label: the progress bar's label.

    Returns:
        The run's [`Run`][numpyro_transport.driver.Run]: the warmed-up state, the outputs of the
        warm-up and frozen sweeps, and the evaluations spent.
    """
    k_pool, k_smc, k_sweeps = jax.random.split(rng_key, 3)
    state, log_r = _init(k_pool, logdensity_fn, reference, config, tempering_ess)
    check_start(
        np.asarray(log_r),
        "log-density",
        "Check that the density is finite somewhere near the reference, or pass "
        "reference=(mean, cov) or initial_position inside its support.",
    )
    if bool(needs_smc_reference(state)):
        state = _smc_reference(k_smc, state, logdensity_fn, config, tempering_ess)
    outputs = []
    shown = progress_bar.bar(num_warmup + num_sweeps, config.max_lambda, label)
    with shown if progress else contextlib.nullcontext():
        for i in range(num_warmup + num_sweeps):
            key = jax.random.fold_in(k_sweeps, i)
            # ``progress`` is traced: one compiled step with or without a bar.
            state, output = _step(
                key, state, logdensity_fn, config, tempering_ess, num_warmup, jnp.bool_(progress)
            )
            output = jax.tree.map(np.asarray, output)
            _require_finite(output)
            outputs.append(output)
            if i == num_warmup - 1:
                warmed = state
    stack = lambda parts: jax.tree.map(lambda *a: np.stack(a), *parts)  # noqa: E731
    spent = int(state.num_evaluations) + sum(int(o.num_evaluations) for o in outputs[num_warmup:])
    return Run(warmed, stack(outputs[:num_warmup]), stack(outputs[num_warmup:]), spent)
