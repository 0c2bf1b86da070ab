"""The diagnostic figures (``numpyro_transport.plots``) on the DataTree of a ``transport()`` result
and of an ``MCMC(AST)`` run, and ``Comparison.plot``: each figure is checked against the data it
summarizes (quantiles across sweeps, per-sweep evidence, acceptance), and no two of its texts
overlap."""

import functools
import itertools

import arviz as az
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from shared import Y, make_mcmc

from numpyro_transport import AST, plots, to_arviz, transport
from numpyro_transport.comparison import Comparison, _agreement
from numpyro_transport.targets import two_mode

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the non-interactive backend)

PLOTS = [plots.plot_schedule, plots.plot_mmse, plots.plot_sweeps, plots.plot_acceptance]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def mcmc():
    """Two vectorized chains of the shared model, one draw per sweep (as in test_arviz.py)."""
    run = make_mcmc(2, "vectorized", kernel=functools.partial(AST, draws_per_sweep=1))
    run.run(jax.random.key(0), Y)
    return run


@pytest.fixture(scope="module")
def trees(mcmc):
    """The DataTree of a ``transport()`` run on the 1-D two-mode target (5 warm-up and 4 frozen
    sweeps of several steps) and of the MCMC run."""
    target = two_mode(1)
    result = transport(
        jax.random.key(0),
        logdensity_fn=target.logdensity_fn,
        reference=(jnp.zeros(1), 4 * jnp.eye(1)),
        num_particles=32,
        progress=False,
    )
    return {"transport": result.to_arviz(), "mcmc": to_arviz(mcmc)}


@pytest.fixture(scope="module")
def one_step_tree():
    """``transport()`` on N(0, 1) from the exact reference: every sweep takes a single step."""
    result = transport(
        jax.random.key(0),
        logdensity_fn=lambda u: -0.5 * jnp.sum(u**2),
        reference=(jnp.zeros(1), jnp.eye(1)),
        num_particles=32,
        progress=False,
    )
    tree = result.to_arviz()
    assert np.all(tree["transport"].dataset["num_steps"] == 1)
    return tree


def _drawn_texts(figure):
    """The texts that ``figure`` draws: the titles, axis labels and tick labels (of ticks within
    the view) of its visible axes, and its legends."""
    for ax in (ax for ax in figure.axes if ax.axison):
        yield from (ax.title, ax.xaxis.label, ax.yaxis.label)
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            for minor in (False, True):
                locs, labels = axis.get_ticklocs(minor=minor), axis.get_ticklabels(minor=minor)
                ticks = zip(locs, labels, strict=True)
                yield from (label for loc, label in ticks if low <= loc <= high)
    for legend in figure.legends:
        yield from (legend.get_title(), *legend.get_texts())


def _overlapping_texts(figure) -> list:
    """Pairs of the visible, non-empty texts that ``figure`` draws whose boxes overlap."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    boxes = [
        (text.get_text(), text.get_window_extent(renderer))
        for text in _drawn_texts(figure)
        if text.get_visible() and text.get_text().strip()
    ]
    return [
        (a, b)
        for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2)
        if box_a.overlaps(box_b)
    ]


def _phase_values(tree, name, phase):
    """``(run, step)`` values of ``name`` over the sweeps of ``phase`` in every chain."""
    ds = tree["transport"].dataset
    values = np.asarray(ds[name].isel(sweep=ds["phase"].values == phase))
    return values.reshape(-1, values.shape[-1])


def _quantiles(values):
    """The ``QUANTILES`` per step (column) of ``values`` with at least one finite value."""
    steps = np.isfinite(values).any(axis=0)
    return np.nanquantile(values[:, steps], plots.QUANTILES, axis=0)


@pytest.mark.parametrize("kind", ["transport", "mcmc"])
@pytest.mark.parametrize("plot", PLOTS, ids=lambda plot: plot.__name__)
def test_every_figure_on_both_kinds_of_run(trees, kind, plot, tmp_path):
    pc = plot(trees[kind])
    pc.savefig(tmp_path / "figure.png")
    assert (tmp_path / "figure.png").stat().st_size > 0
    assert not _overlapping_texts(pc.viz["figure"].item())


@pytest.mark.parametrize("kind", ["transport", "mcmc"])
def test_schedule_draws_median_and_band_across_the_sweeps_of_each_phase(trees, kind):
    tree = trees[kind]
    pc = plots.plot_schedule(tree)
    ds = tree["transport"].dataset
    for phase in ("warmup", "sample"):
        low_lam, median_lam, high_lam = _quantiles(_phase_values(tree, "lam", phase))
        for name in ("lam", "ess", "cess"):
            low, median, high = _quantiles(_phase_values(tree, name, phase))
            x = np.arange(1, median.size + 1) if name == "lam" else median_lam
            line = pc.viz["median"][name].sel(phase=phase).item()
            finite = np.isfinite(line.get_ydata())
            np.testing.assert_allclose(line.get_xdata()[finite], x)
            np.testing.assert_allclose(line.get_ydata()[finite], median)
            band = pc.viz["band"][name].sel(phase=phase).item().get_paths()[0].vertices
            for bound in (low, high):  # every (x, quantile) is a vertex of the band
                hits = np.isclose(band[:, None, 0], x) & np.isclose(band[:, None, 1], bound)
                assert hits.any(axis=0).all(), (name, phase)
    phases = ds["phase"].values
    counts = {p: int((ds["num_steps"].isel(sweep=phases == p) > 0).sum()) for p in set(phases)}
    legend = pc.viz["legend"]["phase"].item()
    assert [t.get_text() for t in legend.get_texts()] == [
        f"warmup: {counts['warmup']} sweeps",
        f"sample: {counts['sample']} sweeps",
    ]
    assert legend.get_title().get_text() == "median and 10%–90%"


def test_one_step_sweeps_are_drawn_as_points(one_step_tree):
    """Sweeps of one step (a single λ) show as a marker in every panel, for each phase."""
    pc = plots.plot_schedule(one_step_tree)
    ds = one_step_tree["transport"].dataset
    for name in ("lam", "ess", "cess"):
        for phase in ("warmup", "sample"):
            line = pc.viz["median"][name].sel(phase=phase).item()
            points = np.isfinite(line.get_ydata())
            assert points.sum() == 1 and line.get_marker() == "o" and line.get_markersize() > 0
            lam = ds["lam"].isel(sweep=ds["phase"] == phase, step=0)
            x = 1 if name == "lam" else float(lam.median())
            assert line.get_xdata()[points] == pytest.approx(x)
    mmse = plots.plot_mmse(one_step_tree).viz["median"]["mmse"].sel(phase="sample").item()
    assert np.isfinite(mmse.get_ydata()).sum() == 1 and mmse.get_xdata()[0] == 1  # at λ = 0


@pytest.mark.parametrize("kind", ["transport", "mcmc"])
def test_mmse_curve_against_the_lambda_it_was_measured_at(trees, kind):
    tree = trees[kind]
    ds = tree["transport"].dataset
    pc = plots.plot_mmse(tree)
    for phase in ("warmup", "sample"):
        _, median, _ = _quantiles(_phase_values(tree, "mmse", phase))
        lam_before = _phase_values(tree, "lam", phase) - _phase_values(tree, "delta", phase)
        line = pc.viz["median"]["mmse"].sel(phase=phase).item()
        finite = np.isfinite(line.get_ydata())
        np.testing.assert_allclose(line.get_ydata()[finite], median)
        np.testing.assert_allclose(line.get_xdata()[finite], 1 + _quantiles(lam_before)[1])
    law = pc.viz["law"]["mmse"].item()
    np.testing.assert_allclose(law.get_xdata() * law.get_ydata(), ds.attrs["dim"])


def test_sweeps_of_a_transport_result_each_with_its_evidence_and_means(trees):
    tree = trees["transport"]
    ds = tree["transport"].dataset
    pc = plots.plot_sweeps(tree, var_names="x")
    sweeps = ds["sweep_log_evidence"].isel(chain=0, sweep=ds["phase"] == "sample").values
    points = pc.viz["sweeps"]["log_evidence"].item().get_offsets()
    np.testing.assert_allclose(points, np.c_[np.arange(1, sweeps.size + 1), sweeps])
    combined = pc.viz["combined"]["log_evidence"].item().get_ydata()
    np.testing.assert_allclose(combined, ds.attrs["log_evidence"])
    band = pc.viz["interval"]["log_evidence"].item()
    interval = [band.get_y(), band.get_y() + band.get_height()]
    np.testing.assert_allclose(interval, ds.attrs["log_evidence_interval"])
    # The means of x per frozen sweep: one point per chain of the posterior (= frozen sweep).
    x = tree["posterior"].dataset["x"]
    means = pc.viz["sweeps"]["x"].sel(x_dim_0=0).item().get_offsets()
    np.testing.assert_allclose(means[:, 1], x.isel(x_dim_0=0).mean("draw"), rtol=1e-6)
    assert pc.viz["title_log_evidence"]["log_evidence"].item().get_text().startswith("log Ẑ")
    assert pc.viz["labelled_title"]["x"].sel(x_dim_0=0).item().get_text() == (
        "x[0] (per frozen sweep)"
    )


def test_sweeps_of_an_mcmc_run_per_chain(trees):
    tree = trees["mcmc"]
    ds = tree["transport"].dataset
    pc = plots.plot_sweeps(tree, var_names=["mu"])
    for chain in (0, 1):
        sample = ds["sweep_log_evidence"].isel(chain=chain, sweep=ds["phase"] == "sample")
        points = pc.viz["sweeps"]["log_evidence"].sel(chain=chain).item().get_offsets()
        np.testing.assert_allclose(points[:, 1], sample)
        mean = pc.viz["sweeps"]["mu"].sel(chain=chain).item().get_offsets()
        expected = tree["posterior"].dataset["mu"].isel(chain=chain).mean()
        np.testing.assert_allclose(mean, [[chain, expected]], rtol=1e-6)
    assert pc.viz["legend"]["chain"].item().get_title().get_text() == "chain"


def test_sweeps_names_an_unknown_variable(trees):
    with pytest.raises(ValueError, match=r"var_names=\['z'\]: \['z'\] are not posterior"):
        plots.plot_sweeps(trees["transport"], var_names="z")


def test_acceptance_of_an_mcmc_run(trees):
    stats = trees["mcmc"]["sample_stats"].dataset
    pc = plots.plot_acceptance(trees["mcmc"])
    accept = np.asarray(stats["acceptance_rate"], dtype=float)
    for chain in (0, 1):
        running = pc.viz["running_mean"]["acceptance_rate"].sel(chain=chain).item()
        expected = np.cumsum(accept[chain]) / np.arange(1, accept.shape[1] + 1)
        np.testing.assert_allclose(running.get_ydata(), expected, rtol=1e-6)
    log_z = np.asarray(stats["log_evidence"])[np.asarray(stats["new_sweep"], bool)]
    rate = pc.viz["expected"]["acceptance_rate"].item().get_ydata()
    np.testing.assert_allclose(rate, 2 * norm.cdf(-np.std(log_z) / np.sqrt(2)), rtol=1e-6)


def test_acceptance_of_a_transport_result_says_every_sweep_is_kept(trees):
    """A ``transport()`` result has no PIMH acceptance: the figure says that every frozen sweep
    is kept, and shows each one's ESS/N after its last step."""
    ds = trees["transport"]["transport"].dataset
    pc = plots.plot_acceptance(trees["transport"])
    sample = ds.isel(chain=0, sweep=ds["phase"] == "sample")
    last = [sample["ess"].values[s, k - 1] for s, k in enumerate(sample["num_steps"].values)]
    points = pc.viz["sweeps"]["final_ess"].item().get_offsets()
    np.testing.assert_allclose(points, np.c_[np.arange(1, len(last) + 1), last])
    title = pc.viz["title_final_ess"]["final_ess"].item().get_text()
    assert "every frozen sweep is kept" in title


def test_figures_need_the_transport_group(mcmc):
    """``az.from_numpyro`` has no ``transport`` group: every figure but the MCMC's acceptance
    (from ``sample_stats``) says to build the tree with ``to_arviz``."""
    tree = az.from_numpyro(mcmc)
    for plot in PLOTS[:-1]:
        with pytest.raises(ValueError, match="No 'transport' group.*to_arviz"):
            plot(tree)
    assert "running_mean" in plots.plot_acceptance(tree).viz.children


def test_comparison_marks_the_disagreeing_parameter():
    """Two samplers that agree on ``mu`` and ``theta[0]`` but not on ``theta[1]`` (shifted by one
    sd over 2000 draws): only ``theta[1]``'s title is red and names the sampler; the legend is
    titled "sampler"; no text of the figure overlaps another."""
    rng = np.random.default_rng(0)
    draws = {
        "ast": {"mu": rng.normal(size=(2, 1000)), "theta": rng.normal(size=(2, 1000, 2))},
        "nuts": {"mu": rng.normal(size=(2, 1000)), "theta": rng.normal([0, 1], size=(2, 1000, 2))},
    }
    trees = {name: az.from_dict({"posterior": d}) for name, d in draws.items()}
    agreement = _agreement(trees)
    assert list(agreement.loc[agreement["disagree"], "parameter"]) == ["theta[1]"]
    pc = Comparison(trees, pd.DataFrame(), agreement).plot()
    titles = {
        "mu": pc.viz["title"]["mu"].item(),
        "theta[0]": pc.viz["title"]["theta"].sel(theta_dim_0=0).item(),
        "theta[1]": pc.viz["title"]["theta"].sel(theta_dim_0=1).item(),
    }
    assert titles["theta[1]"].get_text().endswith("≠ nuts")
    assert matplotlib.colors.same_color(titles["theta[1]"].get_color(), "C3")
    for label in ("mu", "theta[0]"):
        assert "≠" not in titles[label].get_text()
    assert pc.viz["legend"]["model"].item().get_title().get_text() == "sampler"
    assert "point_estimate_text" not in pc.viz.children
    assert not _overlapping_texts(pc.viz["figure"].item())
