"""Bayes factors in one call: the evidence of several NumPyro models, side by side.

[`compare_models`][numpyro_transport.model_comparison.compare_models] runs
[`transport`][numpyro_transport.transport] on each model with the same data and returns a
[`ModelComparison`][numpyro_transport.model_comparison.ModelComparison]: log Z of each model with
its standard error and interval, log Bayes factors against the best model and posterior model
probabilities, each with its uncertainty. (ArviZ's ``az.compare`` ranks models by predictive
accuracy, PSIS-LOO; this ranks them by marginal likelihood.)

The models' runs are independent, so their errors add: a log Bayes factor log Z_m − log Z_best
has standard error √(se_m² + se_best²). Posterior model probabilities
p_m = π_m Z_m / Σ_j π_j Z_j (π the prior over models) get their interval by propagating each
log Ẑ_m's Student-t error (the interval of
[`evidence_interval`][numpyro_transport.weights.evidence_interval]) through that formula with
``PROBABILITY_DRAWS`` simulated draws. Every number is the Monte Carlo error given the modes each
run found: a mode that no sweep visits is in neither log Ẑ nor its interval.
"""

import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import jax
import numpy as np
import pandas as pd
from scipy.special import logsumexp

from numpyro_transport import progress_bar
from numpyro_transport.engine import TransportResult, transport
from numpyro_transport.model import check_model
from numpyro_transport.validation import real
from numpyro_transport.weights import evidence_interval

__all__ = ["ModelComparison", "compare_models"]

#: Simulated draws of the log Ẑ_m behind the intervals of the posterior model probabilities.
PROBABILITY_DRAWS = 20_000


@dataclass(frozen=True)
class ModelComparison:
    """What [`compare_models`][numpyro_transport.model_comparison.compare_models] returns.

    Attributes:
        table: one row per model, best (largest log Ẑ) first: ``log_z``, ``log_z_se``,
            ``log_z_low`` and ``log_z_high`` (the ``level`` interval), ``log_bf`` (log Ẑ_m −
            log Ẑ_best, 0 for the best model) and ``log_bf_se``, ``prior`` (π_m),
            ``probability`` (posterior model probability π_m Ẑ_m / Σ π_j Ẑ_j),
            ``probability_low`` and ``probability_high`` (its ``level`` interval),
            ``evaluations`` (log-density evaluations) and ``wall_s`` (wall time, compilation
            included).
        results: ``{name: TransportResult}``, each model's run (draws, records, evidence).
        level: the nominal coverage of the intervals.
    """

    table: pd.DataFrame
    results: dict[str, TransportResult]
    level: float

    def plot(self, reference: Mapping | None = None):
        """The log Z interval of each model, best on top, labelled with its probability.

        Args:
            reference: ``{name: log Z}`` values to mark next to the intervals (e.g. exact
                evidences, or another method's estimates); none by default.

        Returns:
            The matplotlib ``Figure``.
        """
        import matplotlib.pyplot as plt  # noqa: PLC0415 (matplotlib on demand: import time)

        table = self.table.iloc[::-1]
        rows = np.arange(len(table))
        fig, ax = plt.subplots(figsize=(6.5, 0.6 * len(table) + 1.4), constrained_layout=True)
        ax.errorbar(
            table["log_z"],
            rows,
            xerr=[table["log_z"] - table["log_z_low"], table["log_z_high"] - table["log_z"]],
            fmt="o",
            capsize=4,
            color="C0",
        )
        for row, probability, high in zip(
            rows, table["probability"], table["log_z_high"], strict=True
        ):
            ax.annotate(
                f"p = {probability:.2f}",
                (high, row),
                xytext=(6, 0),
                textcoords="offset points",
                va="center",
                fontsize="small",
            )
        if reference is not None:
            ax.plot(
                [reference[name] for name in table.index],
                rows,
                "kx",
                label="reference",
            )
            ax.legend(loc="best", fontsize="small")
        ax.set_yticks(rows, table.index)
        ax.margins(x=0.25, y=0.3)
        ax.set(
            xlabel=f"log Z ({self.level:.0%} interval)",
            title="Evidence of each model (p: posterior model probability)",
        )
        return fig


def compare_models(
    models: Mapping,
    rng_key,
    *model_args,
    model_prior: Mapping | None = None,
    level: float = 0.95,
    transport_options: Mapping | None = None,
    **model_kwargs,
) -> ModelComparison:
    """Compare NumPyro models by their evidence: log Z, Bayes factors, model probabilities.

    Each model runs [`transport`][numpyro_transport.transport] with ``model_args`` and
    ``model_kwargs`` (as ``MCMC.run`` passes them), each with its own key split from
    ``rng_key``. Models with improper priors are refused: their evidence is undefined (it scales
    with the prior's arbitrary constant).

    Args:
        models: ``{name: model}``, at least two NumPyro models of the same data.
        rng_key: a JAX PRNG key; the same key gives the same table.
        *model_args: positional arguments of every model.
        model_prior: ``{name: π_m}``, prior probabilities of the models (normalized here);
            uniform by default.
        level: the nominal coverage of the intervals, in (0, 1).
        transport_options: keyword arguments of [`transport`][numpyro_transport.transport] for
            every run (e.g. ``num_sweeps``, ``num_particles``, ``progress``).
        **model_kwargs: keyword arguments of every model.

    Returns:
        The [`ModelComparison`][numpyro_transport.model_comparison.ModelComparison].

    Raises:
        ValueError: fewer than two models, a ``model_prior`` that does not name each model
            once with a positive weight, a ``level`` outside (0, 1), or a model with an improper
            prior.

    Examples:
        >>> import jax, numpyro, numpyro.distributions as dist
        >>> from numpyro_transport.model_comparison import compare_models
        >>> def narrow(y):  # log Z = log N(y; 0, 1 + 1)
        ...     mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        ...     numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> def wide(y):  # log Z = log N(y; 0, 100 + 1): log BF ≈ −1.90
        ...     mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
        ...     numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> comparison = compare_models(
        ...     {"narrow": narrow, "wide": wide}, jax.random.key(0), 0.5,
        ...     transport_options={"progress": False},
        ... )
        >>> list(comparison.table.index)  # best first
        ['narrow', 'wide']
        >>> bool(abs(comparison.table.loc["wide", "log_bf"] - (-1.90)) < 0.05)
        True
    """
    names = list(models)
    if len(names) < 2:
        raise ValueError(
            f"compare_models needs at least two models to compare; got {len(names)} "
            f"({names}). For one model's evidence use transport(key, model=...)."
        )
    level = real("level", level, 0, 1, open_low=True, open_high=True)
    prior = _model_prior(names, model_prior)
    for name in names:
        _refuse_improper(name, models[name], model_args, model_kwargs)
    options = dict(transport_options or {})
    results, rows = {}, []
    *keys, k_probabilities = jax.random.split(rng_key, len(names) + 1)
    for i, (name, key) in enumerate(zip(names, keys, strict=True)):
        if options.get("progress", True):
            progress_bar.status(f"compare_models: model '{name}' ({i + 1} of {len(names)})")
        start = time.perf_counter()
        result = transport(
            key, model=models[name], model_args=model_args, model_kwargs=model_kwargs, **options
        )
        wall = time.perf_counter() - start
        results[name] = result
        low, high = evidence_interval(result.sweep_log_evidence, level)
        rows.append(
            {
                "log_z": result.log_evidence,
                "log_z_se": result.log_evidence_se,
                "log_z_low": low,
                "log_z_high": high,
                "evaluations": result.num_evaluations,
                "wall_s": wall,
            }
        )
    table = pd.DataFrame(rows, index=pd.Index(names, name="model"))
    best = table["log_z"].idxmax()
    table.insert(4, "log_bf", table["log_z"] - table.loc[best, "log_z"])
    se_best = table.loc[best, "log_z_se"]
    table.insert(
        5, "log_bf_se", np.where(table.index == best, 0.0, np.hypot(table["log_z_se"], se_best))
    )
    table.insert(6, "prior", prior)
    low, centre, high = _probabilities(results, prior, level, k_probabilities)
    table.insert(7, "probability", centre)
    table.insert(8, "probability_low", low)
    table.insert(9, "probability_high", high)
    return ModelComparison(table.sort_values("log_z", ascending=False), results, level)


def _model_prior(names, model_prior) -> np.ndarray:
    """π over ``names``: uniform, or ``model_prior`` checked and normalized."""
    if model_prior is None:
        return np.full(len(names), 1.0 / len(names))
    if set(model_prior) != set(names):
        raise ValueError(
            f"model_prior must give a prior probability for each model and no other: models "
            f"{sorted(names)}, model_prior {sorted(model_prior)}."
        )
    weights = np.array([float(model_prior[name]) for name in names])
    if not np.all(np.isfinite(weights) & (weights > 0)):
        raise ValueError(
            f"model_prior's weights must be finite and positive; got {dict(model_prior)}. "
            "Leave out a model rather than give it prior probability 0."
        )
    return weights / weights.sum()


def _refuse_improper(name, model, model_args, model_kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the error below says it for this use
        improper = check_model(model, model_args, model_kwargs)
    if improper:
        raise ValueError(
            f"Model '{name}' has improper priors on {list(improper)}: its evidence is undefined "
            "(it scales with the prior's arbitrary constant), so it has no Bayes factor. Give "
            "those sites proper priors (e.g. Normal or HalfCauchy in place of ImproperUniform)."
        )


def _probabilities(results, prior, level, rng_key):
    """``(low, centre, high)`` of each model's posterior probability: the centre at the
    estimates, the interval's ends the quantiles over log Ẑ_m drawn from their Student-t
    errors."""
    runs = list(results.values())
    log_z = np.array([r.log_evidence for r in runs])
    se = np.array([r.log_evidence_se for r in runs])
    dof = np.array([r.sweep_log_evidence.shape[0] - 1 for r in runs])
    noise = np.asarray(jax.random.t(rng_key, dof, (PROBABILITY_DRAWS, len(runs))))
    log_post = np.log(prior) + log_z + se * noise
    draws = np.exp(log_post - logsumexp(log_post, axis=1, keepdims=True))
    centre = np.exp(np.log(prior) + log_z - logsumexp(np.log(prior) + log_z))
    tail = (1 - level) / 2
    return np.quantile(draws, tail, axis=0), centre, np.quantile(draws, 1 - tail, axis=0)
