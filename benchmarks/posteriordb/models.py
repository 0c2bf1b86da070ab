"""NumPyro translations of nine posteriordb reference posteriors.

Each model follows its posterior's ``model.md`` (posteriordb's Stan program): the same priors,
the same constraints, and Stan's transformed parameters as ``numpyro.deterministic`` sites
under the Stan names. Where the Stan program has no prior statement, Stan's implicit prior is
a flat density on the constrained parameter, written here as ``ImproperUniform``. Vector
parameters are single sites; :func:`flatten_samples` names their elements as posteriordb does
(``theta[1]``, ...).

The reference files are read from ``$POSTERIORDB_DIR``, by default ``<repo>/../shared/posteriordb``.

``gp_pois_regr`` needs 64-bit floats (``jax_enable_x64``): Stan's 1e-10 jitter is far below
float32 resolution, so the Cholesky factor of its near-singular GP covariance fails in float32.
"""

import functools
import json
import os
import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.scipy.linalg import solve_triangular
from jax.scipy.special import logsumexp
from numpyro.distributions import constraints

__all__ = [
    "POSTERIORS",
    "Posterior",
    "flatten_samples",
    "latent_values",
    "posteriordb_dir",
    "unflatten",
]


class Posterior(NamedTuple):
    """A posteriordb posterior: its model, and loaders for its data and reference.

    ``data_fn()`` gives the model's keyword arguments, ``reference_moments_fn()`` maps each
    posteriordb scalar name to its reference ``(mean, sd)``, and ``reference_draws_fn()`` maps
    each reference variable to its draws, shape ``(10 chains, 1000 draws, *shape)``, or gives
    ``None`` for a moments-only reference.
    """

    name: str
    model: Callable
    data_fn: Callable[[], dict]
    reference_moments_fn: Callable[[], dict[str, tuple[float, float]]]
    reference_draws_fn: Callable[[], dict[str, np.ndarray] | None]


def posteriordb_dir() -> Path:
    """The reference directory: ``$POSTERIORDB_DIR``, else ``<repo>/../shared/posteriordb``."""
    default = Path(__file__).resolve().parents[2].parent / "shared" / "posteriordb"
    return Path(os.environ.get("POSTERIORDB_DIR", default))


# ---------------------------------------------------------------------------------------------
# Building blocks


def _flat(support, event_shape=()):
    """Stan's implicit prior: a flat density on the constrained ``support``."""
    return dist.ImproperUniform(support, (), event_shape)


def _restricted(name, support, prior):
    """A vector site on ``support`` with the unnormalized density ``prior``, as Stan's
    ``mu ~ prior`` on an ``ordered`` or ``positive_ordered`` parameter."""
    value = numpyro.sample(name, _flat(support, prior.batch_shape + prior.event_shape))
    numpyro.factor(f"{name}_prior", prior.log_prob(value).sum())
    return value


def _iid(base, size):
    """A vector of ``size`` independent draws from ``base``, as one site."""
    return base.expand([size]).to_event(1)


def _lagged(y, K):
    """Lag matrix for t = K+1..T (1-based): row t holds (y[t-1], ..., y[t-K])."""
    rows = np.arange(K, y.shape[0])[:, None] - np.arange(1, K + 1)
    return y[rows]


def _garch_sd(y, mu, alpha0, alpha1, beta1, sigma1):
    """s[1] = sigma1, s[t]² = alpha0 + alpha1 (y[t-1] - mu)² + beta1 s[t-1]² for t = 2..T."""

    def step(var_prev, y_prev):
        var = alpha0 + alpha1 * (y_prev - mu) ** 2 + beta1 * var_prev
        return var, var

    _, var = jax.lax.scan(step, sigma1**2, y[:-1])
    return jnp.concatenate([jnp.atleast_1d(sigma1), jnp.sqrt(var)])


def _gp_cholesky(x, alpha, rho):
    """Cholesky factor of K + 1e-10 I, K[i, j] = alpha² exp(-(x[i] - x[j])² / (2 rho²))."""
    sq_dist = (x[:, None] - x[None, :]) ** 2
    cov = alpha**2 * jnp.exp(-0.5 * sq_dist / rho**2) + 1e-10 * jnp.eye(x.shape[0])
    return jnp.linalg.cholesky(cov)


def _hmm_log_marginal(log_emission, log_transition):
    """Forward algorithm, uniform initial state with its constant log(1/K) dropped:
    gamma[1] = log_emission[1],
    gamma[t, k] = logsumexp_j(gamma[t-1, j] + log_transition[j, k]) + log_emission[t, k],
    result logsumexp_k gamma[T, k]."""

    def step(gamma, log_emission_t):
        return logsumexp(gamma[:, None] + log_transition, axis=0) + log_emission_t, None

    gamma, _ = jax.lax.scan(step, log_emission[0], log_emission[1:])
    return logsumexp(gamma)


# ---------------------------------------------------------------------------------------------
# Models


def eight_schools_noncentered(y, sigma):
    """theta_trans[j] ~ N(0, 1), mu ~ N(0, 5), tau ~ Cauchy⁺(0, 5),
    theta = mu + tau theta_trans (deterministic), y[j] ~ N(theta[j], sigma[j])."""
    theta_trans = numpyro.sample("theta_trans", _iid(dist.Normal(0.0, 1.0), y.shape[0]))
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    theta = numpyro.deterministic("theta", mu + tau * theta_trans)
    numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


def eight_schools_centered(y, sigma):
    """mu ~ N(0, 5), tau ~ Cauchy⁺(0, 5), theta[j] ~ N(mu, tau), y[j] ~ N(theta[j], sigma[j])."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    theta = numpyro.sample("theta", _iid(dist.Normal(mu, tau), y.shape[0]))
    numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


def ark(y, K):
    """AR(K): alpha ~ N(0, 10), beta[k] ~ N(0, 10), sigma ~ Cauchy⁺(0, 2.5),
    y[t] ~ N(alpha + Σ_k beta[k] y[t-k], sigma) for t = K+1..T."""
    alpha = numpyro.sample("alpha", dist.Normal(0.0, 10.0))
    beta = numpyro.sample("beta", _iid(dist.Normal(0.0, 10.0), K))
    sigma = numpyro.sample("sigma", dist.HalfCauchy(2.5))
    numpyro.sample("y", dist.Normal(alpha + _lagged(y, K) @ beta, sigma), obs=y[K:])


def garch11(y, sigma1):
    """GARCH(1,1), flat priors on mu, alpha0 > 0 and the triangle 0 < alpha1 < 1,
    0 < beta1 < 1 - alpha1; y[t] ~ N(mu, s[t]) with s from :func:`_garch_sd`."""
    mu = numpyro.sample("mu", _flat(constraints.real))
    alpha0 = numpyro.sample("alpha0", _flat(constraints.positive))
    alpha1 = numpyro.sample("alpha1", _flat(constraints.unit_interval))
    beta1 = numpyro.sample("beta1", _flat(constraints.interval(0.0, 1.0 - alpha1)))
    sd = _garch_sd(y, mu, alpha0, alpha1, beta1, sigma1)
    numpyro.sample("y", dist.Normal(mu, sd), obs=y)


def low_dim_gauss_mix(y):
    """mu ordered with mu[k] ~ N(0, 2), sigma[k] ~ N⁺(0, 2), theta ~ Beta(5, 5),
    y[n] ~ theta N(mu[1], sigma[1]) + (1 - theta) N(mu[2], sigma[2])."""
    mu = _restricted("mu", constraints.ordered_vector, dist.Normal(jnp.zeros(2), 2.0))
    sigma = numpyro.sample("sigma", _iid(dist.HalfNormal(2.0), 2))
    theta = numpyro.sample("theta", dist.Beta(5.0, 5.0))
    weights = dist.Categorical(probs=jnp.stack([theta, 1.0 - theta]))
    numpyro.sample("y", dist.MixtureSameFamily(weights, dist.Normal(mu, sigma)), obs=y)


def gp_pois_regr(x, k):
    """rho ~ Gamma(25, rate 4), alpha ~ N⁺(0, 2), f_tilde[i] ~ N(0, 1),
    f = L f_tilde (deterministic) with L from :func:`_gp_cholesky`, k[i] ~ Poisson(exp(f[i]))."""
    rho = numpyro.sample("rho", dist.Gamma(25.0, 4.0))
    alpha = numpyro.sample("alpha", dist.HalfNormal(2.0))
    f_tilde = numpyro.sample("f_tilde", _iid(dist.Normal(0.0, 1.0), x.shape[0]))
    f = numpyro.deterministic("f", _gp_cholesky(x, alpha, rho) @ f_tilde)
    numpyro.sample("k", dist.Poisson(jnp.exp(f)), obs=k)


def diamonds(X, Y):
    """brms regression on Xc = X[:, 2..K] with centered columns: b[i] ~ N(0, 1),
    Intercept ~ t₃(8, 10), sigma ~ t₃⁺(0, 10), Y ~ N(Intercept + Xc b, sigma)."""
    predictors = X[:, 1:]
    centered = predictors - predictors.mean(axis=0)
    b = numpyro.sample("b", _iid(dist.Normal(0.0, 1.0), centered.shape[1]))
    intercept = numpyro.sample("Intercept", dist.StudentT(3.0, 8.0, 10.0))
    # t₃⁺(0, 10) = |t₃(0, 10)|: the same density as the t truncated at its centre, and it can be
    # sampled without tensorflow_probability (the truncated t's icdf needs it).
    sigma = numpyro.sample("sigma", dist.FoldedDistribution(dist.StudentT(3.0, 0.0, 10.0)))
    numpyro.sample("Y", dist.Normal(intercept + centered @ b, sigma), obs=Y)


def hmm_example(y):
    """2-state HMM: transition rows theta1, theta2 flat on the simplex, mu positive_ordered with
    mu[1] ~ N(3, 1), mu[2] ~ N(10, 1); y[t] | z[t] = k ~ N(mu[k], 1), z summed out by
    :func:`_hmm_log_marginal`."""
    theta1 = numpyro.sample("theta1", _flat(constraints.simplex, (2,)))
    theta2 = numpyro.sample("theta2", _flat(constraints.simplex, (2,)))
    mu_prior = dist.Normal(jnp.array([3.0, 10.0]), 1.0)
    mu = _restricted("mu", constraints.positive_ordered_vector, mu_prior)
    log_emission = dist.Normal(mu, 1.0).log_prob(y[:, None])
    log_transition = jnp.log(jnp.stack([theta1, theta2]))
    numpyro.factor("log_lik", _hmm_log_marginal(log_emission, log_transition))


def wells_interaction_c_model(switched, distance, arsenic):
    """Flat priors on alpha and beta[1..3]; switched ~ Bernoulli(logit⁻¹(alpha + x beta)) with
    x = (c_dist100, c_arsenic, c_dist100 c_arsenic), c_dist100 = (dist - mean(dist)) / 100,
    c_arsenic = arsenic - mean(arsenic). ``distance`` is Stan's ``dist``."""
    c_dist100 = (distance - distance.mean()) / 100.0
    c_arsenic = arsenic - arsenic.mean()
    x = jnp.stack([c_dist100, c_arsenic, c_dist100 * c_arsenic], axis=1)
    alpha = numpyro.sample("alpha", _flat(constraints.real))
    beta = numpyro.sample("beta", _flat(constraints.real_vector, (3,)))
    numpyro.sample("switched", dist.Bernoulli(logits=alpha + x @ beta), obs=switched)


# ---------------------------------------------------------------------------------------------
# Data and references


def _real(value):
    return jnp.asarray(value, dtype=float)


def _int(value):
    return jnp.asarray(value, dtype=int)


def _load_data(posterior, fields):
    """Model kwargs from ``data.json``: ``fields`` maps kwarg -> (Stan name, converter)."""
    raw = json.loads((posteriordb_dir() / posterior / "data.json").read_text())
    return {kwarg: convert(raw[key]) for kwarg, (key, convert) in fields.items()}


def _load_moments(posterior):
    text = (posteriordb_dir() / posterior / "reference_moments.json").read_text()
    return {name: (m["mean"], m["sd"]) for name, m in json.loads(text)["parameters"].items()}


def _load_draws(posterior):
    folder = posteriordb_dir() / posterior
    info = json.loads((folder / "info.json").read_text())
    if info["reference"]["type"] != "draws":
        return None
    with np.load(folder / "reference_draws.npz") as draws:
        return {name: draws[name] for name in draws.files}


def _posterior(name, model, fields):
    return Posterior(
        name,
        model,
        functools.partial(_load_data, name, fields),
        functools.partial(_load_moments, name),
        functools.partial(_load_draws, name),
    )


_EIGHT_SCHOOLS = {"y": ("y", _real), "sigma": ("sigma", _real)}

POSTERIORS: dict[str, Posterior] = {
    p.name: p
    for p in [
        _posterior(
            "eight_schools-eight_schools_noncentered", eight_schools_noncentered, _EIGHT_SCHOOLS
        ),
        _posterior("eight_schools-eight_schools_centered", eight_schools_centered, _EIGHT_SCHOOLS),
        _posterior("arK-arK", ark, {"y": ("y", _real), "K": ("K", int)}),
        _posterior("garch-garch11", garch11, {"y": ("y", _real), "sigma1": ("sigma1", _real)}),
        _posterior("low_dim_gauss_mix-low_dim_gauss_mix", low_dim_gauss_mix, {"y": ("y", _real)}),
        _posterior(
            "gp_pois_regr-gp_pois_regr", gp_pois_regr, {"x": ("x", _real), "k": ("k", _int)}
        ),
        _posterior("diamonds-diamonds", diamonds, {"X": ("X", _real), "Y": ("Y", _real)}),
        _posterior("hmm_example-hmm_example", hmm_example, {"y": ("y", _real)}),
        _posterior(
            "wells_data-wells_interaction_c_model",
            wells_interaction_c_model,
            {
                "switched": ("switched", _int),
                "distance": ("dist", _real),
                "arsenic": ("arsenic", _real),
            },
        ),
    ]
}


# ---------------------------------------------------------------------------------------------
# Naming and reference points


def _flat_name(name, index):
    return f"{name}[{','.join(str(i + 1) for i in index)}]" if index else name


def flatten_samples(samples, sample_ndim=2):
    """Split each site into posteriordb's scalar names: ``theta`` of shape (..., 8) becomes
    ``theta[1]`` ... ``theta[8]``. The first ``sample_ndim`` axes (default 2: chain, draw, the
    layout of the reference draws) are sample axes shared by all sites; the rest is the site's
    shape. Returns numpy arrays of the sample shape."""
    sample_shapes = {np.shape(value)[:sample_ndim] for value in samples.values()}
    if len(sample_shapes) > 1:
        raise ValueError(f"sites disagree on their {sample_ndim} leading sample axes")
    flat = {}
    for name, value in samples.items():
        value = np.asarray(value)
        for index in np.ndindex(value.shape[sample_ndim:]):
            flat[_flat_name(name, index)] = value[(..., *index)]
    return flat


_NAME = re.compile(r"(\w+)(?:\[([\d,]+)\])?")


def unflatten(values):
    """Inverse of :func:`flatten_samples` at one point: ``{"theta[1]": 1.0, ...}`` to
    ``{"theta": array([...]), ...}``."""
    groups = defaultdict(dict)
    for flat_name, value in values.items():
        name, index = _NAME.fullmatch(flat_name).groups()
        groups[name][tuple(int(i) - 1 for i in index.split(",")) if index else ()] = value
    sites = {}
    for name, entries in groups.items():
        sites[name] = np.empty(tuple(max(axis) + 1 for axis in zip(*entries, strict=True)))
        for index, value in entries.items():
            sites[name][index] = value
    return sites


def _noncentered_latent(values, data):
    theta_trans = (values["theta"] - values["mu"]) / values["tau"]
    return {"theta_trans": theta_trans, "mu": values["mu"], "tau": values["tau"]}


def _gp_latent(values, data):
    cholesky = _gp_cholesky(data["x"], values["alpha"], values["rho"])
    f_tilde = solve_triangular(cholesky, values["f"], lower=True)
    return {"rho": values["rho"], "alpha": values["alpha"], "f_tilde": f_tilde}


_LATENT_FROM_REFERENCE = {
    "eight_schools-eight_schools_noncentered": _noncentered_latent,
    "gp_pois_regr-gp_pois_regr": _gp_latent,
}


def latent_values(posterior, values, data):
    """The model's sample-site values at one point given as reference variables (constrained).

    Inverts Stan's transformed parameters where the reference stores them instead of the
    sampled variables (theta_trans = (theta - mu) / tau, f_tilde = L⁻¹ f); the other
    posteriors store their sampled variables. ``data`` is the posterior's ``data_fn()``.
    """
    invert = _LATENT_FROM_REFERENCE.get(posterior)
    return dict(values) if invert is None else invert(values, data)
