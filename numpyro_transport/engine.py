"""The one-call engine: adaptive warm-up sweeps, freeze, then repeated frozen sweeps.

Warm-up sweep w runs adaptively with reference R_w; its Rao–Blackwellized moments give
R_{w+1} (moment matching covers every mode found). The last warm-up sweep's grid, inner sizes
and reference are frozen, and ``num_sweeps`` independent frozen sweeps each return an unbiased
Ẑ_r. They combine as Ẑ = mean_r Ẑ_r, and particle i of sweep r has weight ∝ Ẑ_r W_r^i.
"""

import contextlib
import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.smc.resampling import systematic
from jax.scipy.special import logsumexp

from numpyro_transport import progress_bar
from numpyro_transport.config import TransportConfig
from numpyro_transport.reference import Reference, broad, from_moments, to_original
from numpyro_transport.sweep import Schedule, SweepResult, sweep

__all__ = [
    "TransportResult",
    "transport",
    "combine_evidence",
    "ess_fraction",
    "tempering_exponent",
]

_sweep = jax.jit(sweep, static_argnames=("logdensity_fn", "config", "progress"))


@dataclass(frozen=True)
class TransportResult:
    """What :func:`transport` returns.

    - **samples** - ``(R·N, d)`` equal-weight draws from the target.
    - **particles**, **log_weights** - the ``(R·N, d)`` weighted particles and their normalized
      log-weights (∝ log Ẑ_r + log W_r^i).
    - **log_evidence**, **log_evidence_se** - log Ẑ over the R frozen sweeps and its standard
      error (delta method on the spread of the Ẑ_r).
    - **sweep_log_evidence** - ``(R,)`` each frozen sweep's log Ẑ_r.
    - **reference**, **schedule** - the frozen preconditioner and λ-grid.
    - **diagnostics** - ``{"warmup": [...], "sweeps": {...}}``: per-step arrays (see
      :class:`~numpyro_transport.sweep.StepInfo`) of every warm-up sweep, and of the frozen
      sweeps stacked as ``(R, K)``; plus per-sweep scalars and ``num_evaluations``.
    """

    samples: np.ndarray
    particles: np.ndarray
    log_weights: np.ndarray
    log_evidence: float
    log_evidence_se: float
    sweep_log_evidence: np.ndarray
    reference: Reference
    schedule: Schedule
    diagnostics: dict


def combine_evidence(log_z):
    """log mean_r Ẑ_r and its standard error sd(Ẑ_r)/(√R · mean Ẑ_r), from ``(R,)`` log Ẑ_r."""
    log_z = np.asarray(log_z, dtype=np.float64)
    r = log_z.shape[0]
    z = np.exp(log_z - log_z.max())
    return float(log_z.max() + np.log(z.mean())), float(z.std(ddof=1) / (math.sqrt(r) * z.mean()))


def _as_reference(reference, initial_position, dim) -> Reference:
    if isinstance(reference, Reference):
        return reference
    if reference is not None:
        mean, cov = reference
        return from_moments(mean, cov)
    if initial_position is not None:
        position = jnp.asarray(initial_position, dtype=jnp.result_type(float))
        return broad(position.shape[0])._replace(mean=position)
    if dim is None:
        raise ValueError("Pass dim, initial_position or reference to set the dimension.")
    return broad(dim)


def _pool_log_ratios(rng_key, logdensity_fn, reference: Reference, num: int):
    """log γ(u) − log N(u; μ̂, LLᵀ) at ``num`` reference draws (−∞ where γ is non-finite)."""
    x = jax.random.normal(rng_key, (num, reference.mean.shape[0]))
    log_p = jax.vmap(logdensity_fn)(to_original(reference, x)) + reference.log_det
    log_ref = -0.5 * jnp.sum(x**2, -1) - 0.5 * x.shape[-1] * jnp.log(2 * jnp.pi)
    return jnp.where(jnp.isfinite(log_p), log_p - log_ref, -jnp.inf)


_pool_log_ratios = jax.jit(_pool_log_ratios, static_argnames=("logdensity_fn", "num"))


def _check_start(log_r):
    if not np.any(np.isfinite(log_r)):
        raise ValueError(
            f"The log-density is NaN or -inf at all {log_r.shape[0]} initial points drawn from "
            "the reference Gaussian, so no particle can get weight. Check that the density is "
            "finite somewhere near the reference, or pass reference=(mean, cov) or "
            "initial_position inside its support."
        )


def ess_fraction(log_r, beta: float = 1.0) -> float:
    """ESS/n of importance weights exp(β r) (0 when no weight is finite)."""
    log_r = np.asarray(log_r, dtype=np.float64)
    finite = log_r[np.isfinite(log_r)]
    if finite.size == 0:
        return 0.0
    w = np.exp(beta * (finite - finite.max()))
    return float(w.sum() ** 2 / (w**2).sum() / log_r.shape[0])


def tempering_exponent(log_r, target_ess: float) -> float:
    """Largest β ≤ 1 whose importance weights exp(β r) keep an ESS fraction ≥ ``target_ess``."""

    def ess(beta):
        return ess_fraction(log_r, beta)

    if ess(1.0) >= target_ess:
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if ess(mid) >= target_ess else (lo, mid)
    return lo


def _steps(result: SweepResult):
    k = int(result.num_steps)
    steps = {name: np.asarray(v)[..., :k] for name, v in result.steps._asdict().items()}
    steps.update(
        log_evidence=np.asarray(result.log_evidence),
        log_evidence_is=np.asarray(result.log_evidence_is),
        ess_is=np.asarray(result.ess_is),
        num_evaluations=np.asarray(result.num_evaluations),
        completed=np.asarray(result.completed),
    )
    return steps


def _warmup_sweep(rng_key, logdensity_fn, ref, config, progress, temperature):
    """One adaptive sweep; returns the moment-matched refit (or ``ref`` if degenerate), the
    sweep's diagnostics and its schedule."""
    result = _sweep(rng_key, logdensity_fn, ref, config, None, progress, temperature)
    _require_finite(result, "warm-up")
    steps = _steps(result)
    steps.update(temperature=np.asarray(temperature))
    refit = from_moments(result.mean, result.cov)
    ok = bool(jnp.all(jnp.isfinite(refit.scale_tril)))
    return (refit if ok else ref), steps, result.schedule


def _require_finite(result: SweepResult, what: str):
    if not np.isfinite(float(result.log_evidence)):
        raise FloatingPointError(
            f"Every particle got zero weight during the {what} (log Ẑ = -inf): the "
            "log-density is non-finite wherever the particles went. Inspect the model's "
            "support, or pass a reference closer to the posterior."
        )


def transport(
    logdensity_fn,
    rng_key,
    *,
    dim: int | None = None,
    initial_position=None,
    reference=None,
    num_warmup_sweeps: int = 3,
    num_sweeps: int = 4,
    tempering_ess: float = 0.05,
    max_tempering_sweeps: int = 20,
    progress: bool = True,
    **options,
) -> TransportResult:
    """Sample from exp(logdensity_fn)/Z and estimate log Z by annealed stochastic transport.

    Args:
        logdensity_fn: ``u (d,) -> log γ(u)``, unnormalized, jit-able. Non-finite values give
            zero weight.
        rng_key: a JAX PRNG key; the same key gives the same result.
        dim: dimension d, if neither ``initial_position`` nor ``reference`` gives it.
        initial_position: centre of the broad fallback reference N(position, I).
        reference: a :class:`~numpyro_transport.reference.Reference` or ``(mean, cov)``
            (e.g. moments of prior draws). Defaults to N(0, I).
        num_warmup_sweeps: adaptive sweeps (≥ 1) on the target; after each but the last the
            reference is refitted to the sweep's moments (kept only if importance sampling
            from it improves); the last one's grid is frozen.
        num_sweeps: frozen sweeps (≥ 2) for the evidence, its standard error and the draws.
        tempering_ess: while plain importance sampling from the reference keeps an ESS
            fraction below this, warm-up first sweeps towards the tempered target
            p^β·reference^(1−β) and refits, so that a poor reference is moved to the target
            without a MAP. In (0, 1).
        max_tempering_sweeps: cap on those tempered sweeps.
        progress: show a progress bar per sweep.
        **options: :class:`~numpyro_transport.config.TransportConfig` options.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from numpyro_transport import transport
        >>> logdensity = lambda u: -0.5 * jnp.sum((u - 1.0) ** 2)  # Z = 2π
        >>> result = transport(logdensity, jax.random.key(0), dim=2, progress=False)
        >>> bool(abs(result.log_evidence - jnp.log(2 * jnp.pi)) < 0.05)
        True
    """
    config = TransportConfig(**options)
    if num_warmup_sweeps < 1:
        raise ValueError(f"num_warmup_sweeps={num_warmup_sweeps!r} must be at least 1.")
    if not 0 < tempering_ess < 1:
        raise ValueError(f"tempering_ess={tempering_ess!r} must be in (0, 1).")
    if num_sweeps < 2:
        raise ValueError(
            f"num_sweeps={num_sweeps!r} must be at least 2 to estimate the standard error."
        )
    ref = _as_reference(reference, initial_position, dim)
    num_pool = config.num_particles * config.num_inner
    keys = iter(jax.random.split(rng_key, 2 * max_tempering_sweeps + num_warmup_sweeps + 4))
    pool_key = next(keys)  # one pool for every comparison: common random numbers
    log_r = np.asarray(_pool_log_ratios(pool_key, logdensity_fn, ref, num_pool))
    _check_start(log_r)
    num_pools = 1

    warmup = []
    shown = progress_bar.bar(num_warmup_sweeps + num_sweeps, config.max_lambda)
    with shown if progress else contextlib.nullcontext():

        def refine(ref, log_r, temperature):
            """One adaptive sweep; its moment-matched refit replaces ``ref`` only if importance
            sampling of the target from it is better (a larger λ = 0 ESS), so a degenerate
            sweep can never drag the reference away."""
            nonlocal num_pools
            candidate, steps, _ = _warmup_sweep(
                next(keys), logdensity_fn, ref, config, progress, temperature
            )
            new_log_r = np.asarray(_pool_log_ratios(pool_key, logdensity_fn, candidate, num_pool))
            num_pools += 1
            improved = ess_fraction(new_log_r) > ess_fraction(log_r)
            steps["refit_accepted"] = np.asarray(improved)
            warmup.append(steps)
            return (candidate, new_log_r, True) if improved else (ref, log_r, False)

        # Tempered stages: while the reference is far from the target, sweep towards
        # p^β·reference^(1−β), with β set by the λ = 0 importance ESS, and refit.
        beta = tempering_exponent(log_r, tempering_ess)
        while beta < 1 and len(warmup) < max_tempering_sweeps:
            progress_bar.add_sweeps(1)
            ref, log_r, improved = refine(ref, log_r, beta)
            if not improved:
                break
            beta = tempering_exponent(log_r, tempering_ess)
        for w in range(num_warmup_sweeps):
            if w < num_warmup_sweeps - 1:
                ref, log_r, _ = refine(ref, log_r, 1.0)
            else:  # the last warm-up sweep records the grid of the final reference
                _, steps, schedule = _warmup_sweep(
                    next(keys), logdensity_fn, ref, config, progress, 1.0
                )
                warmup.append(steps)
        runs = []
        for key in jax.random.split(next(keys), num_sweeps):
            result = _sweep(key, logdensity_fn, ref, config, schedule, progress)
            _require_finite(result, "frozen sweep")
            runs.append(result)

    log_z = np.array([float(r.log_evidence) for r in runs])
    log_evidence, se = combine_evidence(log_z)
    particles = jnp.concatenate([r.particles for r in runs])
    log_w = jnp.concatenate([r.log_weights + lz for r, lz in zip(runs, log_z, strict=True)])
    log_w = log_w - logsumexp(log_w)
    k_resample, k_perm = jax.random.split(next(keys))
    idx = systematic(k_resample, jnp.exp(log_w), particles.shape[0])
    samples = particles[jax.random.permutation(k_perm, idx)]
    frozen = [_steps(r) for r in runs]
    diagnostics = {
        "warmup": warmup,
        "sweeps": {name: np.stack([f[name] for f in frozen]) for name in frozen[0]},
        # Sweeps, plus the λ = 0 pools that choose β and judge refits.
        "num_evaluations": int(
            sum(int(w["num_evaluations"]) for w in warmup)
            + sum(int(f["num_evaluations"]) for f in frozen)
            + num_pools * num_pool
        ),
    }
    return TransportResult(
        samples=np.asarray(samples),
        particles=np.asarray(particles),
        log_weights=np.asarray(log_w),
        log_evidence=log_evidence,
        log_evidence_se=se,
        sweep_log_evidence=log_z,
        reference=ref,
        schedule=schedule,
        diagnostics=diagnostics,
    )
