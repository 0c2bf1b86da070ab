"""BlackJAX nested slice sampling as a baseline (``baselines.blackjax_nss``): its evaluation count
against a count kept on the host, and its row in ``compare_samplers`` against an exact log Z (in
the default suite); log Ẑ and the draws on a Gaussian and on a target non-finite on most of the
reference (slow: 25 s each, mostly compiling and BlackJAX's eager post-processing)."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from scipy import stats

from numpyro_transport import compare_samplers, targets
from numpyro_transport.baselines import blackjax_nss

RUNS, LIVE = 4, 100


def _check_log_z(out, exact):
    """Each run within 4 of its own standard errors of ``exact``, their mean within
    4 sd/√R."""
    log_z, se = out["log_z"], out["log_z_se"]
    assert out["converged"].all() and np.all(se > 0)
    assert np.all(np.abs(log_z - exact) < 4 * se), (log_z - exact, se)
    assert abs(log_z.mean() - exact) < 4 * log_z.std(ddof=1) / np.sqrt(RUNS), log_z - exact


@pytest.mark.slow
def test_gaussian_log_z_and_mean():
    """A 3-d correlated Gaussian with log Z = 1.3, from N(0, I): 4 vectorized runs of 100 live
    points (key 0). Each log Ẑ is within 4 of its reported standard errors of 1.3, their mean
    within 4 sd/√4, and the mean of the 4 × 1000 draws within 4 standard errors of the exact
    mean, taking one effective draw per live point and run (4 × 100), which is conservative."""
    cov = jnp.array([[0.3, 0.1, 0.0], [0.1, 0.5, -0.1], [0.0, -0.1, 0.2]])
    target = targets.gaussian(jnp.array([0.5, -1.0, 1.0]), cov, log_z=1.3)
    out = blackjax_nss(
        jax.random.key(0),
        target.logdensity_fn,
        jnp.zeros(3),
        jnp.eye(3),
        num_live=LIVE,
        num_runs=RUNS,
    )
    _check_log_z(out, target.log_z)
    assert out["samples"].shape == (RUNS, 1000, 3) and out["num_grad_evals"] == 0
    draws = out["samples"].reshape(-1, 3)
    se = np.sqrt(np.diagonal(target.cov) / (RUNS * LIVE))
    assert np.all(np.abs(draws.mean(0) - target.mean) < 4 * se), (draws.mean(0), target.mean)
    assert out["wall_time"] > 0 and out["compile_time"] > 0


@pytest.mark.slow
def test_non_finite_region():
    """A 3-d Gaussian restricted to x₀ > 1.28 (90 % of the N(0, I) reference left out), NaN or
    +inf outside: 4 runs of 100 live points (key 1). log Ẑ is finite, each within 4 of its
    standard errors of the exact value and their mean within 4 sd/√4. The points at −∞ form a
    plateau; BlackJAX's running integrator, which ignores it, is off by about +1.3 here."""
    mean, scale, cut = jnp.array([1.5, 0.0, 0.0]), 0.5, 1.28

    def logdensity(x):
        inside = -0.5 * jnp.sum((x - mean) ** 2) / scale**2
        outside = jnp.where(x[1] > 0, jnp.nan, jnp.inf)
        return jnp.where(x[0] > cut, inside, outside)

    exact = 1.5 * np.log(2 * np.pi * scale**2) + stats.norm.logcdf((1.5 - cut) / scale)
    out = blackjax_nss(
        jax.random.key(1), logdensity, jnp.zeros(3), jnp.eye(3), num_live=LIVE, num_runs=RUNS
    )
    assert np.all(np.isfinite(out["log_z"]))
    _check_log_z(out, exact)
    assert np.all(out["samples"][..., 0] > cut)


def test_evaluation_count():
    """``num_logdensity_evals`` equals the number of points at which the log-density was
    evaluated, counted on the host by a callback: 2-d Gaussian, 20 live points, one deletion
    per step (so no batched ``while_loop`` evaluates extra lanes), 3 slice steps, 40 steps
    (key 0); exact equality. Counting 1 + E + S per slice step instead would miss 120."""
    calls = [0]

    def host(x):
        calls[0] += x.reshape(-1, 2).shape[0]
        return (-0.5 * np.sum((x - 0.3) ** 2, axis=-1) / 0.25).astype(np.float32)

    def logdensity(x):
        shape = jax.ShapeDtypeStruct(x.shape[:-1], jnp.float32)
        return jax.pure_callback(host, shape, x, vmap_method="expand_dims")

    out = blackjax_nss(
        jax.random.key(0),
        logdensity,
        jnp.zeros(2),
        jnp.eye(2),
        num_live=20,
        num_delete=1,
        num_inner_steps=3,
        max_steps=40,
        num_samples=10,
    )
    assert out["num_steps"] == 40 and not out["converged"]
    assert out["num_logdensity_evals"] == calls[0] > 20 + 40 * 3 * 3


def conjugate(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def test_compare_samplers_row():
    """``compare_samplers(samplers=("nuts", "nss"))`` on a normal-normal model (y = 0.5, exact
    log Z = log N(0.5; 0, 2)), 2 chains of 200 draws, NSS with 100 live points (key 0): the
    ``"nss"`` row has a finite log Z within 4 of its standard errors of the exact value,
    evaluations and no gradients, and agrees with NUTS."""
    result = compare_samplers(
        conjugate,
        jax.random.key(0),
        0.5,
        samplers=("nuts", "nss"),
        num_warmup=200,
        num_samples=200,
        nss_options=dict(num_live=100),
        progress_bar=False,
    )
    row = result.table.loc["nss"]
    exact = stats.norm.logpdf(0.5, 0.0, np.sqrt(2.0))
    assert np.isfinite(row["log_z"]) and abs(row["log_z"] - exact) < 4 * row["log_z_se"]
    assert row["evaluations"] > 0 and row["gradients"] == 0
    assert result.trees["nss"]["posterior"]["mu"].shape == (2, 200)
    assert not result.agreement["disagree"].any(), result.agreement
