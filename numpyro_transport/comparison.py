"""Run AST next to NUTS (and BlackJAX's tempered SMC and nested slice sampling) on one NumPyro
model: one table, one figure.

[`compare_samplers`][numpyro_transport.comparison.compare_samplers] runs each sampler on the same
model and data and returns a [`Comparison`][numpyro_transport.comparison.Comparison]: one ArviZ
DataTree per sampler, a table of costs and diagnostics, and a per-parameter agreement table.
Disagreement between samplers is measured in posterior standard deviations (what a user would
notice) and in Monte Carlo standard errors (what cannot be noise). (ArviZ's ``az.compare`` compares
models; this module compares samplers on one model.)
"""

import time
import warnings
from dataclasses import dataclass

import arviz as az
import jax
import numpy as np
import pandas as pd
from jax import monitoring
from numpyro.infer import MCMC, NUTS

from numpyro_transport.baselines import blackjax_nss, blackjax_smc
from numpyro_transport.inference_data import from_numpyro, log_evidence, to_arviz
from numpyro_transport.kernel import AST
from numpyro_transport.model import model_run
from numpyro_transport.weights import combine_evidence

__all__ = ["Comparison", "compare_samplers", "compare", "SAMPLERS"]

SAMPLERS = ("ast", "nuts", "smc", "nss")

_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
_compile_seconds = [0.0]
_listening = []


def _on_event(event, duration, **_):
    if event in _COMPILE_EVENTS:
        _compile_seconds[0] += duration


def _listen_to_compiles():
    """Count JAX's compile time from the first
    [`compare_samplers`][numpyro_transport.comparison.compare_samplers] on (one listener per
    process; importing the package registers none)."""
    if not _listening:
        monitoring.register_event_duration_secs_listener(_on_event)
        _listening.append(True)


@dataclass(frozen=True)
class Comparison:
    """What [`compare_samplers`][numpyro_transport.comparison.compare_samplers] returns.

    Attributes:
        trees: ``{sampler: DataTree}``; AST's has the ``transport`` group.
        table: one row per sampler: ``wall_s`` (everything, compilation included),
            ``compile_s``, ``ess_bulk_min``, ``ess_tail_min``, ``ess_per_s`` (min bulk ESS over
            the wall time net of compilation), ``r_hat_max``, ``divergences`` (NUTS), ``log_z``
            and ``log_z_se`` (AST, SMC and NSS; SMC's ``log_z_se`` is the sd over its
            runs/√runs, NSS's √(Σ se_r²)/R from the R runs' own standard errors),
            ``evaluations`` and ``gradients`` (log-density evaluations, with and without
            gradient).
        agreement: one row per scalar parameter and sampler other than the first:
            ``mean_diff_sd`` (difference of means over the pooled posterior sd), ``sd_ratio``,
            ``z`` (difference of means over its Monte Carlo standard error), ``r_hat`` (the
            larger of the two samplers' R̂) and ``disagree``: a difference a user would see
            (|mean_diff_sd| > 0.1 or an sd off by 10 %) that is either beyond Monte Carlo noise
            (|z| > 4) or comes with a sampler that has not converged (R̂ > 1.05, where the
            standard errors themselves are unreliable).
    """

    trees: dict
    table: pd.DataFrame
    agreement: pd.DataFrame

    def plot(self, var_names=None, **plot_dist_kwargs):
        """Overlay each sampler's marginals (``arviz_plots.plot_dist``, one colour per sampler)
        and mark the parameters where they disagree.

        A parameter flagged ``disagree`` in [`agreement`][numpyro_transport.comparison.Comparison]
        gets a red title naming the samplers that disagree with the first one (``≠ nuts``). Each
        panel is about 3.4 × 2.6 inches in a constrained layout, so that titles, tick labels and
        the legend (titled "sampler") do not overlap; the point estimates are drawn without their
        text, which two samplers with close means would print on top of each other.

        Args:
            var_names: the variables to plot (``arviz_plots.plot_dist``'s ``var_names``);
                ``None`` plots them all.
            **plot_dist_kwargs: other keyword arguments of ``arviz_plots.plot_dist``; a
                ``figure_kwargs`` with a ``figsize`` keeps that size, and ``visuals`` may turn
                the point estimates' text back on (``{"point_estimate_text": {}}``).

        Returns:
            The ``PlotCollection`` (``.savefig(path)`` saves it).
        """
        import arviz_plots as azp  # noqa: PLC0415 (the plotting stack is loaded on demand)

        figure_kwargs = {"layout": "constrained", **plot_dist_kwargs.pop("figure_kwargs", {})}
        visuals = {"point_estimate_text": False, **plot_dist_kwargs.pop("visuals", {})}
        pc = azp.plot_dist(
            dict(self.trees),
            var_names=var_names,
            figure_kwargs=figure_kwargs,
            visuals=visuals,
            **plot_dist_kwargs,
        )
        figure = pc.viz["figure"].item()
        if "figsize" not in figure_kwargs:
            rows, cols = figure.axes[0].get_gridspec().get_geometry()
            figure.set_size_inches(3.4 * cols, 2.6 * rows)
        pc.add_legend("model", title="sampler")
        flagged = self.agreement[self.agreement["disagree"]].groupby("parameter")["sampler"]
        against = {parameter: ", ".join(samplers) for parameter, samplers in flagged}
        for var, titles in pc.viz["title"].dataset.data_vars.items():
            for index in np.ndindex(*titles.shape):
                label = f"{var}[{','.join(map(str, index))}]" if index else var
                if label in against:
                    text = titles.values[index]
                    text.set_text(f"{text.get_text()}  ≠ {against[label]}")
                    text.set_color("C3")
        return pc


def compare_samplers(
    model,
    rng_key,
    *model_args,
    samplers=("ast", "nuts"),
    num_warmup: int = 500,
    num_samples: int = 1000,
    num_chains: int = 2,
    ast_warmup: int = 5,
    ast_options: dict | None = None,
    smc_options: dict | None = None,
    nss_options: dict | None = None,
    progress_bar: bool = True,
    **model_kwargs,
) -> Comparison:
    """Run ``samplers`` on ``model(*model_args, **model_kwargs)`` and compare them.

    Args:
        model: a NumPyro model.
        rng_key: a JAX PRNG key (each sampler gets its own split).
        *model_args: positional arguments of the model.
        samplers: names among ``"ast"``, ``"nuts"``, ``"smc"`` (BlackJAX adaptive tempered
            SMC with tuned HMC moves, from the same prior-moment Gaussian reference as AST) and
            ``"nss"`` (BlackJAX nested slice sampling with that reference as its prior). The
            first one is the reference of the agreement table.
        num_warmup: NUTS warm-up iterations.
        num_samples: draws per chain (for SMC: particles per run; for NSS: draws resampled
            from each run's weighted dead points).
        num_chains: independent chains, vectorized (for SMC and NSS: independent runs,
            vectorized).
        ast_warmup: AST warm-up iterations; each is a whole adaptive sweep, so a few suffice.
        ast_options: options of [`AST`][numpyro_transport.AST] (``num_particles``, …).
        smc_options: options of [`blackjax_smc`][numpyro_transport.baselines.blackjax_smc].
        nss_options: options of [`blackjax_nss`][numpyro_transport.baselines.blackjax_nss]
            (``num_live``, …).
        progress_bar: a progress bar per MCMC sampler.
        **model_kwargs: keyword arguments of the model.

    Returns:
        The samplers' [`Comparison`][numpyro_transport.comparison.Comparison]: one DataTree per
        sampler, the table of costs and diagnostics and the agreement table.

    Examples:
        >>> import jax, numpyro, numpyro.distributions as dist
        >>> from numpyro_transport import compare_samplers
        >>> def model(y):
        ...     mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        ...     numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> result = compare_samplers(model, jax.random.key(0), 0.0, num_warmup=200,
        ...                           num_samples=200, ast_warmup=2,
        ...                           ast_options=dict(num_particles=32, max_inner_blocks=1),
        ...                           progress_bar=False)
        >>> list(result.table.index)
        ['ast', 'nuts']
        >>> bool(result.agreement["disagree"].any())
        False
    """
    unknown = set(samplers) - set(SAMPLERS)
    if unknown or not samplers:
        raise ValueError(f"samplers={samplers!r}: choose among {SAMPLERS}.")
    keys = dict(zip(samplers, jax.random.split(rng_key, len(samplers)), strict=True))
    settings = dict(num_samples=num_samples, num_chains=num_chains, progress_bar=progress_bar)
    problem = (model, model_args, model_kwargs)
    runs = {
        "ast": lambda key: _run_ast(key, *problem, ast_warmup, ast_options, **settings),
        "nuts": lambda key: _run_nuts(key, *problem, num_warmup, **settings),
        "smc": lambda key: _run_baseline(blackjax_smc, key, *problem, smc_options, **settings),
        "nss": lambda key: _run_baseline(blackjax_nss, key, *problem, nss_options, **settings),
    }
    _listen_to_compiles()
    trees, rows = {}, {}
    for name in samplers:
        start, compiled = time.perf_counter(), _compile_seconds[0]
        tree, row = runs[name](keys[name])
        row["wall_s"] = time.perf_counter() - start
        row["compile_s"] = _compile_seconds[0] - compiled
        trees[name], rows[name] = tree, row | _diagnostics(tree, row)
    columns = [
        "wall_s",
        "compile_s",
        "ess_bulk_min",
        "ess_tail_min",
        "ess_per_s",
        "r_hat_max",
        "divergences",
        "log_z",
        "log_z_se",
        "evaluations",
        "gradients",
    ]
    table = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=columns)
    return Comparison(trees, table, _agreement(trees))


def compare(*args, **kwargs) -> Comparison:
    """Deprecated alias of [`compare_samplers`][numpyro_transport.comparison.compare_samplers],
    removed in the next release.

    The name clashed with ArviZ's ``az.compare``, which compares models; this function compares
    samplers on one model.

    Args:
        *args: positional arguments of
            [`compare_samplers`][numpyro_transport.comparison.compare_samplers].
        **kwargs: keyword arguments of
            [`compare_samplers`][numpyro_transport.comparison.compare_samplers].

    Returns:
        What [`compare_samplers`][numpyro_transport.comparison.compare_samplers] returns.
    """
    warnings.warn(
        "numpyro_transport.compare is deprecated and will be removed in the next release: use "
        "compare_samplers (it compares samplers on one model, where ArviZ's az.compare compares "
        "models).",
        DeprecationWarning,
        stacklevel=2,
    )
    return compare_samplers(*args, **kwargs)


def _mcmc(kernel, num_warmup, num_samples, num_chains, progress_bar):
    return MCMC(
        kernel,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method="vectorized",
        progress_bar=progress_bar,
    )


def _extra_total(mcmc, field) -> int:
    return int(np.sum(np.asarray(mcmc.get_extra_fields()[field], dtype=np.int64)))


def _run_ast(key, model, model_args, model_kwargs, ast_warmup, options, **settings):
    # One run() compiles one program; the state counts the warm-up's evaluations.
    mcmc = _mcmc(AST(model, **(options or {})), ast_warmup, **settings)
    mcmc.run(key, *model_args, extra_fields=("num_evaluations",), **model_kwargs)
    warmup = int(np.sum(np.asarray(mcmc.last_state.driver.num_evaluations, dtype=np.int64)))
    if mcmc.sampler.sizing is not None:  # the pilot run of num_particles="auto"
        warmup += mcmc.sampler.sizing.num_evaluations
    evaluations = warmup + _extra_total(mcmc, "num_evaluations")
    log_z, se = log_evidence(mcmc)
    gradients = evaluations if mcmc.sampler.config.gradient_control_variate else 0
    row = dict(log_z=log_z, log_z_se=se, evaluations=evaluations, gradients=gradients)
    return to_arviz(mcmc), row


def _run_nuts(key, model, model_args, model_kwargs, num_warmup, **settings):
    # Warm-up then sampling, to count the warm-up's gradient evaluations too.
    mcmc = _mcmc(NUTS(model), num_warmup, **settings)
    k_warm, k_run = jax.random.split(key)
    fields = ("num_steps",)
    mcmc.warmup(k_warm, *model_args, collect_warmup=True, extra_fields=fields, **model_kwargs)
    steps = _extra_total(mcmc, "num_steps")
    mcmc.run(k_run, *model_args, extra_fields=fields, **model_kwargs)
    steps += _extra_total(mcmc, "num_steps")
    divergences = int(np.sum(np.asarray(mcmc.get_extra_fields()["diverging"])))
    row = dict(divergences=divergences, evaluations=steps, gradients=steps)
    return from_numpyro(mcmc), row


#: The keyword that sets a baseline's draws per run.
_DRAWS = {blackjax_smc: "num_particles", blackjax_nss: "num_samples"}


def _run_baseline(
    baseline, key, model, model_args, model_kwargs, options, num_samples, num_chains, **_
):
    """``num_chains`` independent runs of ``baseline`` (``blackjax_smc`` or ``blackjax_nss``)
    from AST's reference, ``num_samples`` draws each; chain = run."""
    run = model_run(model, model_args, model_kwargs)
    ref = run.setup.reference
    options = {_DRAWS[baseline]: num_samples, **(options or {})}
    out = baseline(key, run.logdensity, ref.mean, ref.scale_tril, num_runs=num_chains, **options)
    samples = np.asarray(out["samples"]).reshape(num_chains, -1, ref.mean.shape[0])
    tree = az.from_dict({"posterior": run.constrain(samples)})
    log_z = np.atleast_1d(out["log_z"])
    pooled, _ = combine_evidence(log_z)
    if "log_z_se" in out:  # NSS: each run's own standard error
        se = float(np.sqrt(np.sum(np.square(out["log_z_se"]))) / log_z.size)
    else:  # SMC: the spread over runs
        se = float(np.std(log_z, ddof=1) / np.sqrt(log_z.size)) if log_z.size > 1 else np.nan
    row = dict(
        log_z=pooled,
        log_z_se=se,
        evaluations=out["num_logdensity_evals"],
        gradients=out["num_grad_evals"],
    )
    return tree, row


def _diagnostics(tree, row):
    summary = az.summary(tree, kind="diagnostics", fmt="wide", round_to="none")
    ess_bulk = float(summary["ess_bulk"].min())
    sampling_s = row.get("wall_s", np.nan) - row.get("compile_s", 0.0)
    return dict(
        ess_bulk_min=ess_bulk,
        ess_tail_min=float(summary["ess_tail"].min()),
        r_hat_max=float(summary["r_hat"].max()),
        ess_per_s=ess_bulk / sampling_s if sampling_s > 0 else np.nan,
    )


def _scalars(tree):
    """``{parameter[i,...]: (chain, draw) array}`` of every posterior scalar."""
    out = {}
    for name, da in tree["posterior"].dataset.data_vars.items():
        values = np.asarray(da.values, dtype=np.float64)
        extra = values.shape[2:]
        for index in np.ndindex(*extra):
            label = name if not extra else f"{name}[{','.join(map(str, index))}]"
            out[label] = values[(slice(None), slice(None), *index)]
    return out


def _agreement(trees) -> pd.DataFrame:
    names = list(trees)
    reference = _scalars(trees[names[0]])
    rows = []
    for other in names[1:]:
        draws = _scalars(trees[other])
        for label in reference.keys() & draws.keys():
            a, b = reference[label], draws[label]
            pooled_sd = np.sqrt(0.5 * (a.var() + b.var()))
            mcse = np.hypot(_mcse(a), _mcse(b))
            diff = b.mean() - a.mean()
            mean_diff_sd = diff / pooled_sd if pooled_sd > 0 else 0.0
            sd_ratio = b.std() / a.std() if a.std() > 0 else np.nan
            z = diff / mcse if mcse > 0 else 0.0
            r_hat = max(_r_hat(a), _r_hat(b))
            visible = abs(mean_diff_sd) > 0.1 or abs(sd_ratio - 1) > 0.1
            rows.append(
                dict(
                    parameter=label,
                    sampler=other,
                    versus=names[0],
                    mean_diff_sd=mean_diff_sd,
                    sd_ratio=sd_ratio,
                    z=z,
                    r_hat=r_hat,
                    disagree=bool(visible and (abs(z) > 4 or r_hat > 1.05)),
                )
            )
    return pd.DataFrame(rows).sort_values(["sampler", "parameter"], ignore_index=True)


def _r_hat(draws):
    """Rank-normalized split R̂ of ``(chain, draw)`` draws (ArviZ)."""
    return float(az.rhat(draws, chain_axis=0, draw_axis=1))


def _mcse(draws):
    """Monte Carlo standard error of the mean of ``(chain, draw)`` draws (ArviZ, bulk ESS)."""
    return float(az.mcse(draws, chain_axis=0, draw_axis=1))
