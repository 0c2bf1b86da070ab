"""Bayesian logistic regression on synthetic data: AST against NUTS on an easy posterior.

200 observations of 5 standardized features (numpy seed 0), coefficients ~ N(0, 1) and
intercept ~ N(0, 2.5). The posterior is unimodal and nearly Gaussian: NUTS is the cheaper
sampler here, and AST must agree with it. AST also returns the evidence log p(y), which has no
closed form for this model; it is checked against importance sampling from a Student-t fitted
to the NUTS draws.

    python examples/logistic_regression.py
"""

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import numpyro
import numpyro.distributions as dist
from common import overlay, print_evidence, run, save
from numpyro.infer import NUTS
from numpyro.infer.util import log_density
from scipy import stats

from numpyro_transport import AST


def make_data(n=200, d=5, seed=0):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, d))
    features = (features - features.mean(0)) / features.std(0)
    true_coefs = rng.normal(size=d)
    logits = -0.5 + features @ true_coefs
    labels = rng.binomial(1, 1 / (1 + np.exp(-logits)))
    return jnp.asarray(features), jnp.asarray(labels), true_coefs


def logistic(features, labels):
    coefs = numpyro.sample("coefs", dist.Normal(0.0, 1.0).expand([features.shape[1]]))
    intercept = numpyro.sample("intercept", dist.Normal(0.0, 2.5))
    with numpyro.plate("data", features.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=intercept + features @ coefs), obs=labels)


def importance_log_evidence(data, draws, num=100_000, seed=1):
    """log p(y) ± se by importance sampling from a Student-t (4 degrees of freedom) fitted to
    posterior draws; its heavy tails keep the weights bounded."""
    flat = np.column_stack([draws["coefs"], draws["intercept"]])
    proposal = stats.multivariate_t(flat.mean(0), np.cov(flat.T), df=4, seed=seed)
    u = proposal.rvs(num)

    def log_joint(u):
        return log_density(logistic, data, {}, {"coefs": u[:-1], "intercept": u[-1]})[0]

    log_w = np.asarray(jax.vmap(log_joint)(jnp.asarray(u)), np.float64) - proposal.logpdf(u)
    w = np.exp(log_w - log_w.max())
    return log_w.max() + np.log(w.mean()), w.std() / w.mean() / np.sqrt(num)


def main():
    features, labels, true_coefs = make_data()
    print("true coefficients:", np.round(true_coefs, 2), " intercept: -0.5")
    data = (features, labels)
    kernel = AST(logistic, num_particles=64, max_inner_blocks=1)
    runs = {
        "AST": run("AST", kernel, 5, 300, *data),
        "NUTS": run("NUTS", NUTS(logistic), 500, 500, *data),
    }
    draws = {name: mcmc.get_samples() for name, mcmc in runs.items()}
    reference, reference_se = importance_log_evidence(data, draws["NUTS"])
    print(f"\nimportance sampling: log p(y) = {reference:.3f} ± {reference_se:.3f}")
    print_evidence(runs["AST"], reference, label="log p(y)", name="importance sampling")

    fig, axes = plt.subplots(2, 3, figsize=(9, 5), constrained_layout=True)
    for i, ax in enumerate(axes.flat[:5]):
        overlay(ax, {name: d["coefs"][:, i] for name, d in draws.items()}, f"coefs[{i}]")
        ax.axvline(true_coefs[i], color="0.5", ls=":", lw=1)
    overlay(axes.flat[5], {name: d["intercept"] for name, d in draws.items()}, "intercept")
    axes.flat[0].legend()
    save(fig, "logistic_regression")


if __name__ == "__main__":
    main()
