"""The one-call engine: adaptive warm-up sweeps, freeze, then repeated frozen sweeps.

Warm-up sweep w runs adaptively with reference R_w; its Rao–Blackwellized moments give
R_{w+1} (moment matching covers every mode found). The last warm-up sweep's grid, inner sizes
and reference are frozen, and ``num_sweeps`` independent frozen sweeps each return an unbiased
Ẑ_r. They combine as Ẑ = mean_r Ẑ_r, and particle i of sweep r has weight ∝ Ẑ_r W_r^i.
A NumPyro model is sampled in its unconstrained space (:mod:`numpyro_transport.model`).
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
from numpyro_transport import warmup as _warmup
from numpyro_transport.config import TransportConfig
from numpyro_transport.model import ModelRun, model_run
from numpyro_transport.reference import Reference, broad, from_moments
from numpyro_transport.sweep import Schedule, SweepRecord, SweepResult, sweep, sweep_record

__all__ = [
    "TransportResult",
    "transport",
    "combine_evidence",
]

_sweep = jax.jit(sweep, static_argnames=("logdensity_fn", "config", "progress"))
_warmup_init = jax.jit(_warmup.init, static_argnames=("logdensity_fn", "config", "tempering_ess"))
_smc_reference = jax.jit(
    _warmup.smc_reference, static_argnames=("logdensity_fn", "config", "tempering_ess")
)
_adapt = jax.jit(_warmup.adapt, static_argnames=("logdensity_fn", "config", "tempering_ess"))


@dataclass(frozen=True)
class TransportResult:
    """What :func:`transport` returns.

    - **samples** - ``(R·N, d)`` equal-weight draws from the target; for a NumPyro model, a dict
      of constrained sites (deterministic sites included), each with leading axis R·N.
    - **particles**, **log_weights** - the ``(R·N, d)`` weighted particles (unconstrained for a
      model) and their normalized log-weights (∝ log Ẑ_r + log W_r^i).
    - **log_evidence**, **log_evidence_se** - log Ẑ over the R frozen sweeps and its standard
      error (delta method on the spread of the Ẑ_r).
    - **sweep_log_evidence** - ``(R,)`` each frozen sweep's log Ẑ_r.
    - **sweep_samples** - ``(R, N, d)`` each frozen sweep's own equal-weight draws (ArviZ's
      chains, in :meth:`to_arviz`).
    - **reference**, **schedule** - the frozen preconditioner and λ-grid.
    - **diagnostics** - ``{"warmup": [...], "sweeps": {...}}``: per-step arrays (see
      :class:`~numpyro_transport.sweep.StepInfo`) of every warm-up sweep, and of the frozen
      sweeps stacked as ``(R, K)``; plus per-sweep scalars and ``num_evaluations``;
      ``"smc_reference"``: whether the warm-up's tempered SMC run
      (:func:`~numpyro_transport.warmup.smc_reference`) ran, whether its fit was adopted, and
      its evaluations.
    - **records** - :class:`~numpyro_transport.sweep.SweepRecord` of the warm-up and of the
      frozen sweeps, with leading dims ``(1, sweep)``.
    - **model** - the NumPyro model, its arguments and set-up, or ``None`` for a log-density.
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
    diagnostics: dict
    records: tuple[SweepRecord, SweepRecord]
    model: ModelRun | None = None

    def to_arviz(self, **from_numpyro_kwargs):
        """An ArviZ DataTree: the frozen sweeps' draws as chains, plus the ``transport`` group
        (see :func:`numpyro_transport.to_arviz`)."""
        from numpyro_transport.inference_data import to_arviz  # noqa: PLC0415 (import cycle)

        return to_arviz(self, **from_numpyro_kwargs)


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
        raise ValueError(
            "Pass dim, initial_position or reference to set the dimension of a log-density "
            "(a NumPyro model is recognised by running it with model_args and model_kwargs)."
        )
    return broad(dim)


def _check_start(log_r):
    if not np.any(np.isfinite(log_r)):
        raise ValueError(
            f"The log-density is NaN or -inf at all {log_r.shape[0]} initial points drawn from "
            "the reference Gaussian, so no particle can get weight. Check that the density is "
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
    target,
    rng_key,
    *,
    model_args=(),
    model_kwargs=None,
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
    """Sample from exp(logdensity)/Z and estimate log Z by annealed stochastic transport.

    Args:
        target: a log-density ``u (d,) -> log γ(u)``, unnormalized and jit-able (non-finite
            values give zero weight); or a NumPyro model, called with ``model_args`` and
            ``model_kwargs``, sampled in its unconstrained space (Z is then the evidence
            p(data)).
        rng_key: a JAX PRNG key; the same key gives the same result.
        model_args: positional arguments of a NumPyro model.
        model_kwargs: keyword arguments of a NumPyro model.
        dim: dimension d of a log-density, if neither ``initial_position`` nor ``reference``
            gives it.
        initial_position: centre of the broad fallback reference N(position, I).
        reference: a :class:`~numpyro_transport.reference.Reference` or ``(mean, cov)``.
            Defaults to N(0, I) for a log-density and to the moments of prior draws (in
            unconstrained space) for a model.
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

        A NumPyro model, here with log Z = log N(0.5; 0, 2):

        >>> import numpyro, numpyro.distributions as dist
        >>> def model(y):
        ...     mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        ...     numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> result = transport(model, jax.random.key(1), model_args=(0.5,), progress=False)
        >>> result.samples["mu"].shape
        (2048,)
        >>> exact = float(dist.Normal(0.0, 2**0.5).log_prob(0.5))
        >>> bool(abs(result.log_evidence - exact) < 4 * result.log_evidence_se + 0.01)
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
    model_kwargs = model_kwargs or {}
    run = model_run(target, model_args, model_kwargs)
    if run is None:
        logdensity_fn = target
        ref = _as_reference(reference, initial_position, dim)
    else:
        logdensity_fn = run.logdensity
        ref = run.setup.reference if reference is None else _as_reference(reference, None, None)
    keys = iter(jax.random.split(rng_key, max_tempering_sweeps + num_warmup_sweeps + 3))
    state, log_r = _warmup_init(next(keys), logdensity_fn, ref, config, tempering_ess)
    _check_start(np.asarray(log_r))
    smc = dict(ran=False, adopted=False, num_evaluations=0)
    if float(state.temperature) < _warmup.SMC_BELOW:
        smc_key = jax.random.fold_in(rng_key, 1)
        state, adopted, spent = _smc_reference(smc_key, state, logdensity_fn, config, tempering_ess)
        smc = dict(ran=True, adopted=bool(adopted), num_evaluations=int(spent))

    warmup, warmup_entries = [], []
    shown = progress_bar.bar(num_warmup_sweeps + num_sweeps, config.max_lambda)
    with shown if progress else contextlib.nullcontext():

        def warmup_sweep(state, final):
            temperature = _warmup.sweep_temperature(state, final)
            result = _sweep(
                next(keys),
                logdensity_fn,
                state.reference,
                config,
                state.schedule,
                progress,
                temperature,
                adaptive=True,
            )
            _require_finite(result, "warm-up")
            state, accepted = _adapt(state, result, logdensity_fn, config, tempering_ess, final)
            steps = _steps(result)
            steps.update(temperature=np.asarray(temperature), refit_accepted=np.asarray(accepted))
            warmup.append(steps)
            warmup_entries.append(sweep_record(result, temperature, accepted, len(warmup) - 1))
            return state

        # Tempered stages first, while the reference is far from the target (β < 1).
        while float(state.temperature) < 1 and len(warmup) < max_tempering_sweeps:
            progress_bar.add_sweeps(1)
            state = warmup_sweep(state, False)
        for w in range(num_warmup_sweeps):
            state = warmup_sweep(state, w == num_warmup_sweeps - 1)
        _warmup.warn_if_tempering_unfinished(state.temperature, "transport()")
        ref, schedule = state.reference, state.schedule
        runs = []
        for key in jax.random.split(next(keys), num_sweeps):
            result = _sweep(
                key, logdensity_fn, ref, config, schedule, progress, jnp.float32(1), adaptive=False
            )
            _require_finite(result, "frozen sweep")
            runs.append(result)

    log_z = np.array([float(r.log_evidence) for r in runs])
    log_evidence, se = combine_evidence(log_z)
    particles = jnp.concatenate([r.particles for r in runs])
    log_w = jnp.concatenate([r.log_weights + lz for r, lz in zip(runs, log_z, strict=True)])
    log_w = log_w - logsumexp(log_w)
    k_resample, k_perm = jax.random.split(next(keys))
    idx = systematic(k_resample, jnp.exp(log_w), particles.shape[0])
    samples = np.asarray(particles[jax.random.permutation(k_perm, idx)])
    frozen = [_steps(r) for r in runs]
    diagnostics = {
        "warmup": warmup,
        "smc_reference": smc,
        "sweeps": {name: np.stack([f[name] for f in frozen]) for name in frozen[0]},
        # Sweeps, plus the λ = 0 pools that choose β and judge the refits.
        "num_evaluations": int(
            sum(int(w["num_evaluations"]) for w in warmup)
            + sum(int(f["num_evaluations"]) for f in frozen)
            + (1 + _warmup.REFIT_LEVELS * len(warmup)) * config.num_particles * config.num_inner
            + smc["num_evaluations"]
        ),
    }
    entries = [sweep_record(r, 1.0, False, len(warmup) + i) for i, r in enumerate(runs)]
    records = tuple(
        jax.tree.map(lambda *a: np.stack(a)[None], *e) for e in (warmup_entries, entries)
    )
    return TransportResult(
        samples=samples if run is None else run.constrain(samples),
        particles=np.asarray(particles),
        log_weights=np.asarray(log_w),
        log_evidence=log_evidence,
        log_evidence_se=se,
        sweep_log_evidence=log_z,
        sweep_samples=np.stack([np.asarray(r.samples) for r in runs]),
        reference=ref,
        schedule=schedule,
        diagnostics=diagnostics,
        records=records,
        model=run,
    )
