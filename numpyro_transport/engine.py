"""``transport()``: a whole run in one call, for a NumPyro model or a log-density.

The run is [`numpyro_transport.driver`][numpyro_transport.driver]'s: ``num_warmup`` warm-up sweeps
fit the reference and fix the λ-grid, then ``num_sweeps`` frozen sweeps each return an unbiased Ẑ_r.
They combine as Ẑ = mean_r Ẑ_r, and particle i of sweep r has weight ∝ Ẑ_r W_r^i. A NumPyro model is
sampled in its unconstrained space ([`numpyro_transport.model`][numpyro_transport.model]).
"""

import warnings
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.smc.resampling import systematic
from jax.flatten_util import ravel_pytree
from jax.scipy.special import logsumexp

from numpyro_transport import driver
from numpyro_transport.config import TransportConfig
from numpyro_transport.evidence_checks import EvidenceChecks, check_evidence
from numpyro_transport.model import ModelRun, model_run
from numpyro_transport.records import SweepRecord
from numpyro_transport.reference import Reference, broad, from_moments
from numpyro_transport.sweep import Schedule
from numpyro_transport.validation import check_logdensity, check_reference, integer, real
from numpyro_transport.weights import combine_evidence, evidence_interval

__all__ = ["TransportResult", "transport"]


@dataclass(frozen=True)
class TransportResult:
    """What [`transport`][numpyro_transport.transport] returns.

    The evidence's standard error is the Monte Carlo error of the frozen sweeps given the
    regions they found: a mode that no sweep visits is in neither log Ẑ nor its error.

    Attributes:
        samples: ``(R·N, d)`` equal-weight draws from the target; for a NumPyro model, a dict
            of constrained sites (deterministic sites included), each with leading axis R·N;
            for a pytree ``initial_position``, that pytree with leading axis R·N.
        particles: the ``(R·N, d)`` weighted particles (unconstrained for a model, flattened
            for a pytree position).
        log_weights: their normalized log-weights (∝ log Ẑ_r + log W_r^i).
        log_evidence: log Ẑ over the R frozen sweeps.
        log_evidence_se: its standard error (delta method on the spread of the Ẑ_r).
        log_evidence_interval: a 95 % interval for log Z, Student-t with R − 1 degrees of
            freedom ([`evidence_interval`][numpyro_transport.weights.evidence_interval]): with
            few sweeps, read ``log_evidence ± 2·log_evidence_se`` as too narrow, this as the
            error bar.
        sweep_log_evidence: ``(R,)`` each frozen sweep's log Ẑ_r.
        sweep_samples: ``(R, N, d)`` each frozen sweep's own equal-weight draws (ArviZ's
            chains, in [`to_arviz`][numpyro_transport.TransportResult.to_arviz]).
        reference: the frozen Gaussian preconditioner.
        schedule: the frozen λ-grid.
        warmup_records: [`SweepRecord`][numpyro_transport.records.SweepRecord] of the warm-up
            sweeps, leading axis ``(num_warmup,)``.
        sweep_records: [`SweepRecord`][numpyro_transport.records.SweepRecord] of the frozen sweeps,
            leading axis ``(R,)``; e.g. ``sweep_records.steps.log_increment[:, :K]``.
        evidence_checks: the [`EvidenceChecks`][numpyro_transport.evidence_checks.EvidenceChecks]
            of the frozen sweeps (sweeps that disagree, a heavy right tail of Ẑ, collapsed
            drift estimates); a warning was shown for each that failed.
        tempering_exponent: β̂ of the final reference: 1 when importance sampling from it
            reaches the target; below 1 the warm-up did not finish and a warning was shown.
        smc_ran: whether the warm-up first ran tempered SMC from a reference far from p.
        smc_adopted: whether that run's fit replaced the first reference.
        num_evaluations: log-density evaluations of the whole run, warm-up included.
        model: the NumPyro model, its arguments and set-up, or ``None`` for a log-density.
    """

    samples: np.ndarray | dict
    particles: np.ndarray
    log_weights: np.ndarray
    log_evidence: float
    log_evidence_se: float
    log_evidence_interval: tuple[float, float]
    sweep_log_evidence: np.ndarray
    sweep_samples: np.ndarray
    reference: Reference
    schedule: Schedule
    warmup_records: SweepRecord
    sweep_records: SweepRecord
    evidence_checks: EvidenceChecks
    tempering_exponent: float
    smc_ran: bool
    smc_adopted: bool
    num_evaluations: int
    model: ModelRun | None = None

    def to_arviz(self, **from_numpyro_kwargs):
        """An ArviZ DataTree: the frozen sweeps' draws as chains, plus the ``transport`` group.

        See [`numpyro_transport.to_arviz`][numpyro_transport.inference_data.to_arviz].

        Args:
            **from_numpyro_kwargs: keyword arguments of ArviZ's ``from_numpyro`` converter
                (for a model: ``dims``, ``log_likelihood``, …; for a log-density, of
                ``az.from_dict``).

        Returns:
            The ``xarray.DataTree``, with the ``transport`` group.
        """
        from numpyro_transport.inference_data import to_arviz  # noqa: PLC0415 (ArviZ on demand)

        return to_arviz(self, **from_numpyro_kwargs)


class _LogDensityTarget(NamedTuple):
    """A log-density target, flattened: ``logdensity`` of ``(d,)`` vectors, the first reference,
    and ``unravel`` back to the user's pytree (``None`` for a flat vector)."""

    logdensity: object
    reference: Reference
    unravel: object


def _log_density_target(logdensity_fn, reference, initial_position, dim) -> _LogDensityTarget:
    """Flatten a pytree ``initial_position``, check ``dim`` and the reference against it, check
    that ``logdensity_fn`` returns a scalar, and choose the first reference: the one given,
    N(position, I), or N(0, I)."""
    unravel, position = None, None
    if dim is not None:
        dim = integer("dim", dim)
    if initial_position is not None:
        position, unravel = _flatten(initial_position)
        if dim is not None and position.shape != (dim,):
            raise ValueError(
                f"dim={dim!r} conflicts with initial_position, which has {position.shape[0]} "
                "coordinates: give one of them."
            )
        dim = position.shape[0]
    flat = logdensity_fn if unravel is None else (lambda u: logdensity_fn(unravel(u)))
    if reference is not None:
        ref = _as_reference(reference, dim)
        dim = ref.mean.shape[0]
    elif dim is None:
        raise ValueError(
            "transport(logdensity_fn=...) needs the dimension: pass dim, initial_position or "
            "reference=(mean, cov)."
        )
    else:
        ref = broad(dim) if position is None else broad(dim)._replace(mean=position)
    check_logdensity(flat, dim)
    return _LogDensityTarget(flat, ref, unravel)


def _flatten(initial_position):
    """``(position (d,), unravel)``: ``unravel`` is ``None`` for a number or a vector, which
    the log-density then receives as a ``(d,)`` vector; a pytree is flattened and rebuilt."""
    try:
        vector = np.asarray(initial_position, dtype=np.float64)
    except (TypeError, ValueError):
        vector = None
    if vector is not None and vector.ndim <= 1:
        return jnp.atleast_1d(jnp.asarray(vector, jnp.result_type(float))), None
    flat, unravel = ravel_pytree(initial_position)
    if flat.shape[0] == 0:
        raise ValueError("initial_position has no coordinates: there is nothing to sample.")
    return flat.astype(jnp.result_type(float)), unravel


def _as_reference(reference, dim) -> Reference:
    """A given reference, a [`Reference`][numpyro_transport.Reference] or ``(mean, cov)``,
    checked against the target's dimension (``None``: it sets it)."""
    if isinstance(reference, Reference):
        mean, tril = np.asarray(reference.mean), np.asarray(reference.scale_tril)
        check_reference(mean, tril @ tril.T, dim)
        return reference
    try:
        mean, cov = reference
    except (TypeError, ValueError):
        raise TypeError(
            f"reference must be a Reference or a pair (mean, cov); got {type(reference).__name__}."
        ) from None
    return from_moments(*check_reference(mean, cov, dim))


def _moments(reference: Reference):
    """``(mean, cov)`` of a [`Reference`][numpyro_transport.Reference]."""
    tril = np.asarray(reference.scale_tril)
    return np.asarray(reference.mean), tril @ tril.T


def _check_options(num_warmup, num_sweeps, tempering_ess):
    integer("num_warmup", num_warmup, 1, ": the last warm-up sweep fixes the λ-grid")
    integer("num_sweeps", num_sweeps, 2, " to estimate the standard error")
    real("tempering_ess", tempering_ess, 0, 1, open_low=True, open_high=True)


def transport(
    rng_key,
    *,
    model=None,
    logdensity_fn=None,
    model_args=(),
    model_kwargs=None,
    dim: int | None = None,
    initial_position=None,
    reference=None,
    num_warmup: int = driver.NUM_WARMUP,
    num_sweeps: int = 4,
    tempering_ess: float = 0.05,
    progress: bool = True,
    **options,
) -> TransportResult:
    """Sample from exp(logdensity)/Z and estimate log Z by annealed stochastic transport.

    Give exactly one target: ``model`` (a NumPyro model, sampled in its unconstrained space, so
    that Z is the evidence p(data)) or ``logdensity_fn``.

    Args:
        rng_key: a JAX PRNG key; the same key gives the same result.
        model: a NumPyro model, called with ``model_args`` and ``model_kwargs``.
        logdensity_fn: an unnormalized log-density ``u (d,) -> log γ(u)`` returning a scalar,
            jit-able (NaN and −∞ give zero weight; +∞ is an error), or, with a pytree
            ``initial_position``, a log-density of such pytrees (as BlackJAX's).
        model_args: positional arguments of ``model``.
        model_kwargs: keyword arguments of ``model``.
        dim: dimension d of ``logdensity_fn``, if neither ``initial_position`` nor
            ``reference`` gives it.
        initial_position: centre of the broad first reference N(position, I) of
            ``logdensity_fn``: a number, a ``(d,)`` vector, or a pytree (flattened with
            ``ravel_pytree``; ``samples`` then come back as that pytree).
        reference: a [`Reference`][numpyro_transport.Reference] or ``(mean, cov)``.
            Defaults to N(0, I) for a log-density and to the moments of prior draws (in
            unconstrained space) for a model.
        num_warmup: warm-up sweeps (≥ 1), tempered ones included: each but the last adapts
            on the tempered target and refits the reference; the last fixes the λ-grid (the
            warm-up rule of [`numpyro_transport.driver`][numpyro_transport.driver], as for
            ``MCMC(AST(...), num_warmup=...)``).
        num_sweeps: frozen sweeps (≥ 2) for the evidence, its standard error and the draws.
        tempering_ess: while importance sampling from the reference keeps an ESS fraction
            below this, warm-up sweeps target the tempered p^β·reference^(1−β), so that a poor
            reference is moved to the target without a MAP. In (0, 1).
        progress: show a progress bar over the sweeps.
        **options: [`TransportConfig`][numpyro_transport.TransportConfig] options.

    Returns:
        The run's [`TransportResult`][numpyro_transport.TransportResult]: draws, weighted particles,
        evidence and records.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from numpyro_transport import transport
        >>> logdensity = lambda u: -0.5 * jnp.sum((u - 1.0) ** 2)  # Z = 2π
        >>> result = transport(jax.random.key(0), logdensity_fn=logdensity, dim=2, progress=False)
        >>> bool(abs(result.log_evidence - jnp.log(2 * jnp.pi)) < 0.05)
        True

        A NumPyro model, here with log Z = log N(0.5; 0, 2):

        >>> import numpyro, numpyro.distributions as dist
        >>> def model(y):
        ...     mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        ...     numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> result = transport(jax.random.key(1), model=model, model_args=(0.5,), progress=False)
        >>> result.samples["mu"].shape
        (2048,)
        >>> exact = float(dist.Normal(0.0, 2**0.5).log_prob(0.5))
        >>> bool(abs(result.log_evidence - exact) < 4 * result.log_evidence_se + 0.01)
        True
    """
    if (model is None) == (logdensity_fn is None):
        raise ValueError(
            "Give exactly one target: transport(key, model=...) for a NumPyro model or "
            "transport(key, logdensity_fn=...) for a log-density."
        )
    config = TransportConfig.from_options("transport()", **options)
    _check_options(num_warmup, num_sweeps, tempering_ess)
    unravel = None
    if model is None:
        bound = None
        logdensity_fn, ref, unravel = _log_density_target(
            logdensity_fn, reference, initial_position, dim
        )
    else:
        moments = _moments(reference) if isinstance(reference, Reference) else reference
        bound = model_run(model, model_args, model_kwargs, reference=moments)
        logdensity_fn = bound.logdensity
        # The set-up checked a given reference and built it (a Reference is kept as given).
        ref = reference if isinstance(reference, Reference) else bound.setup.reference
    k_run, k_final = jax.random.split(rng_key)
    run = driver.run(
        k_run,
        logdensity_fn,
        ref,
        config,
        num_warmup=num_warmup,
        num_sweeps=num_sweeps,
        tempering_ess=tempering_ess,
        progress=progress,
    )
    driver.warn_if_tempering_unfinished(run.state.warmup.temperature, "transport()")
    result = _result(run, k_final, bound, unravel, config.num_inner * config.max_inner_blocks)
    for message in result.evidence_checks.warnings:
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    return result


def _samples(flat, bound: ModelRun | None, unravel):
    """The user's form of ``(n, d)`` flat draws: constrained sites of a model, the pytree of
    a pytree position (each leaf with a leading axis n), or the flat draws themselves."""
    if bound is not None:
        return bound.constrain(flat)
    if unravel is not None:
        return jax.tree.map(np.asarray, jax.vmap(unravel)(jnp.asarray(flat)))
    return flat


def _result(
    run: driver.Run, rng_key, bound: ModelRun | None, unravel, max_inner: int
) -> TransportResult:
    """Pool the frozen sweeps of ``run``: weights ∝ Ẑ_r W_r^i, equal-weight draws, evidence,
    and the evidence checks (``max_inner``: the cap of the inner size)."""
    sweeps = run.sweeps.result
    log_z = np.asarray(sweeps.log_evidence, np.float64)
    log_evidence, se = combine_evidence(log_z)
    particles = sweeps.particles.reshape(-1, sweeps.particles.shape[-1])
    log_w = jnp.asarray((sweeps.log_weights + log_z[:, None]).reshape(-1), particles.dtype)
    log_w = log_w - logsumexp(log_w)
    k_resample, k_perm = jax.random.split(rng_key)
    idx = systematic(k_resample, jnp.exp(log_w), particles.shape[0])
    samples = np.asarray(jnp.asarray(particles)[jax.random.permutation(k_perm, idx)])
    warm = run.state.warmup
    return TransportResult(
        samples=_samples(samples, bound, unravel),
        particles=particles,
        log_weights=np.asarray(log_w),
        log_evidence=log_evidence,
        log_evidence_se=se,
        log_evidence_interval=evidence_interval(log_z),
        sweep_log_evidence=log_z,
        sweep_samples=sweeps.samples,
        reference=jax.tree.map(np.asarray, warm.reference),
        schedule=jax.tree.map(np.asarray, warm.schedule),
        warmup_records=run.warmup.record,
        sweep_records=run.sweeps.record,
        evidence_checks=check_evidence(log_z, run.sweeps.record, max_inner),
        tempering_exponent=float(warm.temperature),
        smc_ran=bool(run.state.smc_ran),
        smc_adopted=bool(run.state.smc_adopted),
        num_evaluations=run.num_evaluations,
        model=bound,
    )
