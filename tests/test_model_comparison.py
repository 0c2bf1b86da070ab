"""compare_models: Bayes factors of NumPyro models, checked against exact evidences."""

import jax
import matplotlib
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from numpyro_transport.model_comparison import compare_models
from numpyro_transport.targets import EIGHT_SCHOOLS, eight_schools_models

matplotlib.use("Agg")

COLUMNS = [
    "log_z",
    "log_z_se",
    "log_z_low",
    "log_z_high",
    "log_bf",
    "log_bf_se",
    "prior",
    "probability",
    "probability_low",
    "probability_high",
    "evaluations",
    "wall_s",
]


def _normal(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def _flat(y):
    mu = numpyro.sample("mu", dist.ImproperUniform(dist.constraints.real, (), ()))
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


@pytest.mark.parametrize(
    ("models", "kwargs", "message"),
    [
        ({"only": _normal}, {}, "at least two models"),
        ({"a": _normal, "b": _flat}, {}, r"Model 'b' has improper priors on \['mu'\]"),
        ({"a": _normal, "b": _normal}, {"model_prior": {"a": 1.0}}, "each model and no other"),
        (
            {"a": _normal, "b": _normal},
            {"model_prior": {"a": 1.0, "b": 0.0}},
            "finite and positive",
        ),
        ({"a": _normal, "b": _normal}, {"level": 95}, r"level=95 must be"),
    ],
)
def test_bad_input_is_refused_before_any_run(models, kwargs, message):
    with pytest.raises(ValueError, match=message):
        compare_models(models, jax.random.key(0), 0.5, **kwargs)


@pytest.mark.slow
def test_eight_schools_trio_against_exact_evidence(tmp_path):
    """Seed 0, `transport()` defaults: each model's 95 % interval covers its exact log Z (by
    quadrature for the hierarchical model), the Bayes factors and probabilities are consistent
    with the table's log Ẑ, and the figure renders."""
    trio = eight_schools_models()
    comparison = compare_models(
        {name: model for name, (model, _) in trio.items()},
        jax.random.key(0),
        *EIGHT_SCHOOLS,
        model_prior={"pooled": 1.0, "hierarchical": 2.0, "unpooled": 1.0},
        transport_options={"progress": False},
    )
    table = comparison.table
    assert list(table.columns) == COLUMNS
    assert list(table["log_z"]) == sorted(table["log_z"], reverse=True)
    for name, (_, exact) in trio.items():
        row = table.loc[name]
        assert row["log_z_low"] < exact < row["log_z_high"], (name, exact, row)
    best = table.index[0]
    np.testing.assert_allclose(table["log_bf"], table["log_z"] - table.loc[best, "log_z"])
    se = np.hypot(table["log_z_se"], table.loc[best, "log_z_se"])
    np.testing.assert_allclose(table["log_bf_se"], np.where(table.index == best, 0.0, se))
    np.testing.assert_allclose(table["prior"].sum(), 1.0)
    assert table.loc["hierarchical", "prior"] == pytest.approx(0.5)
    weights = table["prior"] * np.exp(table["log_z"] - table["log_z"].max())
    np.testing.assert_allclose(table["probability"], weights / weights.sum())
    assert (table["probability_low"] < table["probability"]).all()
    assert (table["probability"] < table["probability_high"]).all()
    fig = comparison.plot(reference={name: log_z for name, (_, log_z) in trio.items()})
    fig.savefig(tmp_path / "trio.png")
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == list(table.index[::-1])
