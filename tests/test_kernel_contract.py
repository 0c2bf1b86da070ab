"""The AST kernel honours NumPyro's MCMCKernel contract (after numpyro's test_mcmc.py::test_chain
and friends): every chain method, warm-up then run, resume, extra fields, progress bar,
pickling, no recompilation; and bad input gets a clear error."""

import functools
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.diagnostics import effective_sample_size
from numpyro.infer import MCMC
from numpyro.infer.util import constrain_fn
from scipy import stats
from shared import (
    DRAWS_PER_SWEEP,
    OPTIONS,
    Y_OBS,
    Y,
    assert_pinned,
    assert_potential_energy,
    make_mcmc,
    mixture_and_conjugate,
    model,
)

import numpyro_transport.kernel as kernel_module
from numpyro_transport import AST, log_evidence, transport
from numpyro_transport.model import setup_model

FIELDS = ("accept_prob", "log_evidence", "sweep_ess", "num_sweep_steps", "num_evaluations")


class CountingAST(AST):
    """Counts traces of ``sample`` (it runs in Python only while being traced)."""

    traces = 0

    def sample(self, state, model_args, model_kwargs):
        CountingAST.traces += 1
        return super().sample(state, model_args, model_kwargs)


@pytest.mark.parametrize("chain_method", ["sequential", "parallel", "vectorized"])
def test_chain_methods(chain_method):
    """Every chain method, 2 chains × 400 draws, 8 draws per sweep, seed 0, on the closed-form
    ``mixture_and_conjugate`` (see shared.py): shapes, fields and the potential energy are
    NumPyro's; every 8th iteration proposes a sweep; and the draws are exact. The mixture's
    weight of x > 0 is within 4 Monte Carlo standard errors of 0.7 (se from the draws' ESS), mu
    passes a Kolmogorov–Smirnov test against N(1/2, 1/2) at its ESS (D·√ESS < 1.95, p ≈ 0.001),
    and log Ẑ over the proposed sweeps is within 4 se of the exact log N(1; 0, 2)."""
    mcmc = MCMC(
        AST(mixture_and_conjugate, draws_per_sweep=DRAWS_PER_SWEEP, **OPTIONS),
        num_warmup=3,
        num_samples=400,
        num_chains=2,
        chain_method=chain_method,
        progress_bar=False,
    )
    mcmc.run(jax.random.key(0))
    grouped = mcmc.get_samples(group_by_chain=True)
    assert set(grouped) == {"x", "mu", "twice_mu"}
    assert all(v.shape == (2, 400) for v in grouped.values())
    assert mcmc.get_samples()["mu"].shape == (800,)
    np.testing.assert_allclose(grouped["twice_mu"], 2 * grouped["mu"], rtol=1e-5)
    extra = mcmc.get_extra_fields(group_by_chain=True)
    assert set(FIELDS) | {"potential_energy", "new_sweep"} <= set(extra)
    assert all(np.shape(extra[f]) == (2, 400) for f in FIELDS)
    assert np.all(np.isfinite(np.asarray(extra["log_evidence"])))
    new = np.asarray(extra["new_sweep"])
    assert np.all(new[:, ::DRAWS_PER_SWEEP]) and new.sum() == 2 * 400 // DRAWS_PER_SWEEP
    assert np.all(np.asarray(extra["num_evaluations"])[~new] == 0)
    # Independent chains: different keys, different draws.
    assert not np.allclose(grouped["mu"][0], grouped["mu"][1])
    assert_potential_energy(mcmc.last_state, batched=True, model=mixture_and_conjugate, args=())

    right = (np.asarray(grouped["x"]) > 0).astype(float)
    ess = float(effective_sample_size(right))
    se = np.sqrt(0.7 * 0.3 / ess)
    assert abs(right.mean() - 0.7) < 4 * se, (right.mean(), se, ess)
    mu = np.asarray(grouped["mu"])
    ks = stats.kstest(mu.reshape(-1), stats.norm(0.5, np.sqrt(0.5)).cdf).statistic
    assert ks * np.sqrt(float(effective_sample_size(mu))) < 1.95, ks
    log_z, se_z = log_evidence(mcmc)
    exact = float(dist.Normal(0.0, np.sqrt(2.0)).log_prob(Y_OBS))
    assert abs(log_z - exact) < 4 * se_z + 0.01, (log_z, se_z, exact)


def test_warmup_then_run_resume_pickle_and_no_recompilation(monkeypatch):
    from numpyro_transport import kernel as kernel_module

    setups = []
    setup = kernel_module.setup_model
    monkeypatch.setattr(
        kernel_module, "setup_model", lambda *a, **k: setups.append(1) or setup(*a, **k)
    )
    mcmc = make_mcmc(kernel=CountingAST)
    mcmc.warmup(jax.random.key(1), Y, collect_warmup=True, extra_fields=("i",))
    assert mcmc.get_extra_fields()["i"].tolist() == [1, 2]
    assert int(mcmc.post_warmup_state.i) == 2  # i counts finished iterations
    # The last warm-up sweep runs at β = 1 (β < 1: test_kernels.py's sweep test).
    assert_potential_energy(mcmc.post_warmup_state)
    mcmc.run(jax.random.key(2), Y, extra_fields=("i",))
    assert len(setups) == 1  # run() after warmup() does not redo the set-up
    assert mcmc.get_extra_fields()["i"].tolist() == list(range(3, 9))
    traces = CountingAST.traces

    mcmc.post_warmup_state = mcmc.last_state
    mcmc.run(mcmc.post_warmup_state.rng_key, Y, extra_fields=("i",))
    assert mcmc.get_extra_fields()["i"].tolist() == list(range(9, 15))
    assert CountingAST.traces == traces  # same shapes: no new trace, no recompilation

    restored = pickle.loads(pickle.dumps(mcmc))
    np.testing.assert_array_equal(restored.get_samples()["mu"], mcmc.get_samples()["mu"])
    restored.post_warmup_state = restored.last_state
    restored.run(jax.random.key(3), Y, extra_fields=("i",))  # the program above, rebuilt
    assert restored.get_extra_fields()["i"].tolist() == list(range(15, 21))


def test_jit_model_args_new_data_without_retracing_and_print_summary(capsys):
    """With ``jit_model_args=True`` the data are traced arguments: a second run on shifted data
    reuses the traced sampler and its posterior moves with the data (seed 5)."""
    mcmc = make_mcmc(kernel=CountingAST, jit_model_args=True)
    mcmc.run(jax.random.key(5), Y)
    before, traces = float(mcmc.get_samples()["mu"].mean()), CountingAST.traces
    mcmc.run(jax.random.key(5), Y + 3.0)
    assert CountingAST.traces == traces
    assert float(mcmc.get_samples()["mu"].mean()) > before + 1.0
    mcmc.print_summary()
    printed = capsys.readouterr().out
    assert "mu" in printed and "sigma" in printed and "r_hat" in printed


class _Stop(Exception):
    pass


@pytest.mark.parametrize("shown", [True, False])
def test_init_shows_progress_before_anything_compiles(shown, monkeypatch, capfd):
    """``AST.init`` prints its first line of progress before any XLA compilation (the model's
    set-up, which compiles, comes after it; it is stopped there), and nothing with
    ``progress_bar=False``."""
    compiled = []

    def listen(event, duration, **_):
        if event == "/jax/core/compile/backend_compile_duration":
            compiled.append(duration)

    def stop(*args, **kwargs):
        raise _Stop(len(compiled))

    monkeypatch.setattr(kernel_module, "setup_model", stop)
    key, kernel = jax.random.key(0), AST(model, progress_bar=shown)
    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        with pytest.raises(_Stop) as stopped:
            kernel.init(key, 3, model_args=(Y,))
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert stopped.value.args == (0,)  # nothing compiled before the set-up started
    err = capfd.readouterr().err
    assert ("AST: setting up the model and its first reference" in err) == shown
    if not shown:
        assert "AST:" not in err


def test_same_key_same_draws_with_and_without_progress_bar(monkeypatch):
    """Seed 0, one draw per sweep: the same draws with the bar on, after a retrace, and as
    before the one-driver refactor (``PINNED``); then interrupted runs (below)."""
    plain = functools.partial(AST, draws_per_sweep=1)
    quiet = make_mcmc(kernel=plain)
    quiet.run(jax.random.key(0), Y)
    assert_pinned(quiet, "sequential", 1)
    # NumPyro turns the bar off under CI or pytest-xdist; this test needs it on.
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    shown = make_mcmc(kernel=functools.partial(CountingAST, draws_per_sweep=1), progress_bar=True)
    assert shown.progress_bar
    traces = CountingAST.traces
    shown.run(jax.random.key(0), Y)
    # The bar runs NumPyro's jitted step in a Python loop: the state that init() returns must
    # have the avals that sample() returns (a weakly typed field retraced, and recompiled, once).
    assert CountingAST.traces == traces + 1
    again = make_mcmc(kernel=plain)
    again.run(jax.random.key(0), Y)
    for other in (shown, again):
        np.testing.assert_array_equal(quiet.get_samples()["mu"], other.get_samples()["mu"])
    assert "acc. prob" in quiet.sampler.get_diagnostics_str(quiet.last_state)
    _interrupt_then_rerun_and_resume(shown, quiet.get_samples()["mu"], monkeypatch)


def _interrupt_then_rerun_and_resume(mcmc, expected, monkeypatch):
    """A KeyboardInterrupt in the middle of a run (raised by the bar's third update) leaves
    ``mcmc`` usable: the same run again gives the draws of an uninterrupted one, and so does a
    resume from ``post_warmup_state`` interrupted in the same way."""
    kernel = type(mcmc.sampler)
    shown = kernel.get_diagnostics_str

    def interrupting(after):
        calls = []

        def diagnostics(self, state):
            calls.append(1)
            if len(calls) == after:
                raise KeyboardInterrupt
            return shown(self, state)

        return diagnostics

    monkeypatch.setattr(kernel, "get_diagnostics_str", interrupting(3))
    with pytest.raises(KeyboardInterrupt):
        mcmc.run(jax.random.key(0), Y)
    monkeypatch.setattr(kernel, "get_diagnostics_str", shown)
    mcmc.run(jax.random.key(0), Y)
    np.testing.assert_array_equal(mcmc.get_samples()["mu"], expected)

    mcmc.warmup(jax.random.key(1), Y)
    warm = mcmc.post_warmup_state
    mcmc.run(warm.rng_key, Y)
    resumed = mcmc.get_samples()["mu"]
    monkeypatch.setattr(kernel, "get_diagnostics_str", interrupting(4))
    mcmc.post_warmup_state = warm
    with pytest.raises(KeyboardInterrupt):
        mcmc.run(warm.rng_key, Y)
    monkeypatch.setattr(kernel, "get_diagnostics_str", shown)
    mcmc.post_warmup_state = warm
    mcmc.run(warm.rng_key, Y)
    np.testing.assert_array_equal(mcmc.get_samples()["mu"], resumed)


def _discrete():
    k = numpyro.sample("k", dist.Bernoulli(0.3))
    numpyro.sample("x", dist.Normal(k, 1.0), obs=0.5)


def _subsampled():
    mu = numpyro.sample("mu", dist.Normal())
    with numpyro.plate("data", 100, subsample_size=10):
        numpyro.sample("x", dist.Normal(mu, 1.0), obs=jnp.zeros(10))


def _no_latent():
    numpyro.sample("x", dist.Normal(0.0, 1.0), obs=0.5)


def _nan_likelihood():
    mu = numpyro.sample("mu", dist.Normal())
    numpyro.factor("x", jnp.nan * mu)


@pytest.mark.parametrize(
    "bad_model, match",
    [
        (_discrete, "Latent site 'k' is discrete .*enumerate"),
        (_subsampled, "Plate 'data' subsamples 10 of 100 .*remove `subsample_size`"),
        (_no_latent, "no continuous latent sample site"),
        (_nan_likelihood, "NaN or infinite at all 512 prior draws"),
    ],
)
def test_bad_model_raises(bad_model, match):
    mcmc = MCMC(AST(bad_model, **OPTIONS), num_warmup=1, num_samples=1, progress_bar=False)
    with pytest.raises(ValueError, match=match):
        mcmc.run(jax.random.key(0))


def test_potential_non_finite_at_every_initial_particle_raises():
    kernel = AST(potential_fn=lambda z: jnp.nan * jnp.sum(z["x"]), **OPTIONS)
    mcmc = MCMC(kernel, num_warmup=1, num_samples=1, progress_bar=False)
    with pytest.raises(ValueError, match="NaN or infinite at all 512 initial particles"):
        mcmc.run(jax.random.key(0), init_params={"x": jnp.zeros(2)})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_particles=1), "num_particles=1 must be at least 2"),
        (dict(num_inner=3), "num_inner=3 must be even .* pass num_inner=4"),
        (dict(epsilon=0.0), "epsilon=0.0 must be positive"),
        (dict(max_lambda=-1.0), "max_lambda=-1.0 must be positive"),
        (dict(tempering_ess=1.5), r"tempering_ess=1.5 must be in \(0, 1\)"),
        (dict(potential_fn=lambda z: z), "Only one of `model` or `potential_fn`"),
    ],
)
def test_invalid_options_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AST(model, **kwargs)


def test_no_warmup_raises():
    mcmc = MCMC(AST(model, **OPTIONS), num_warmup=0, num_samples=1, progress_bar=False)
    with pytest.raises(ValueError, match="at least 1 warm-up iteration"):
        mcmc.run(jax.random.key(0), Y)


def improper(y):
    mu = numpyro.sample("mu", dist.ImproperUniform(dist.constraints.real, (), ()))
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


@pytest.mark.slow
def test_improper_prior_warns_and_samples():
    mcmc = MCMC(AST(improper, **OPTIONS), num_warmup=2, num_samples=20, progress_bar=False)
    with pytest.warns(UserWarning, match=r"improper priors: the evidence Z is undefined"):
        mcmc.run(jax.random.key(0), Y)
    mu = np.asarray(mcmc.get_samples()["mu"])  # posterior N(mean(y), 1/5)
    assert np.all(np.isfinite(mu)) and abs(mu.mean() - float(Y.mean())) < 4 * 0.45


def test_transport_takes_a_model_with_an_improper_prior():
    """``transport(model=...)`` takes a model whose flat site cannot be sampled (it used to raise
    NotImplementedError); posterior N(mean(y), 1/5), seed 0, within 4 sds."""
    with pytest.warns(UserWarning, match=r"improper priors"):
        result = transport(
            jax.random.key(0), model=improper, model_args=(Y,), progress=False, **OPTIONS
        )
    mu = result.samples["mu"]
    assert np.all(np.isfinite(mu)) and abs(mu.mean() - float(Y.mean())) < 4 * 0.45


def test_one_iteration_traces_in_64_bit():
    """Under ``jax_enable_x64`` one iteration keeps every field's dtype (a loop carry that
    turns int32 into int64 is a trace-time error of NumPyro's loop); traced, not compiled."""
    with jax.enable_x64(True):
        kernel = AST(model, num_particles=8, max_inner_blocks=1, progress_bar=False)
        state = kernel.init(jax.random.key(0), 2, model_args=(Y,))
        after = jax.eval_shape(kernel.sample, state, (Y,), {})
    dtypes = lambda s: [(a.shape, a.dtype) for a in jax.tree.leaves(s)]  # noqa: E731
    assert dtypes(after) == dtypes(state)


@pytest.mark.slow
def test_runs_in_64_bit():
    """Under ``jax_enable_x64`` the state keeps its dtypes through NumPyro's sampling loop, and
    the draws come out in float64."""
    with jax.enable_x64(True):
        mcmc = MCMC(
            AST(model, num_particles=8, max_inner_blocks=1),
            num_warmup=1,
            num_samples=5,
            progress_bar=False,
        )
        mcmc.run(jax.random.key(0), Y)
        draws = mcmc.get_samples()
    assert all(v.dtype == jnp.float64 for v in draws.values())
    assert all(np.isfinite(v).all() for v in draws.values())


def test_prior_that_needs_an_optional_package_gets_the_broad_reference():
    """A half Student-t (a truncated Student-t) cannot be sampled without
    tensorflow_probability (its icdf raises ImportError); its coordinate gets the broad
    N(0, 10²) reference of improper sites instead of an error, the others keep prior moments."""

    def half_t_model(y):
        half_t = dist.TruncatedDistribution(dist.StudentT(3.0, 0.0, 10.0), low=0.0)
        sigma = numpyro.sample("sigma", half_t)
        mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
        numpyro.sample("y", dist.Normal(mu, sigma), obs=y)

    setup = setup_model(half_t_model, (Y,))
    cov = setup.reference.scale_tril @ setup.reference.scale_tril.T
    # ravel order is sorted by site name: mu, then sigma
    np.testing.assert_allclose(cov[1, 1], 100.0, rtol=1e-3)
    assert float(setup.reference.mean[1]) == 0.0
    assert abs(float(cov[0, 0]) - 25.0) < 25.0 * 0.25  # prior moments of mu from 512 draws
    assert setup.improper == ()


def dependent_bound(y):
    a = numpyro.sample("a", dist.Uniform(0.0, 1.0))
    b = numpyro.sample("b", dist.ImproperUniform(dist.constraints.interval(0.0, 1.0 - a), (), ()))
    numpyro.sample("y", dist.Normal(a + b, 0.1), obs=y)


def test_bound_that_depends_on_another_site_is_applied_per_draw():
    """b ∈ (0, 1 − a) with a flat prior (posteriordb's garch): each draw's b uses its own a.
    NumPyro's postprocess_fn misses the dependency behind ImproperUniform's ``independent``
    wrapper and used the bound of the prototype trace (garch's beta1 came out 2.2 sds off)."""
    with pytest.warns(UserWarning, match="improper priors"):
        setup = setup_model(dependent_bound, (0.9,), {})
    postprocess = setup.postprocess_fn_gen(0.9)
    for a_u in (-2.0, 0.0, 2.0):
        z = {"a": jnp.asarray(a_u), "b": jnp.asarray(0.0)}  # b = (1 − a)/2
        expected = constrain_fn(dependent_bound, (0.9,), {}, z)
        got = postprocess(z)
        assert np.isclose(got["b"], (1 - got["a"]) / 2) and np.isclose(got["b"], expected["b"])
