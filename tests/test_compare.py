"""``compare_samplers()``: the table, the agreement and the figure, on eight schools and on a
two-mode posterior where NUTS gets the mode weights wrong and AST does not; and ``compare``, its
deprecated former name."""

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.diagnostics import effective_sample_size
from numpyro.infer import MCMC
from scipy import stats

import numpyro_transport
from numpyro_transport import AST, compare_samplers, comparison, sizing, to_arviz

matplotlib.use("Agg")

COLUMNS = [
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
Y = jnp.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SIGMA = jnp.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def eight_schools(sigma, y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("school", sigma.shape[0]):
        theta_trans = numpyro.sample("theta_trans", dist.Normal(0.0, 1.0))
        theta = numpyro.deterministic("theta", mu + tau * theta_trans)
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


@pytest.mark.slow
def test_eight_schools_table_and_figure(tmp_path):
    """Seed 0: every sampler gets a row with the documented columns; AST and BlackJAX SMC give
    log Z; NUTS counts divergences and gradients; deterministic sites join the agreement table;
    the figure saves. AST runs with the 32 particles that ``num_particles="auto"`` picks here
    (tested in the slow test below). The default suite checks AST's and NUTS's rows on two
    modes."""
    result = compare_samplers(
        eight_schools,
        jax.random.key(0),
        SIGMA,
        y=Y,
        samplers=("ast", "nuts", "smc"),
        num_warmup=100,
        num_samples=50,
        ast_warmup=2,
        ast_options=dict(num_particles=32, max_inner_blocks=1),
        smc_options=dict(num_mcmc_steps=5),
        progress_bar=False,
    )
    assert list(result.table.columns) == COLUMNS
    assert list(result.table.index) == ["ast", "nuts", "smc"]
    table = result.table
    assert np.isfinite(table.loc[["ast", "smc"], "log_z"].astype(float)).all()
    assert np.isnan(float(table.loc["nuts", "log_z"]))
    assert table.loc["ast", "gradients"] == 0 and table.loc["nuts", "gradients"] > 0
    assert (table["evaluations"] > 0).all() and (table["compile_s"] >= 0).all()
    assert (table["wall_s"] > table["compile_s"]).all()
    assert set(result.agreement["sampler"]) == {"nuts", "smc"}
    assert {"mu", "tau", "theta[0]", "theta_trans[7]"} <= set(result.agreement["parameter"])
    assert "transport" in result.trees["ast"].children
    result.plot(var_names=["mu", "tau"]).savefig(tmp_path / "compare.png")
    assert (tmp_path / "compare.png").stat().st_size > 0


@pytest.mark.slow
def test_auto_particles_pilot_predicts_the_sweep_spread():
    """Seed 0, eight schools, ``num_particles="auto"`` (it picks 32 here) as compare_samplers()
    runs AST: the spread of log Ẑ over the sampling sweeps agrees with the pilot's prediction (a
    two-sided F-test at the 99 % level)."""
    mcmc = MCMC(
        AST(eight_schools, max_inner_blocks=1, draws_per_sweep=1),  # a sweep per draw
        num_warmup=2,
        num_samples=50,
        num_chains=2,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(0), SIGMA, y=Y)
    _assert_pilot_prediction(to_arviz(mcmc))


def _assert_pilot_prediction(tree):
    """The pilot predicts sd(log Ẑ) = σ̂₀·√(N₀/N) at the chosen N; the sampling sweeps' log Ẑ*
    (accepted or not) measure it. At N = N₀ the two sample variances estimate one variance (their
    ratio is F-distributed); above N₀ the prediction is conservative (the bigger population
    also fits a better reference), so only the upper bound applies."""
    attrs = tree["transport"].attrs
    n, n0 = attrs["num_particles"], attrs["pilot_particles"]
    assert n >= n0 and attrs["pilot_evaluations"] > 0
    predicted = attrs["pilot_log_evidence_sd"] * np.sqrt(n0 / n)
    stats_ = tree["sample_stats"]
    log_z = stats_["log_evidence"].values[stats_["new_sweep"].values.astype(bool)]
    ratio = np.var(log_z, ddof=1) / predicted**2
    dof = (log_z.size - 1, sizing.PILOT_SWEEPS - 1)
    assert ratio < stats.f.ppf(0.995, *dof), (ratio, n)  # 1.58 at this seed (N = 32)
    if n == n0:
        assert ratio > stats.f.ppf(0.005, *dof), ratio


def two_modes():
    mixing = dist.Categorical(probs=jnp.array([0.3, 0.7]))
    numpyro.sample("x", dist.MixtureSameFamily(mixing, dist.Normal(jnp.array([-4.0, 4.0]), 0.5)))


def _right_mode_draws(tree):
    """``(chains, draws)`` indicators of the right mode (x > 0)."""
    return np.asarray(tree["posterior"].dataset["x"] > 0, dtype=np.float64)


def test_two_modes_nuts_weight_error_shows_against_ast(tmp_path):
    """Seed 3, 2 chains each. The weight of the right mode (0.7): AST within 4 Monte Carlo
    standard errors (ESS of the indicator draws), and its log Z (= 0) within 4 se; NUTS, whose
    chains cannot cross the gap, off by more than 0.15 and by more than 4 se; the agreement
    table flags x. The table has the documented columns (AST gives log Z, NUTS gradients), and
    the figure saves; BlackJAX SMC's row is checked by the slow eight-schools test."""
    result = compare_samplers(
        two_modes,
        jax.random.key(3),
        num_warmup=200,
        num_samples=200,
        ast_warmup=3,
        ast_options=dict(num_particles=64),
        progress_bar=False,
    )
    table = result.table
    assert list(table.columns) == COLUMNS and list(table.index) == ["ast", "nuts"]
    assert np.isfinite(float(table.loc["ast", "log_z"]))
    assert np.isnan(float(table.loc["nuts", "log_z"]))
    assert table.loc["ast", "gradients"] == 0 and table.loc["nuts", "gradients"] > 0
    assert (table["evaluations"] > 0).all() and (table["wall_s"] > table["compile_s"]).all()
    assert set(result.agreement["sampler"]) == {"nuts"}
    result.plot(var_names=["x"]).savefig(tmp_path / "compare.png")
    assert (tmp_path / "compare.png").stat().st_size > 0
    right = _right_mode_draws(result.trees["ast"])
    weight = right.mean()
    se = np.sqrt(weight * (1 - weight) / float(effective_sample_size(right)))
    assert abs(weight - 0.7) < 4 * se, (weight, se)
    nuts_error = abs(_right_mode_draws(result.trees["nuts"]).mean() - 0.7)
    assert nuts_error > max(0.15, 4 * se), nuts_error
    agreement = result.agreement.set_index(["sampler", "parameter"])
    row = agreement.loc[("nuts", "x")]
    assert bool(row["disagree"]), row
    log_z, log_z_se = (float(result.table.loc["ast", c]) for c in ("log_z", "log_z_se"))
    assert abs(log_z) < 4 * log_z_se + 0.01, (log_z, log_z_se)


def test_unknown_sampler_is_rejected():
    with pytest.raises(ValueError, match="choose among"):
        compare_samplers(two_modes, jax.random.key(0), samplers=("hmc",))


def test_deprecated_compare_alias_warns_and_forwards(monkeypatch):
    """``numpyro_transport.compare``, the former name, warns that it is deprecated (naming
    ``compare_samplers``) and forwards every argument to ``compare_samplers``."""
    sentinel = object()
    calls = []

    def stub(*args, **kwargs):
        calls.append((args, kwargs))
        return sentinel

    monkeypatch.setattr(comparison, "compare_samplers", stub)
    assert numpyro_transport.compare is comparison.compare
    with pytest.warns(DeprecationWarning, match="compare_samplers"):
        assert comparison.compare(two_modes, "key", samplers=("ast", "nuts")) is sentinel
    assert calls == [((two_modes, "key"), {"samplers": ("ast", "nuts")})]
