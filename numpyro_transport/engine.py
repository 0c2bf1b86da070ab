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
from numpyro_transport.reference import Reference, broad, from_moments
from numpyro_transport.sweep import Schedule, SweepResult, sweep

__all__ = ["TransportResult", "transport", "combine_evidence"]

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


def _check_start(logdensity_fn, reference: Reference, rng_key, num):
    """Raise if the log-density is non-finite at every one of ``num`` reference draws."""
    eps = jax.random.normal(rng_key, (num, reference.mean.shape[0]))
    values = jax.jit(jax.vmap(logdensity_fn))(reference.mean + eps @ reference.scale_tril.T)
    if not bool(jnp.any(jnp.isfinite(values))):
        raise ValueError(
            f"The log-density is NaN or -inf at all {num} initial points drawn from the "
            "reference Gaussian, so no particle can get weight. Check that the density is "
            "finite somewhere near the reference, or pass reference=(mean, cov) or "
            "initial_position inside its support."
        )


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
        num_warmup_sweeps: adaptive sweeps (≥ 1); the reference is refitted after each but
            the last, whose grid is frozen.
        num_sweeps: frozen sweeps (≥ 2) for the evidence, its standard error and the draws.
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
    if num_sweeps < 2:
        raise ValueError(
            f"num_sweeps={num_sweeps!r} must be at least 2 to estimate the standard error."
        )
    ref = _as_reference(reference, initial_position, dim)
    k_check, k_warm, k_run, k_resample, k_perm = jax.random.split(rng_key, 5)
    _check_start(logdensity_fn, ref, k_check, config.num_particles * config.num_inner)

    warmup = []
    num_total = num_warmup_sweeps + num_sweeps
    shown = progress_bar.bar(num_total, config.max_lambda) if progress else contextlib.nullcontext()
    with shown:
        for w, key in enumerate(jax.random.split(k_warm, num_warmup_sweeps)):
            result = _sweep(key, logdensity_fn, ref, config, None, progress)
            _require_finite(result, f"warm-up sweep {w}")
            warmup.append(_steps(result))
            refit = from_moments(result.mean, result.cov)
            if w < num_warmup_sweeps - 1 and bool(jnp.all(jnp.isfinite(refit.scale_tril))):
                ref = refit
        schedule = result.schedule
        runs = []
        for key in jax.random.split(k_run, num_sweeps):
            result = _sweep(key, logdensity_fn, ref, config, schedule, progress)
            _require_finite(result, "frozen sweep")
            runs.append(result)

    log_z = np.array([float(r.log_evidence) for r in runs])
    log_evidence, se = combine_evidence(log_z)
    particles = jnp.concatenate([r.particles for r in runs])
    log_w = jnp.concatenate([r.log_weights + lz for r, lz in zip(runs, log_z, strict=True)])
    log_w = log_w - logsumexp(log_w)
    idx = systematic(k_resample, jnp.exp(log_w), particles.shape[0])
    samples = particles[jax.random.permutation(k_perm, idx)]
    frozen = [_steps(r) for r in runs]
    diagnostics = {
        "warmup": warmup,
        "sweeps": {name: np.stack([f[name] for f in frozen]) for name in frozen[0]},
        "num_evaluations": int(
            sum(int(w["num_evaluations"]) for w in warmup)
            + sum(int(f["num_evaluations"]) for f in frozen)
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
