"""Eight schools, centered and non-centered: AST against NUTS, and the evidence.

The centered model has a funnel between τ and θ that NUTS explores badly (divergences, small τ
under-sampled); the non-centered one is easy for NUTS. AST needs no gradients; it is run on
both. Both parametrizations define the same p(y), so AST's two log Z estimates should agree
with each other and with the exact value. μ and θ integrate out in closed form,
y | τ ~ N(0, diag(σ² + τ²) + 5²·11ᵀ), so log p(y) and the posterior of τ (printed as mean and
sd, drawn as a black line) are exact up to 1-D quadrature.

    python examples/eight_schools.py
"""

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import numpyro
import numpyro.distributions as dist
from common import overlay, print_evidence, run, save
from numpyro.infer import NUTS
from scipy import integrate, stats

from numpyro_transport import AST

Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
PANEL_LIMITS = ((-10, 20), (0, 25), (-15, 35))  # x-ranges of the mu, tau, theta[0] panels


def centered(y, sigma):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("school", len(y)):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


def non_centered(y, sigma):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("school", len(y)):
        theta_trans = numpyro.sample("theta_trans", dist.Normal(0.0, 1.0))
        theta = numpyro.deterministic("theta", mu + tau * theta_trans)
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


def log_likelihood(tau):
    """log p(y | τ), with μ and θ integrated out: y | τ ~ N(0, diag(σ² + τ²) + 5²·11ᵀ)."""
    return stats.multivariate_normal.logpdf(Y, np.zeros(8), np.diag(SIGMA**2 + tau**2) + 25.0)


def exact_answers():
    """log p(y) and the posterior mean and sd of τ, by quadrature of the τ-marginal; and that
    marginal's density as a function of τ."""
    shift = log_likelihood(0.0)  # keeps the integrands O(1)

    def unnormalized(tau):
        return stats.halfcauchy.pdf(tau, scale=5.0) * np.exp(log_likelihood(tau) - shift)

    m0, m1, m2 = (
        integrate.quad(lambda t, k=k: t**k * unnormalized(t), 0, np.inf, limit=200)[0]
        for k in range(3)
    )
    mean = m1 / m0
    density = np.vectorize(lambda t: unnormalized(t) / m0)
    return shift + np.log(m0), mean, np.sqrt(m2 / m0 - mean**2), density


def main():
    log_z, tau_mean, tau_sd, tau_density = exact_answers()
    data = (jnp.asarray(Y), jnp.asarray(SIGMA))
    fig, axes = plt.subplots(2, 3, figsize=(9, 5), constrained_layout=True)
    tau_grid = np.linspace(0, 25, 200)
    table = []
    for row, model in zip(axes, (centered, non_centered), strict=True):
        print(f"\n##### {model.__name__} #####")
        kernel = AST(model, num_particles=256)
        runs = {
            "AST": run("AST", kernel, 5, 200, *data),
            "NUTS": run("NUTS", NUTS(model), 500, 500, *data),
        }
        print_evidence(runs["AST"], log_z)
        draws = {name: mcmc.get_samples() for name, mcmc in runs.items()}
        for name, d in draws.items():
            d["theta[0]"] = d["theta"][:, 0]
            table.append((f"{model.__name__} {name}", np.mean(d["tau"]), np.std(d["tau"])))
        for ax, site, limits in zip(row, ("mu", "tau", "theta[0]"), PANEL_LIMITS, strict=True):
            exact = (tau_grid, tau_density(tau_grid)) if site == "tau" else None
            column = {name: d[site] for name, d in draws.items()}
            overlay(ax, column, f"{model.__name__}: {site}", exact=exact, limits=limits)
    print(f"\n{'':18}{'mean tau':>9}{'sd tau':>8}")
    for name, mean, sd in table + [("exact", tau_mean, tau_sd)]:
        print(f"{name:18}{mean:9.2f}{sd:8.2f}")
    axes[0, 1].legend()
    save(fig, "eight_schools")


if __name__ == "__main__":
    main()
