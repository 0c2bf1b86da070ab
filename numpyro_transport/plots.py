"""Figures of the transport's diagnostics, from the DataTree of
[`to_arviz`][numpyro_transport.inference_data.to_arviz].

Each function takes the DataTree (with its ``transport`` group, and for
[`plot_acceptance`][numpyro_transport.plots.plot_acceptance] its ``sample_stats``) and returns a
matplotlib ``Figure`` to show or ``savefig``. Warm-up sweeps are drawn in grey, sampling (frozen)
sweeps in colour.
"""

import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import norm

__all__ = ["plot_schedule", "plot_mmse", "plot_acceptance"]

_PHASE_STYLE = {"warmup": dict(color="0.6", lw=0.8), "sample": dict(color="C0", lw=1.0)}


def _transport(data):
    if "transport" not in data.children:
        raise ValueError(
            "No 'transport' group in this DataTree: build it with numpyro_transport.to_arviz(mcmc)"
            " or TransportResult.to_arviz()."
        )
    return data["transport"].dataset


def _sweeps(ds, chain):
    """(phase, per-step dataset) of each sweep of ``chain`` that ran at least one step."""
    phases = np.asarray(ds["phase"])
    for s in range(ds.sizes["sweep"]):
        k = int(ds["num_steps"].isel(chain=chain, sweep=s))
        if k > 0:
            yield str(phases[s]), ds.isel(chain=chain, sweep=s, step=slice(0, k))


def _legend(ax):
    handles = [plt.Line2D([], [], **style, label=phase) for phase, style in _PHASE_STYLE.items()]
    ax.legend(handles=handles, loc="best", fontsize="small")


def plot_schedule(data, chain: int = 0):
    """The λ-grid of every sweep and the ESS/CESS along it.

    Top: λ_k against step k (log scale); a frozen grid repeats the last warm-up sweep's.
    Bottom: ESS/N after each step and the conditional ESS that guards the step size, against
    λ; drops mark where along the path the particles degenerate.

    Args:
        data: the DataTree of [`to_arviz`][numpyro_transport.inference_data.to_arviz], with its
            ``transport`` group.
        chain: the chain whose sweeps are drawn.

    Returns:
        The matplotlib ``Figure``.
    """
    ds = _transport(data)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), constrained_layout=True)
    for phase, sweep in _sweeps(ds, chain):
        style = _PHASE_STYLE.get(phase, {})
        top.plot(np.arange(1, sweep.sizes["step"] + 1), sweep["lam"], marker=".", **style)
        bottom.plot(sweep["lam"], sweep["ess"], **style)
        bottom.plot(sweep["lam"], sweep["cess"], ls=":", **style)
    top.set(yscale="log", xlabel="step k", ylabel="λ_k", title="λ schedule")
    bottom.set(xscale="log", ylim=(0, 1.05), xlabel="λ", ylabel="ESS/N (solid), CESS (dotted)")
    _legend(top)
    return fig


def plot_mmse(data, chain: int = 0):
    """The MMSE curve M̂(λ) = Σ W tr Ĉ of every sweep, with the large-λ law d/λ.

    ½∫M̂ dλ is the information the data carry in whitened units; the I-MMSE step rule spends ε
    nats of it per step. A curve far above d/λ at the end of the path means the last
    conditional is still wide (raise Λ).

    Args:
        data: the DataTree of [`to_arviz`][numpyro_transport.inference_data.to_arviz], with its
            ``transport`` group.
        chain: the chain whose sweeps are drawn.

    Returns:
        The matplotlib ``Figure``.
    """
    ds = _transport(data)
    fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
    lam_max = 0.0
    for phase, sweep in _sweeps(ds, chain):
        ax.plot(sweep["lam"], sweep["mmse"], **_PHASE_STYLE.get(phase, {}))
        lam_max = max(lam_max, float(sweep["lam"].max()))
    dim = ds.attrs.get("dim")
    if dim and lam_max > 0:
        grid = np.geomspace(1.0, lam_max, 50)
        ax.plot(grid, dim / grid, "k--", lw=0.8, label="d/λ")
    ax.set(xscale="log", yscale="log", xlabel="λ", ylabel="M̂(λ) = Σ W tr Ĉ", title="MMSE curve")
    _legend(ax)
    return fig


def plot_acceptance(data):
    """PIMH acceptance probability over iterations, per chain, with its running mean.

    The dashed line is 2Φ(−σ/√2), the acceptance rate expected when log Ẑ is Gaussian with the
    sd σ measured over all proposed sweeps: a chain far below it is stuck on a lucky Ẑ.

    Args:
        data: the DataTree of [`to_arviz`][numpyro_transport.inference_data.to_arviz] of an AST MCMC
            run, with its ``sample_stats`` group.

    Returns:
        The matplotlib ``Figure``.
    """
    if "sample_stats" not in data.children or "acceptance_rate" not in data["sample_stats"]:
        raise ValueError(
            "plot_acceptance needs the PIMH acceptance of an MCMC(AST) run (its sample_stats "
            "group), which a transport() result has no use for: its frozen sweeps are "
            "independent draws, all kept. Plot transport() runs with plot_schedule or plot_mmse."
        )
    stats = data["sample_stats"].dataset
    accept = np.asarray(stats["acceptance_rate"], dtype=float)
    fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
    for c in range(accept.shape[0]):
        running = np.cumsum(accept[c]) / np.arange(1, accept.shape[1] + 1)
        ax.plot(accept[c], color=f"C{c}", alpha=0.25, lw=0.6)
        ax.plot(running, color=f"C{c}", lw=1.5, label=f"chain {c}")
    if "log_evidence" in stats:
        log_z = np.asarray(stats["log_evidence"], dtype=float)
        if "new_sweep" in stats:  # each proposed sweep once
            log_z = log_z[np.asarray(stats["new_sweep"], bool)]
        sigma = float(np.std(log_z))
        ax.axhline(
            2 * norm.cdf(-sigma / np.sqrt(2)),
            color="k",
            ls="--",
            lw=0.8,
            label=f"2Φ(−σ/√2), σ = {sigma:.2f}",
        )
    ax.set(
        ylim=(0, 1.05),
        xlabel="draw",
        ylabel="acceptance probability",
        title="PIMH acceptance (running mean)",
    )
    ax.legend(loc="best", fontsize="small")
    return fig
