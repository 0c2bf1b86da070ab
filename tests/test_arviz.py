"""ArviZ round trip of an AST run (warnings are errors, as everywhere in this suite): groups,
sample_stats names, the ``transport`` group and netCDF (the figures: test_plots.py)."""

import functools
import subprocess
import sys

import arviz as az
import jax
import numpy as np
import pytest
import xarray as xr
from scipy import stats
from shared import (
    HALF_NORMAL_OPTIONS,
    NUM_SAMPLES,
    OPTIONS,
    Y,
    assert_pinned,
    half_normal,
    make_mcmc,
    model,
)

from numpyro_transport import (
    AST,
    driver,
    log_evidence,
    log_evidence_interval,
    sizing,
    to_arviz,
    transport,
)
from numpyro_transport.model import model_run


@pytest.fixture(scope="module")
def mcmc():
    """Two vectorized chains of the shared model, seed 0, one draw per sweep."""
    run = make_mcmc(2, "vectorized", kernel=functools.partial(AST, draws_per_sweep=1))
    run.run(jax.random.key(0), Y)
    return run


def test_same_key_same_draws_as_before_the_driver(mcmc):
    assert_pinned(mcmc, "vectorized", 2)


def test_log_evidence_warns_when_the_run_contradicts_the_pilot(mcmc, monkeypatch):
    """A pilot that had predicted a spread of log Ẑ far below the run's: log_evidence (and so
    to_arviz) warns with the N to use. The run itself (N = 32 given) raises no such warning."""
    log_evidence(mcmc)  # no warning: filterwarnings = error
    fake = sizing.Sizing(32, 0.01, 32, 0.01, 0)
    monkeypatch.setattr(mcmc.sampler, "sizing", fake)
    with pytest.warns(RuntimeWarning, match=r"beyond the 0.01 that the num_particles='auto'"):
        log_evidence(mcmc)


def test_from_numpyro_carries_our_sample_stats(mcmc):
    tree = az.from_numpyro(mcmc)
    assert {"posterior", "sample_stats", "observed_data"} <= set(tree.children)
    stats = tree["sample_stats"].dataset
    expected = {"acceptance_rate", "lp", "log_evidence", "sweep_ess", "num_sweep_steps"}
    assert expected | {"num_evaluations"} <= set(stats.data_vars)
    assert dict(stats["acceptance_rate"].sizes) == {"chain": 2, "draw": NUM_SAMPLES}
    assert np.all((stats["acceptance_rate"] >= 0) & (stats["acceptance_rate"] <= 1))


def test_transport_group_and_netcdf_round_trip(mcmc, tmp_path):
    tree = to_arviz(mcmc, log_likelihood=True)
    assert "log_likelihood" in tree.children
    ds = tree["transport"].dataset
    assert set(ds["lam"].dims) == {"chain", "sweep", "step"}
    # 2 warm-up sweeps and every proposed sampling sweep (fewer than the 8 the ring buffer
    # keeps), the same number in each chain (a proposal every draws_per_sweep iterations).
    proposed = np.asarray(mcmc.get_extra_fields(group_by_chain=True)["new_sweep"]).sum(1)
    assert proposed[0] == proposed[1] >= 1
    num_sweeps = 2 + int(proposed[0])
    assert ds.sizes["chain"] == 2 and ds.sizes["sweep"] == num_sweeps
    assert list(ds["phase"].values) == ["warmup"] * 2 + ["sample"] * (num_sweeps - 2)
    assert set(ds["sweep_log_evidence"].dims) == {"chain", "sweep"}
    log_z, se = log_evidence(mcmc)
    assert ds.attrs["log_evidence"] == log_z and ds.attrs["log_evidence_se"] == se
    low, high = log_evidence_interval(mcmc)
    assert list(ds.attrs["log_evidence_interval"]) == [low, high]
    fields = mcmc.get_extra_fields()
    num_proposed = int(np.sum(fields["new_sweep"]))  # Student-t, R − 1 degrees of freedom
    assert (high - low) / 2 == pytest.approx(stats.t.ppf(0.975, num_proposed - 1) * se)
    # Steps within each sweep's K are finite, padding past it is NaN.
    k = ds["num_steps"].values
    lam = ds["lam"].values
    for c in range(2):
        for s in range(num_sweeps):
            assert np.all(np.isfinite(lam[c, s, : k[c, s]])) and np.all(
                np.isnan(lam[c, s, k[c, s] :])
            )

    path = tmp_path / "ast.nc"
    tree.to_netcdf(path)
    back = xr.open_datatree(path)
    assert set(back.children) == set(tree.children)
    xr.testing.assert_allclose(back["transport"].dataset, ds)
    xr.testing.assert_allclose(back["posterior"].dataset, tree["posterior"].dataset)


def test_transport_result_of_a_model_to_arviz():
    """``transport()`` on a NumPyro model: constrained draws, and a DataTree whose chains are the
    frozen sweeps, with the log-likelihood and the transport group. Seed 1 with three warm-up
    sweeps gives the draws and log Ẑ of the engine before the one-driver refactor (see
    test_api.py's ``test_same_key_same_draws_as_before_the_driver``)."""
    run = functools.partial(
        transport, model=model, model_args=(Y,), num_warmup=3, num_sweeps=2, progress=False
    )
    result = run(jax.random.key(1), **OPTIONS)
    assert result.log_evidence == pytest.approx(-7.119268930218327, abs=1e-4)
    expected = [0.8898565173149109, 0.86805659532547, 1.013067603111267, 1.6928737163543701]
    np.testing.assert_allclose(result.samples["mu"][:4], expected, rtol=1e-4)
    assert set(result.samples) == {"mu", "sigma", "snr"} and result.samples["mu"].shape == (64,)
    assert np.all(result.samples["sigma"] > 0)
    tree = result.to_arviz(log_likelihood=True)
    assert dict(tree["posterior"].dataset["mu"].sizes) == {"chain": 2, "draw": 32}
    assert dict(tree["log_likelihood"].dataset["y"].sizes) == {"chain": 2, "draw": 32, "obs": 5}
    ds = tree["transport"].dataset
    assert list(ds["phase"].values).count("sample") == 2
    assert ds.attrs["log_evidence"] == result.log_evidence
    assert list(ds.attrs["log_evidence_interval"]) == list(result.log_evidence_interval)
    # The same model and data again: the same set-up, and no new compilation of the sweeps.
    compiled = driver._step._cache_size()
    again = run(jax.random.key(2), **OPTIONS)
    assert again.model is result.model and driver._step._cache_size() == compiled
    assert again.log_evidence != result.log_evidence  # another key
    data = np.array(Y)  # NumPy data count by content: changed in place, another set-up
    bound = model_run(model, (data,))
    assert model_run(model, (data.copy(),)) is bound
    data[0] += 1.0
    assert model_run(model, (data,)) is not bound


def test_transport_result_of_a_log_density_to_arviz():
    result = transport(jax.random.key(2), logdensity_fn=half_normal, **HALF_NORMAL_OPTIONS)
    tree = result.to_arviz()
    assert dict(tree["posterior"].dataset["x"].sizes) == {"chain": 4, "draw": 256, "x_dim_0": 1}
    assert {"chain", "sweep", "step"} <= set(tree["transport"].dataset.dims)


def test_importing_the_package_first_keeps_from_numpyro_working():
    """arviz-base imports numpyro lazily, and a numpyro loaded that way lacks its submodule
    attributes (``numpyro.infer.initialization``, which from_numpyro reads). Importing our
    package first, as a user does, must load numpyro eagerly."""
    code = (
        "import numpyro_transport, arviz, numpyro.infer\n"
        "assert hasattr(numpyro.infer, 'initialization')"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
