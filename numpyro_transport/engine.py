"""``transport()``: a whole run in one call, for a NumPyro model or a log-density.

The run is [`numpyro_transport.driver`][numpyro_transport.driver]'s: ``num_warmup`` warm-up sweeps
fit the reference and fix the λ-grid, then ``num_sweeps`` frozen sweeps each return an unbiased Ẑ_r.
They combine as Ẑ = mean_r Ẑ_r, and particle i of sweep r has weight ∝ Ẑ_r W_r^i. A NumPyro model is
sampled in its unconstrained space ([`numpyro_transport.model`][numpyro_transport.model]).
"""

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.smc.resampling import systematic
from jax.scipy.special import logsumexp

from numpyro_transport import driver
from numpyro_transport.config import TransportConfig
from numpyro_transport.model import ModelRun, model_run
from numpyro_transport.records import SweepRecord
from numpyro_transport.reference import Reference, broad, from_moments
from numpyro_transport.sweep import Schedule
from numpyro_transport.weights import combine_evidence

__all__ = ["TransportResult", "transport"]


@dataclass(frozen=True)
class TransportResult:
    """What [`transport`][numpyro_transport.transport] returns.

    The evidence's standard error is the Monte Carlo error of the frozen sweeps given the
    regions they found: a mode that no sweep visits is in neither log Ẑ nor its error.

    Attributes:
        samples: ``(R·N, d)`` equal-weight draws from the target; for a NumPyro model, a dict
            of constrained sites (deterministic sites included), each with leading axis R·N.
        particles: the ``(R·N, d)`` weighted particles (unconstrained for a model).
        log_weights: their normalized log-weights (∝ log Ẑ_r + log W_r^i).
        log_evidence: log Ẑ over the R frozen sweeps.
        log_evidence_se: its standard error (delta method on the spread of the Ẑ_r).
        sweep_log_evidence: ``(R,)`` each frozen sweep's log Ẑ_r.
        sweep_samples: ``(R, N, d)`` each frozen sweep's own equal-weight draws (ArviZ's
            chains, in [`to_arviz`][numpyro_transport.TransportResult.to_arviz]).
        reference: the frozen Gaussian preconditioner.
        schedule: the frozen λ-grid.
        warmup_records: [`SweepRecord`][numpyro_transport.records.SweepRecord] of the warm-up
            sweeps, leading axis ``(num_warmup,)``.
        sweep_records: [`SweepRecord`][numpyro_transport.records.SweepRecord] of the frozen sweeps,
            leading axis ``(R,)``; e.g. ``sweep_records.steps.log_increment[:, :K]``.
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
    sweep_log_evidence: np.ndarray
    sweep_samples: np.ndarray
    reference: Reference
    schedule: Schedule
    warmup_records: SweepRecord
    sweep_records: SweepRecord
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


def _log_density_target(logdensity_fn, reference, initial_position, dim):
    """The reference of a log-density target: given, around ``initial_position``, or N(0, I)."""
    if reference is not None:
        return _as_reference(reference)
    if initial_position is not None:
        position = jnp.atleast_1d(jnp.asarray(initial_position, dtype=jnp.result_type(float)))
        if dim is not None and position.shape != (dim,):
            raise ValueError(
                f"dim={dim!r} conflicts with initial_position of shape {position.shape}: give "
                "one of them, or a position of shape (dim,)."
            )
        return broad(position.shape[0])._replace(mean=position)
    if dim is None:
        raise ValueError(
            "transport(logdensity_fn=...) needs the dimension: pass dim, initial_position or "
            "reference=(mean, cov)."
        )
    return broad(dim)


def _as_reference(reference) -> Reference:
    if isinstance(reference, Reference):
        return reference
    mean, cov = reference
    return from_moments(mean, cov)


def _check_options(num_warmup, num_sweeps, tempering_ess):
    if num_warmup < 1:
        raise ValueError(
            f"num_warmup={num_warmup!r} must be at least 1: the last warm-up sweep fixes the "
            "λ-grid of the frozen sweeps."
        )
    if num_sweeps < 2:
        raise ValueError(
            f"num_sweeps={num_sweeps!r} must be at least 2 to estimate the standard error."
        )
    if not 0 < tempering_ess < 1:
        raise ValueError(f"tempering_ess={tempering_ess!r} must be in (0, 1).")


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
        logdensity_fn: an unnormalized log-density ``u (d,) -> log γ(u)``, jit-able (non-finite
            values give zero weight).
        model_args: positional arguments of ``model``.
        model_kwargs: keyword arguments of ``model``.
        dim: dimension d of ``logdensity_fn``, if neither ``initial_position`` nor
            ``reference`` gives it.
        initial_position: centre of the broad first reference N(position, I) of
            ``logdensity_fn``.
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
    config = TransportConfig(**options)
    _check_options(num_warmup, num_sweeps, tempering_ess)
    if model is None:
        bound, ref = None, _log_density_target(logdensity_fn, reference, initial_position, dim)
    else:
        bound = model_run(model, model_args, model_kwargs)
        logdensity_fn = bound.logdensity
        ref = bound.setup.reference if reference is None else _as_reference(reference)
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
    return _result(run, k_final, bound)


def _result(run: driver.Run, rng_key, bound: ModelRun | None) -> TransportResult:
    """Pool the frozen sweeps of ``run``: weights ∝ Ẑ_r W_r^i, equal-weight draws, evidence."""
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
        samples=samples if bound is None else bound.constrain(samples),
        particles=particles,
        log_weights=np.asarray(log_w),
        log_evidence=log_evidence,
        log_evidence_se=se,
        sweep_log_evidence=log_z,
        sweep_samples=sweeps.samples,
        reference=jax.tree.map(np.asarray, warm.reference),
        schedule=jax.tree.map(np.asarray, warm.schedule),
        warmup_records=run.warmup.record,
        sweep_records=run.sweeps.record,
        tempering_exponent=float(warm.temperature),
        smc_ran=bool(run.state.smc_ran),
        smc_adopted=bool(run.state.smc_adopted),
        num_evaluations=run.num_evaluations,
        model=bound,
    )
