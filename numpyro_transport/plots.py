"""Figures of the transport's diagnostics, from the DataTree of
[`to_arviz`][numpyro_transport.inference_data.to_arviz].

Every function takes the DataTree of an ``MCMC(AST)`` run or of a
[`transport`][numpyro_transport.transport] result, as
[`to_arviz`][numpyro_transport.inference_data.to_arviz] builds it, and returns an
``arviz_plots.PlotCollection`` (matplotlib backend): ``pc.savefig(path)`` saves the figure,
``pc.show()`` shows it, ``pc.viz["figure"].item()`` is the matplotlib ``Figure``, and
``pc.viz[visual][panel]`` holds each drawn element (``pc.viz["median"]["ess"]``, …), as for
ArviZ's own plots ([`Comparison.plot`][numpyro_transport.comparison.Comparison.plot] returns one
too).

Sweeps are summarized rather than drawn one by one: per step, the median across the sweeps of a
phase (all chains) as a line with markers, so that a sweep of one step is a point, and the 10–90 %
band; warm-up sweeps in grey, sampling (frozen) sweeps in colour, with each phase's number of
sweeps in the legend. Every figure is an arviz-plots ``PlotCollection``: each panel is a variable
of a small dataset (``pc.data``) faceted with ``PlotCollection.wrap``, and colour is an aesthetic
mapped to the phase (or the chain).

Examples:
    >>> import jax, jax.numpy as jnp, matplotlib
    >>> matplotlib.use("Agg")
    >>> from numpyro_transport import transport
    >>> from numpyro_transport.plots import plot_schedule
    >>> result = transport(jax.random.key(0), logdensity_fn=lambda u: -0.5 * jnp.sum(u**2),
    ...                    dim=1, num_particles=32, progress=False)
    >>> pc = plot_schedule(result.to_arviz())
    >>> list(pc.viz["plot"].data_vars)  # one panel per variable
    ['lam', 'ess', 'cess']
"""

import arviz_plots as azp
import numpy as np
import xarray as xr
from arviz_base.labels import BaseLabeller, MapLabeller
from arviz_plots import visuals
from scipy.stats import norm

__all__ = ["QUANTILES", "plot_schedule", "plot_mmse", "plot_sweeps", "plot_acceptance"]

#: The band (first and last) and the line (middle) drawn across the sweeps of a phase.
QUANTILES = (0.1, 0.5, 0.9)

#: The colour of each phase of sweeps.
_PHASE_COLORS = {"warmup": "0.55", "sample": "C0"}

#: The style of the reference lines (the d/(1 + λ) law, a combined estimate, an expected rate).
_DASHED = {"color": "k", "linestyle": "--", "width": 0.8}

#: The visual and its argument that set each panel property of ``_decorate``.
_PANEL = {
    "title": (visuals.labelled_title, "text"),
    "xlabel": (visuals.labelled_x, "text"),
    "ylabel": (visuals.labelled_y, "text"),
    "xscale": (visuals.set_xscale, "scale"),
    "yscale": (visuals.set_yscale, "scale"),
    "ylim": (visuals.set_ylim, "limits"),
}


def _transport(data) -> xr.Dataset:
    if "transport" not in data.children:
        raise ValueError(
            "No 'transport' group in this DataTree: build it with numpyro_transport.to_arviz(mcmc)"
            " or TransportResult.to_arviz()."
        )
    return data["transport"].dataset


def _is_mcmc(data) -> bool:
    """Whether ``data`` is the tree of an ``MCMC(AST)`` run (its ``sample_stats`` carry the
    PIMH acceptance), rather than of a ``transport()`` result."""
    return "sample_stats" in data.children and "acceptance_rate" in data["sample_stats"]


def _sample_sweeps(ds) -> xr.Dataset:
    """The sampling sweeps of the ``transport`` group, numbered from 1 along ``sweep``."""
    sample = ds.isel(sweep=np.flatnonzero(ds["phase"].values == "sample"))
    return sample.assign_coords(sweep=np.arange(1, sample.sizes["sweep"] + 1))


def _step_quantiles(ds, names) -> tuple[xr.Dataset, dict]:
    """Per phase and step, the ``QUANTILES`` of the variables ``names`` across the phase's sweeps
    of every chain (dims ``phase, quantile, step``; NaN past the phase's longest sweep), and the
    number of sweeps of each phase that ran at least one step."""
    parts, counts = [], {}
    for phase in dict.fromkeys(ds["phase"].values):
        sweeps = ds.isel(sweep=np.flatnonzero(ds["phase"].values == phase))
        width = int(sweeps["num_steps"].max())
        if width == 0:
            continue
        runs = sweeps[list(names)].drop_vars("phase").isel(step=slice(0, width))
        runs = runs.stack(run=("chain", "sweep"))
        parts.append(runs.quantile(QUANTILES, dim="run").reindex(step=ds["step"]))
        counts[str(phase)] = int((sweeps["num_steps"] > 0).sum())
    return xr.concat(parts, dim="phase").assign_coords(phase=list(counts)), counts


def _wrap(data, panel_size, facet_dims=(), col_wrap=4, **aes) -> azp.PlotCollection:
    """One panel of ``panel_size`` inches per variable of ``data`` and coordinate of its
    ``facet_dims``, ``col_wrap`` to a row, in a constrained layout (``aes``: the aesthetics of
    ``PlotCollection.wrap``)."""
    sizes = [np.prod([da.sizes[d] for d in facet_dims if d in da.dims]) for da in data.values()]
    num_panels = int(sum(sizes))
    rows, cols = -(-num_panels // col_wrap), min(num_panels, col_wrap)
    return azp.PlotCollection.wrap(
        data,
        cols=["__variable__", *facet_dims],
        col_wrap=col_wrap,
        backend="matplotlib",
        figure_kwargs={
            "figsize": (panel_size[0] * cols, panel_size[1] * rows),
            "layout": "constrained",
        },
        **aes,
    )


def _phase_collection(quantiles, counts, panel_size) -> azp.PlotCollection:
    """The panels of ``quantiles``' variables, coloured by phase."""
    median = quantiles.sel(quantile=QUANTILES[1], drop=True)
    colors = [_PHASE_COLORS[phase] for phase in counts]
    return _wrap(median, panel_size, aes={"color": ["phase"]}, color=colors)


def _add_phase_legend(pc, counts) -> None:
    labels = {phase: f"{phase}: {n} sweep{'s' * (n != 1)}" for phase, n in counts.items()}
    title = f"median and {QUANTILES[0]:.0%}–{QUANTILES[-1]:.0%}"
    pc.add_legend("phase", labeller=MapLabeller(coord_map={"phase": labels}), title=title)


def _draw_bands(pc, quantiles, x) -> None:
    """The band between the first and last ``QUANTILES`` and the median line, with markers,
    of each variable of ``quantiles`` against the same variable of ``x``."""
    low, median, high = (quantiles.sel(quantile=q, drop=True) for q in QUANTILES)
    pc.map(visuals.fill_between_y, "band", data=median, x=x, y_bottom=low, y_top=high, alpha=0.25)
    pc.map(visuals.line_xy, "median", data=median, x=x, marker="o", markersize=3)


def _decorate(pc, panels: dict) -> None:
    """Set each panel's properties: ``{variable: {"title": ..., "xscale": ..., ...}}`` (the keys
    of ``_PANEL``)."""
    for var_name, properties in panels.items():
        for key, value in properties.items():
            visual, argument = _PANEL[key]
            pc.facet_map(visual, f"{key}_{var_name}", var_names=var_name, **{argument: value})


def plot_schedule(data) -> azp.PlotCollection:
    """The λ-grid of the sweeps and the ESS/CESS along it, per phase: median and band across
    sweeps.

    Left: λ_k against step k (log scale); the sampling sweeps share the λ-grid that the last
    warm-up sweep froze, so their band is a line. Middle and right: ESS/N after each step and
    the conditional ESS that guards the step size, against the median λ_k; drops mark where
    along the path the particles degenerate.

    Args:
        data: the DataTree of [`to_arviz`][numpyro_transport.inference_data.to_arviz], with its
            ``transport`` group.

    Returns:
        The ``PlotCollection``: panels ``lam``, ``ess`` and ``cess``; the visuals ``band``
        and ``median`` per panel and phase.
    """
    ds = _transport(data)
    quantiles, counts = _step_quantiles(ds, ("lam", "ess", "cess"))
    lam = quantiles["lam"].sel(quantile=QUANTILES[1], drop=True)
    x = xr.Dataset({"lam": xr.ones_like(lam) * (lam["step"] + 1), "ess": lam, "cess": lam})
    pc = _phase_collection(quantiles, counts, (3.8, 3.6))
    _draw_bands(pc, quantiles, x)
    along_lam = {"xscale": "log", "xlabel": "λ (median at step k)", "ylim": (0, 1.05)}
    _decorate(
        pc,
        {
            "lam": {"title": "λ schedule", "xlabel": "step k", "ylabel": "λ_k", "yscale": "log"},
            "ess": {"title": "ESS/N after each step", **along_lam},
            "cess": {"title": "conditional ESS of each step", **along_lam},
        },
    )
    _add_phase_legend(pc, counts)
    return pc


def plot_mmse(data) -> azp.PlotCollection:
    """The MMSE curve M̂(λ) = Σ W tr Ĉ per phase (median and band across sweeps), with the law
    d/(1 + λ) of a Gaussian target whose reference is its prior.

    Step k records M̂ at λ_{k−1}, so the curve starts at λ = 0 (drawn at 1 + λ = 1, on log
    axes). ½∫M̂ dλ is the information the data carry in whitened units; the I-MMSE step rule
    spends ε nats of it per step. A curve far above d/(1 + λ) at the end of the path means the
    last conditional is still wide (raise Λ).

    Args:
        data: the DataTree of [`to_arviz`][numpyro_transport.inference_data.to_arviz], with its
            ``transport`` group.

    Returns:
        The ``PlotCollection``: panel ``mmse``; the visuals ``band`` and ``median`` per phase,
        and ``law`` (d/(1 + λ)).
    """
    ds = _transport(data)
    ds = ds.assign(lam_before=ds["lam"] - ds["delta"])
    quantiles, counts = _step_quantiles(ds, ("mmse", "lam_before"))
    one_plus_lam = 1 + quantiles["lam_before"].sel(quantile=QUANTILES[1], drop=True)
    pc = _phase_collection(quantiles[["mmse"]], counts, (6, 4))
    _draw_bands(pc, quantiles[["mmse"]], xr.Dataset({"mmse": one_plus_lam}))
    grid = np.geomspace(1.0, max(float(one_plus_lam.max()), 2.0), 50)
    law = xr.Dataset({"mmse": ("grid", ds.attrs["dim"] / grid)}, coords={"grid": grid})
    pc.map(
        visuals.line_xy,
        "law",
        data=law,
        x=law["grid"],
        ignore_aes="all",
        **_DASHED,
    )
    _decorate(
        pc,
        {
            "mmse": {
                "title": "MMSE curve (dashed: d/(1 + λ))",
                "xlabel": "1 + λ",
                "ylabel": "M̂(λ) = Σ W tr Ĉ",
                "xscale": "log",
                "yscale": "log",
            }
        },
    )
    _add_phase_legend(pc, counts)
    return pc


class _FlatLabeller(BaseLabeller):
    """ArviZ's labels on one line (``x[0]``), for panel titles."""

    def make_label_vert(self, var_name, sel, isel):
        return self.make_label_flat(var_name, sel, isel)


def _chain_means(data, var_names, by_sweep: bool) -> xr.Dataset:
    """Posterior means of ``var_names`` per chain, the chains renamed ``sweep`` (numbered from 1)
    when ``by_sweep`` (a ``transport()`` tree, whose chains are its frozen sweeps)."""
    posterior = data["posterior"].dataset
    missing = [name for name in var_names if name not in posterior]
    if missing:
        raise ValueError(
            f"var_names={var_names!r}: {missing} are not posterior variables; choose among "
            f"{sorted(posterior.data_vars)}."
        )
    means = posterior[var_names].mean("draw")
    if by_sweep:
        means = means.rename(chain="sweep").assign_coords(sweep=means["chain"].values + 1)
    return means


def _sweep_panels(data, var_names, by_sweep: bool) -> xr.Dataset:
    """The log Ẑ of each sampling sweep (``log_evidence``, per chain unless ``by_sweep``) and
    the posterior means of ``var_names`` per chain or per frozen sweep."""
    log_z = _sample_sweeps(_transport(data))["sweep_log_evidence"]
    panels = xr.Dataset({"log_evidence": log_z.isel(chain=0, drop=True) if by_sweep else log_z})
    return panels.merge(_chain_means(data, var_names, by_sweep)) if var_names else panels


def _combined(data, var_names) -> xr.Dataset:
    """The run's log Ẑ (when it has one) and the posterior means of ``var_names``: the dashed
    line of each panel of [`plot_sweeps`][numpyro_transport.plots.plot_sweeps]."""
    posterior = data["posterior"].dataset
    combined = posterior[var_names].mean(("chain", "draw")) if var_names else xr.Dataset()
    attrs = _transport(data).attrs
    if "log_evidence" in attrs:
        combined["log_evidence"] = attrs["log_evidence"]
    return combined


def plot_sweeps(data, var_names=None) -> azp.PlotCollection:
    """Whether the sampling sweeps agree: each one's log Ẑ with the combined estimate and its
    interval, and optionally posterior means per sweep.

    A sweep several nats below the others missed a mode; posterior means that scatter between
    sweeps show mode weights that one sweep alone gets wrong. For a ``transport()`` result the
    means are per frozen sweep (its chains); for an ``MCMC(AST)`` run they are per chain, and the
    log Ẑ are those of the latest sampling sweeps that the ``transport`` group keeps (the
    combined estimate uses every proposed sweep). The dashed line of a mean is the mean over
    all chains.

    Args:
        data: the DataTree of [`to_arviz`][numpyro_transport.inference_data.to_arviz], with its
            ``transport`` group (and its ``posterior`` for ``var_names``).
        var_names: a posterior variable or a list of them, whose means to draw, one panel per
            scalar component; ``None`` draws log Ẑ only.

    Returns:
        The ``PlotCollection``: panel ``log_evidence`` (visual ``sweeps``, and ``combined``
        and ``interval`` when the run has an evidence estimate) and one per variable of
        ``var_names`` (``sweeps``, and ``combined``: the pooled mean).
    """
    ds = _transport(data)
    by_sweep = not _is_mcmc(data)
    var_names = [var_names] if isinstance(var_names, str) else list(var_names or [])
    panels = _sweep_panels(data, var_names, by_sweep)
    x = xr.Dataset(
        {
            name: da["sweep" if "sweep" in da.dims else "chain"].broadcast_like(da)
            for name, da in panels.items()
        }
    )
    facet_dims = [dim for dim in panels.dims if dim not in ("chain", "sweep")]
    aes = {} if by_sweep else {"aes": {"color": ["chain"]}}
    pc = _wrap(panels, (4.2, 3.4), facet_dims, **aes)
    pc.map(visuals.scatter_xy, "sweeps", x=x, size=18)
    if "log_evidence_interval" in ds.attrs:
        interval = xr.Dataset({"log_evidence": ("bound", ds.attrs["log_evidence_interval"])})
        pc.map(visuals.hspan, "interval", data=interval, ignore_aes="all", color="0.5", alpha=0.2)
    pc.map(
        visuals.hline,
        "combined",
        data=_combined(data, var_names),
        ignore_aes="all",
        **_DASHED,
    )
    unit = "frozen sweep" if by_sweep else "chain"
    title = "log Ẑ per sampling sweep\n(dashed: combined; band: 95 %)"
    _decorate(pc, {"log_evidence": {"title": title, "xlabel": "sampling sweep", "ylabel": "log Ẑ"}})
    if var_names:
        _decorate(pc, {name: {"xlabel": unit, "ylabel": "posterior mean"} for name in var_names})
        pc.facet_map(
            visuals.labelled_title,
            var_names=var_names,
            text=f"per {unit}",
            labeller=_FlatLabeller(),
            subset_info=True,
        )
    if not by_sweep:
        pc.add_legend("chain", loc="outside center right")
        if var_names:
            chains = panels["chain"].values
            pc.facet_map(
                visuals.set_xticks,
                var_names=var_names,
                values=chains,
                labels=chains,
                store_artist=False,
            )
    return pc


def _kept_sweeps(data) -> azp.PlotCollection:
    """The ESS/N after the last step of each frozen sweep of a ``transport()`` tree."""
    sample = _sample_sweeps(_transport(data)).isel(chain=0, drop=True)
    last = (sample["num_steps"] - 1).clip(min=0)
    final = xr.Dataset({"final_ess": sample["ess"].isel(step=last).drop_vars("step")})
    pc = _wrap(final, (7, 4))
    pc.map(visuals.scatter_xy, "sweeps", x=final["sweep"], size=25)
    title = "transport(): no PIMH, every frozen sweep is kept"
    labels = {"xlabel": "frozen sweep", "ylabel": "ESS/N after the last step"}
    _decorate(pc, {"final_ess": {"title": title, "ylim": (0, 1.05), **labels}})
    return pc


def _pimh_acceptance(stats) -> azp.PlotCollection:
    """The acceptance of each draw and its running mean per chain, from the ``sample_stats`` of
    an ``MCMC(AST)`` run, with the rate expected from the spread of log Ẑ."""
    accept = stats[["acceptance_rate"]].astype(float)
    running = accept.cumsum("draw") / np.arange(1, accept.sizes["draw"] + 1)
    pc = _wrap(accept, (7, 4), aes={"color": ["chain"]})
    pc.map(visuals.line, "draws", alpha=0.25, width=0.6)
    pc.map(visuals.line, "running_mean", data=running, width=1.5)
    title = "PIMH acceptance (thin) and its running mean"
    if "log_evidence" in stats:
        log_z = np.asarray(stats["log_evidence"], dtype=float)
        if "new_sweep" in stats:  # each proposed sweep once
            log_z = log_z[np.asarray(stats["new_sweep"], bool)]
        sigma = float(np.std(log_z))
        expected = xr.Dataset({"acceptance_rate": 2 * norm.cdf(-sigma / np.sqrt(2))})
        pc.map(visuals.hline, "expected", data=expected, ignore_aes="all", **_DASHED)
        title += f"\ndashed: 2Φ(−σ/√2), σ = sd(log Ẑ) = {sigma:.2f}"
    labels = {"xlabel": "draw", "ylabel": "acceptance probability", "ylim": (0, 1.05)}
    _decorate(pc, {"acceptance_rate": {"title": title, **labels}})
    pc.add_legend("chain", loc="outside center right")
    return pc


def plot_acceptance(data) -> azp.PlotCollection:
    """PIMH acceptance over the draws of an ``MCMC(AST)`` run, per chain with its running mean;
    for a ``transport()`` result, which keeps every frozen sweep, each sweep's final ESS/N.

    For an MCMC run the dashed line is 2Φ(−σ/√2), the acceptance rate expected when log Ẑ is
    Gaussian with the sd σ measured over all proposed sweeps: a chain far below it is stuck on a
    lucky Ẑ. A ``transport()`` result has no acceptance (its sweeps are independent, all kept,
    weighted by their Ẑ); its figure says so in the title and shows the ESS/N that each frozen
    sweep's particles keep after the last step.

    Args:
        data: the DataTree of [`to_arviz`][numpyro_transport.inference_data.to_arviz]: of an
            ``MCMC(AST)`` run (its ``sample_stats`` group), or of a ``transport()`` result
            (its ``transport`` group).

    Returns:
        The ``PlotCollection``: for an MCMC run, panel ``acceptance_rate`` with the visuals
        ``draws``, ``running_mean`` (per chain) and ``expected``; for a ``transport()`` result,
        panel ``final_ess`` with the visual ``sweeps``.
    """
    if _is_mcmc(data):
        return _pimh_acceptance(data["sample_stats"].dataset)
    return _kept_sweeps(data)
