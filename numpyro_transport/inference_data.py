"""The evidence of an AST run, and its ArviZ DataTree with a ``transport`` group.

The ``transport`` group holds per-step diagnostics of whole sweeps, dims
``(chain, sweep, step)``: every warm-up sweep (up to 64) and the latest sampling sweeps. Steps
past a sweep's K are NaN. Per-sweep variables (``phase``, ``iteration``, ``sweep_log_evidence``,
``num_steps``, ``temperature``, ``refit_accepted``) have dims ``(chain, sweep)``; the group's
attributes carry ``log_evidence``, ``log_evidence_se``, ``log_evidence_interval`` and the
evidence checks' ``evidence_…`` fields (for an MCMC run, when it proposed at least two sampling
sweeps; [`EvidenceChecks.attrs`][numpyro_transport.evidence_checks.EvidenceChecks.attrs]) and the
kernel's settings.
"""

import json
import warnings
from dataclasses import asdict

import arviz as az
import jax
import numpy as np
import xarray as xr
from numpyro import handlers
from numpyro.infer import MCMC
from numpyro.infer import log_likelihood as pointwise_log_likelihood

from numpyro_transport.driver import warn_if_tempering_unfinished
from numpyro_transport.evidence_checks import (
    EvidenceChecks,
    check_evidence,
    independent_estimates,
)
from numpyro_transport.kernel import AST
from numpyro_transport.records import SweepRecord
from numpyro_transport.sizing import audit
from numpyro_transport.weights import combine_evidence, evidence_interval

__all__ = ["log_evidence", "log_evidence_interval", "to_arviz", "transport_dataset"]


def _kernel(mcmc) -> AST:
    if not isinstance(mcmc.sampler, AST):
        raise TypeError(f"Expected an MCMC run with the AST kernel, got {type(mcmc.sampler)}.")
    if mcmc.last_state is None:
        raise ValueError(
            "This MCMC has not run yet: call mcmc.run(rng_key, *model_args) first, then "
            "log_evidence(mcmc) or to_arviz(mcmc)."
        )
    return mcmc.sampler


def log_evidence(mcmc) -> tuple[float, float]:
    """log Z of the model and its standard error, from an MCMC run with
    [`AST`][numpyro_transport.AST].

    Averages Ẑ over **every** sweep proposed in the sampling phase of every chain, accepted or
    not, each once (the iterations marked ``new_sweep``; those that only draw from the accepted
    particles repeat the latest log Ẑ*). Each frozen sweep's Ẑ is unbiased and independent of
    the others, so their mean is unbiased and its spread gives the standard error (delta method
    on log). When the chains' log Ẑ disagree (a chain whose warm-up lost a mode), the standard
    error comes from the spread of the chains' means instead
    ([`independent_estimates`][numpyro_transport.evidence_checks.independent_estimates]). The
    sweeps the
    chain accepted are not a fair sample: PIMH accepts a sweep with probability min(1, Ẑ*/Ẑ),
    which favours large Ẑ*, so the Ẑ attached to the current draws is biased upward.

    Warns (``RuntimeWarning``, with the measured numbers and the N to use) when the proposed
    sweeps show that N was too small: a spread of log Ẑ* beyond the ``num_particles="auto"``
    pilot's prediction, or a chain stuck for a stretch
    ([`sizing.audit`][numpyro_transport.sizing.audit]); and when the evidence is suspect: a
    proposed sweep far from the others, a heavy right tail of Ẑ*, collapsed drift estimates, or
    chains whose log Ẑ disagree ([`evidence_checks`][numpyro_transport.evidence_checks]).

    Args:
        mcmc: a ``numpyro.infer.MCMC`` that ran the [`AST`][numpyro_transport.AST] kernel with
            its default extra fields (``log_evidence``, ``new_sweep`` and ``accept_prob``
            among them).

    Returns:
        ``(log_z, se)``: log Ẑ and its standard error, as floats.

    Examples:
        >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
        >>> from numpyro.infer import MCMC
        >>> from numpyro_transport import AST, log_evidence
        >>> def model(y):  # log Z = log N(y; 0, 2)
        ...     mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        ...     numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> kernel = AST(model, num_particles=32, max_inner_blocks=1, draws_per_sweep=4)
        >>> mcmc = MCMC(kernel, num_warmup=2, num_samples=80, progress_bar=False)
        >>> mcmc.run(jax.random.key(0), 0.0)
        >>> log_z, se = log_evidence(mcmc)  # over the 20 proposed sweeps
        >>> bool(abs(log_z + 0.5 * jnp.log(4 * jnp.pi)) < 4 * se + 0.01)
        True
    """
    return combine_evidence(_proposed_log_evidence(mcmc)[0])


def log_evidence_interval(mcmc, level: float = 0.95) -> tuple[float, float]:
    """A (``level``) interval for log Z from an MCMC run with [`AST`][numpyro_transport.AST].

    Student-t over the independent estimates of
    [`log_evidence`][numpyro_transport.inference_data.log_evidence]
    ([`evidence_interval`][numpyro_transport.weights.evidence_interval]): the proposed sweeps
    (with many of them it is log Ẑ ± 1.96·se), or the chains' means, with C − 1 degrees of
    freedom, when the chains disagree.

    It is the Monte Carlo error given the regions the sweeps found: a mode that no sweep
    visits is in neither log Ẑ nor its interval. With the defaults (``num_particles="auto"``,
    which picks N for mixing, not for the evidence) the 4-chain interval covered the exact
    log Z in 95–97 % of runs on the quick start's two modes at N = 32 (with a sweep-only interval:
    67–76 %); a single chain cannot see a warm-up that lost a mode, and covered 88 %
    (docs/benchmarks.md, "Evidence intervals"). Run several chains, or
    [`transport`][numpyro_transport.transport] (its defaults covered 94–96 % on three targets).

    Args:
        mcmc: a ``numpyro.infer.MCMC`` that ran the [`AST`][numpyro_transport.AST] kernel with
            its default extra fields.
        level: the nominal coverage, in (0, 1).

    Returns:
        ``(low, high)``, as floats.
    """
    return evidence_interval(_proposed_log_evidence(mcmc)[0], level)


def _proposed_log_evidence(mcmc) -> tuple[np.ndarray, EvidenceChecks]:
    """log Ẑ of the independent estimates of Z behind
    [`log_evidence`][numpyro_transport.inference_data.log_evidence]
    ([`independent_estimates`][numpyro_transport.evidence_checks.independent_estimates]) and the
    [`EvidenceChecks`][numpyro_transport.evidence_checks.EvidenceChecks], after the checks and
    warnings."""
    kernel = _kernel(mcmc)
    state = mcmc.last_state
    warn_if_tempering_unfinished(state.driver.warmup.temperature, "the AST chains")
    recorded = (state.warmup_record.steps, state.sample_record.steps)
    infinite = sum(int(np.sum(steps.num_positive_infinite)) for steps in recorded)
    if infinite:
        warnings.warn(
            f"The log-density was +inf at {infinite} inner draws of the recorded sweeps (given "
            "zero weight). A log-density cannot be +inf on a region of positive volume: the "
            "draws and the evidence are not those of a density. Return a finite value there.",
            UserWarning,
            stacklevel=3,
        )
    fields = mcmc.get_extra_fields(group_by_chain=True)
    missing = {"log_evidence", "new_sweep", "accept_prob"} - set(fields)
    if missing:
        raise ValueError(
            f"The run did not collect the fields {sorted(missing)}; keep AST's default_fields."
        )
    new = np.asarray(fields["new_sweep"], bool)
    per_chain = [np.asarray(fields["log_evidence"])[c][new[c]] for c in range(new.shape[0])]
    accept = [np.asarray(fields["accept_prob"])[c][new[c]] for c in range(new.shape[0])]
    proposed = np.concatenate(per_chain)
    if proposed.size < 2:
        raise ValueError(
            f"log_evidence needs at least 2 proposed sweeps; the run proposed {proposed.size} "
            "(one every draws_per_sweep sampling iterations). Run more num_samples, or give "
            "AST(..., draws_per_sweep=...) a smaller value."
        )
    config = kernel.config
    max_inner = config.num_inner * config.max_inner_blocks
    checks = check_evidence(proposed, state.sample_record, max_inner, per_chain)
    messages = audit(per_chain, accept, kernel.config.num_particles, kernel.sizing)
    for message in [*messages, *checks.warnings]:
        warnings.warn(message, RuntimeWarning, stacklevel=3)
    return independent_estimates(per_chain, checks.chains_p), checks


def _ordered(record: SweepRecord) -> tuple[SweepRecord, int]:
    """Each chain's filled slots in iteration order, padded at the end to the largest count
    (chains may propose different numbers of sweeps): padding has iteration −1, no steps and a
    NaN log Ẑ. Returns the record and the number of slots kept."""
    iteration = np.asarray(record.iteration)
    filled = iteration >= 0
    width = int(filled.sum(axis=1).max(initial=0))
    key = np.where(filled, iteration.astype(np.int64), np.iinfo(np.int64).max)
    order = np.argsort(key, axis=1, kind="stable")[:, :width]

    def take(a):
        a = np.asarray(a)
        return np.take_along_axis(a, order.reshape(order.shape + (1,) * (a.ndim - 2)), axis=1)

    taken = jax.tree.map(take, record)
    kept = np.take_along_axis(filled, order, axis=1)
    return taken._replace(
        num_steps=np.where(kept, taken.num_steps, 0),
        iteration=np.where(kept, taken.iteration, -1),
        log_evidence=np.where(kept, taken.log_evidence, np.nan),
    ), width


def transport_dataset(records, phases, attrs=None) -> xr.Dataset:
    """Per-step diagnostics of ``records``, concatenated along ``sweep``.

    Args:
        records: [`SweepRecord`][numpyro_transport.records.SweepRecord]s with leading dims
            ``(chain, sweep)``; empty slots (iteration −1) are dropped, and a chain with fewer
            filled slots than another is padded (iteration −1, NaN).
        phases: the phase of each record (e.g. ``"warmup"``, ``"sample"``), one per record.
        attrs: attributes of the dataset (e.g. ``log_evidence``); none by default.

    Returns:
        The ``xarray.Dataset`` of the ``transport`` group: dims ``(chain, sweep, step)`` and
        ``(chain, sweep)``, steps past a sweep's K set to NaN.
    """
    parts = [(*_ordered(record), phase) for record, phase in zip(records, phases, strict=True)]
    parts = [(record, phase, width) for record, width, phase in parts]
    num_steps = np.concatenate([np.asarray(r.num_steps) for r, _, _ in parts], axis=1)
    width = max(int(num_steps.max(initial=0)), 1)
    valid = np.arange(width) < num_steps[..., None]
    dims3, dims2 = ("chain", "sweep", "step"), ("chain", "sweep")
    data = {}
    for name in parts[0][0].steps._fields:
        value = np.concatenate(
            [np.asarray(getattr(r.steps, name))[..., :width] for r, _, _ in parts], axis=1
        )
        data[name] = (dims3, np.where(valid, value.astype(np.float64), np.nan))
    for name in ("iteration", "log_evidence", "temperature", "refit_accepted"):
        value = np.concatenate([np.asarray(getattr(r, name)) for r, _, _ in parts], axis=1)
        key = "sweep_log_evidence" if name == "log_evidence" else name
        data[key] = (dims2, value)
    data["num_steps"] = (dims2, num_steps)
    phase = np.concatenate([np.full(n, p) for _, p, n in parts])
    coords = {
        "chain": np.arange(num_steps.shape[0]),
        "sweep": np.arange(num_steps.shape[1]),
        "step": np.arange(width),
        "phase": ("sweep", phase),
    }
    return xr.Dataset(data, coords=coords, attrs=attrs or {})


def _site_dims(trace) -> dict:
    """Dims of the sample and deterministic sites of a model ``trace``, named as
    ``az.from_numpyro`` names them: the site's plates, outermost first, then the names its
    ``infer={"event_dims": [...]}`` gives."""
    dims = {}
    for name, site in trace.items():
        if site["type"] not in ("sample", "deterministic"):
            continue
        plates = sorted(site.get("cond_indep_stack", []), key=lambda frame: frame.dim)
        names = [frame.name for frame in plates] + list(site.get("infer", {}).get("event_dims", []))
        if names:
            dims[name] = names
    return dims


def _model_trace(run, values) -> dict:
    """NumPyro's trace of the model of ``run`` with its sites set to ``values``."""
    model = handlers.substitute(handlers.seed(run.model, rng_seed=0), data=values)
    return handlers.trace(model).get_trace(*run.model_args, **run.model_kwargs)


def _model_tree(run, draws, *, log_likelihood=False, dims=None, **from_dict_kwargs):
    """The DataTree of ``draws`` (``(chain, draw, d)``, unconstrained) of a
    [`ModelRun`][numpyro_transport.model.ModelRun], by ArviZ's and NumPyro's public functions:
    the constrained and deterministic sites as the posterior, the observed sites (and the dims)
    from a trace of the model at the first draw, and NumPyro's pointwise log-likelihood when
    ``log_likelihood`` is true."""
    posterior = run.constrain(draws)
    trace = _model_trace(run, {name: value[0, 0] for name, value in posterior.items()})
    observed = {
        name: site["value"]
        for name, site in trace.items()
        if site["type"] == "sample" and site["is_observed"]
    }
    groups = {"posterior": posterior}
    if observed:
        groups["observed_data"] = jax.device_get(observed)
        if log_likelihood:
            pointwise = pointwise_log_likelihood(
                run.model, posterior, *run.model_args, batch_ndims=2, **run.model_kwargs
            )
            groups["log_likelihood"] = jax.device_get(pointwise)
    dims = _site_dims(trace) if dims is None else dims
    return az.from_dict(groups, dims=dims, **from_dict_kwargs)


def from_numpyro(posterior, **kwargs) -> xr.DataTree:
    """``az.from_numpyro``, retried without inferred dims if inferring them fails.

    ArviZ infers dims by running the model with every latent site drawn from its prior, and
    some priors need an optional package to be sampled (a truncated Student-t's icdf needs
    tensorflow_probability): the draws are fine, only the dims names are lost.

    Args:
        posterior: the ``numpyro.infer.MCMC`` run that ``az.from_numpyro`` converts.
        **kwargs: keyword arguments of ``az.from_numpyro``; with explicit ``dims`` nothing is
            retried.

    Returns:
        The ArviZ ``xarray.DataTree``.
    """
    try:
        return az.from_numpyro(posterior, **kwargs)
    except (ImportError, NotImplementedError):
        if "dims" in kwargs:
            raise
        return az.from_numpyro(posterior, **{**kwargs, "dims": {}, "pred_dims": {}})


def _result_to_arviz(result, **from_numpyro_kwargs) -> xr.DataTree:
    if result.model is None:
        tree = az.from_dict({"posterior": {"x": result.sweep_samples}}, **from_numpyro_kwargs)
    else:
        tree = _model_tree(result.model, result.sweep_samples, **from_numpyro_kwargs)
    attrs = {
        "log_evidence": result.log_evidence,
        "log_evidence_se": result.log_evidence_se,
        "log_evidence_interval": list(result.log_evidence_interval),
        "dim": int(result.reference.mean.shape[-1]),
        **result.evidence_checks.attrs(),
    }
    records = [
        jax.tree.map(lambda a: np.asarray(a)[None], r)  # one chain
        for r in (result.warmup_records, result.sweep_records)
    ]
    tree["transport"] = xr.DataTree(transport_dataset(records, ("warmup", "sample"), attrs))
    return tree


def to_arviz(run, **from_numpyro_kwargs) -> xr.DataTree:
    """ArviZ DataTree of an AST run or a ``transport()`` result, with the ``transport`` group.

    For an MCMC run it is ``az.from_numpyro(mcmc, **from_numpyro_kwargs)`` plus the group. For a
    ``transport()`` result the posterior's chains are its frozen sweeps (each sweep's own
    equal-weight draws): for a model, its constrained and deterministic sites with the dims of
    its plates, its observed data and, with ``log_likelihood=True``, NumPyro's pointwise
    log-likelihood (``az.from_dict``); for a log-density, a variable ``x``.

    Args:
        run: a ``numpyro.infer.MCMC`` run of the [`AST`][numpyro_transport.AST] kernel, or a
            [`TransportResult`][numpyro_transport.TransportResult].
        **from_numpyro_kwargs: keyword arguments of ``az.from_numpyro``; for a ``transport()``
            result, ``log_likelihood`` (of a model) and those of ``az.from_dict`` (``dims``,
            ``coords``, …).

    Returns:
        The ``xarray.DataTree``, with the ``transport`` group of per-step diagnostics and the
        evidence in its attributes.

    Examples:
        >>> import jax, numpyro, numpyro.distributions as dist
        >>> from numpyro.infer import MCMC
        >>> from numpyro_transport import AST, to_arviz
        >>> def model(y):  # log Z = log N(y; 0, 2)
        ...     mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        ...     numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> kernel = AST(model, num_particles=32, max_inner_blocks=1)
        >>> mcmc = MCMC(kernel, num_warmup=2, num_samples=20, progress_bar=False)
        >>> mcmc.run(jax.random.key(0), 0.0)
        >>> dt = to_arviz(mcmc)
        >>> sorted(dt["transport"].dims)
        ['chain', 'step', 'sweep']
    """
    if not isinstance(run, MCMC):  # a TransportResult
        return _result_to_arviz(run, **from_numpyro_kwargs)
    kernel = _kernel(run)
    mcmc = run
    tree = from_numpyro(mcmc, **from_numpyro_kwargs)
    state = mcmc.last_state
    records = [state.warmup_record, state.sample_record]
    if mcmc.num_chains == 1:
        records = [jax.tree.map(lambda a: np.asarray(a)[None], r) for r in records]
    attrs = {
        "dim": int(np.shape(state.driver.warmup.reference.mean)[-1]),
        "num_particles": kernel.config.num_particles,
        "draws_per_sweep": int(np.min(np.asarray(state.draws_per_sweep))),
        "config": json.dumps(asdict(kernel.config)),
    }
    proposed = np.asarray(mcmc.get_extra_fields().get("new_sweep", [])).sum()
    if proposed >= 2:  # else no evidence: log_evidence(mcmc) says why
        sweeps, checks = _proposed_log_evidence(mcmc)
        attrs["log_evidence"], attrs["log_evidence_se"] = combine_evidence(sweeps)
        attrs["log_evidence_interval"] = list(evidence_interval(sweeps))
        attrs.update(checks.attrs())
    if kernel.sizing is not None:  # num_particles="auto": the pilot that chose N
        attrs.update(
            pilot_particles=kernel.sizing.pilot_particles,
            pilot_log_evidence_sd=kernel.sizing.pilot_log_evidence_sd,
            pilot_evaluations=kernel.sizing.num_evaluations,
        )
    tree["transport"] = xr.DataTree(transport_dataset(records, ("warmup", "sample"), attrs))
    return tree
