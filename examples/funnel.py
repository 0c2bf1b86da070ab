"""Neal's funnel in d = 10: AST against NUTS, with the exact marginal and evidence.

v ~ N(0, 3) and x₁..x₉ | v ~ N(0, e^{v/2}). The neck (v ≪ 0) is too narrow for the step size
NUTS adapts in the mouth, so NUTS under-samples negative v. AST uses no gradients and no step
size, but its particles must still find the neck. The model is a normalized density with no
data, so log Z = 0 exactly and v's marginal is exactly N(0, 3): the printed mean and sd of v and
the mass P(v < −5) of the neck show how far each sampler gets.

    python examples/funnel.py
"""

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import numpyro
import numpyro.distributions as dist
from common import overlay, print_evidence, run, save
from numpyro.infer import NUTS
from scipy import stats

from numpyro_transport import AST


def funnel(dim=10):
    v = numpyro.sample("v", dist.Normal(0.0, 3.0))
    with numpyro.plate("coords", dim - 1):
        numpyro.sample("x", dist.Normal(0.0, jnp.exp(v / 2)))


def main():
    runs = {
        "AST": run("AST", AST(funnel, num_particles=64, max_inner_blocks=1), 5, 300),
        "NUTS": run("NUTS", NUTS(funnel), 500, 500),
    }
    print()
    print_evidence(runs["AST"], exact=0.0)
    draws = {name: mcmc.get_samples() for name, mcmc in runs.items()}
    print(f"\n{'':6}{'mean v':>8}{'sd v':>8}{'P(v < -5)':>11}")
    for name, d in draws.items():
        v = np.asarray(d["v"])
        print(f"{name:6}{v.mean():8.2f}{v.std():8.2f}{np.mean(v < -5):11.3f}")
    print(f"{'exact':6}{0:8.2f}{3:8.2f}{stats.norm.cdf(-5 / 3):11.3f}")

    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 4), constrained_layout=True)
    grid = np.linspace(-10, 10, 200)
    exact = (grid, stats.norm.pdf(grid, 0, 3))
    v_draws = {name: d["v"] for name, d in draws.items()}
    overlay(left, v_draws, "marginal of v", exact=exact, limits=(-10, 10))
    left.legend()
    for name, d in draws.items():
        right.scatter(d["v"], d["x"][:, 0], s=2, alpha=0.4, label=name)
    right.set(xlabel="v", ylabel="x₁", xlim=(-10, 10), ylim=(-30, 30), title="draws of (v, x₁)")
    save(fig, "funnel")


if __name__ == "__main__":
    main()
