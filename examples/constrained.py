"""Constrained sites: a simplex and an ordered vector, with an evidence that can be checked.

The model has two independent parts:

- a Dirichlet–multinomial: p ~ Dirichlet(1, 1, 1) on the simplex, counts ~ Multinomial(20, p).
  The posterior is Dirichlet(1 + counts) and the evidence is 2 / ((n + 1)(n + 2)), n = 20;
- an ordinal-logistic model of 100 grades on a 4-point scale, with ordered cutpoints
  c ~ OrderedTransform(N(0, 3)³) (c₁ = x₁, c_k = c_{k−1} + e^{x_k}). Its evidence is computed
  by quadrature of exp(−potential energy) on a grid over the 3-D unconstrained space.

Both samplers work in the unconstrained space (stick-breaking and ordered transforms, with their
log-Jacobians); the draws are mapped back. AST's log Z is that of the whole model, the sum of the
two parts.

    python examples/constrained.py
"""

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import numpyro
import numpyro.distributions as dist
from common import overlay, print_evidence, run, save
from jax.scipy.special import logsumexp
from numpyro.distributions.transforms import OrderedTransform
from numpyro.infer import NUTS
from numpyro.infer.util import potential_energy
from scipy import stats

from numpyro_transport import AST

COUNTS = jnp.array([15.0, 4.0, 1.0])
GRADES = jnp.repeat(jnp.arange(4), jnp.array([20, 35, 30, 15]))


def dirichlet_multinomial(counts):
    p = numpyro.sample("p", dist.Dirichlet(jnp.ones(3)))
    numpyro.sample("counts", dist.Multinomial(counts.sum(), p), obs=counts)


def ordinal(grades):
    prior = dist.TransformedDistribution(dist.Normal(0.0, 3.0).expand([3]), OrderedTransform())
    cutpoints = numpyro.sample("cutpoints", prior)
    numpyro.sample("grades", dist.OrderedLogistic(jnp.zeros(grades.shape), cutpoints), obs=grades)


def model(counts, grades):
    dirichlet_multinomial(counts)
    ordinal(grades)


def ordinal_log_evidence(half_width=4.0, num=81):
    """log ∫ exp(−U(x)) dx of the ordinal part by the trapezoid rule on [−4, 4]³ (its posterior
    lies well inside; the integrand is smooth, so a 0.1 spacing is accurate to ~1e-8)."""
    axis = jnp.linspace(-half_width, half_width, num)
    grid = jnp.stack(jnp.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    energy = jax.lax.map(
        lambda x: potential_energy(ordinal, (GRADES,), {}, {"cutpoints": x}), grid, batch_size=4096
    )
    return float(logsumexp(-energy) + 3 * jnp.log(axis[1] - axis[0]))


def main():
    n = float(COUNTS.sum())
    exact_dm = np.log(2 / ((n + 1) * (n + 2)))
    exact_ordinal = ordinal_log_evidence()
    print(f"exact log Z: {exact_dm:.3f} (Dirichlet-multinomial) + {exact_ordinal:.3f} (ordinal)")
    data = (COUNTS, GRADES)
    kernel = AST(model, num_particles=64, max_inner_blocks=1)
    runs = {
        "AST": run("AST", kernel, 5, 300, *data),
        "NUTS": run("NUTS", NUTS(model), 500, 500, *data),
    }
    print()
    print_evidence(runs["AST"], exact=exact_dm + exact_ordinal)
    draws = {name: mcmc.get_samples() for name, mcmc in runs.items()}

    fig, axes = plt.subplots(2, 3, figsize=(9, 5), constrained_layout=True)
    grid = np.linspace(0, 1, 300)
    for i, ax in enumerate(axes[0]):  # exact marginal: Beta(1 + k_i, n + 2 − k_i)
        exact = (grid, stats.beta.pdf(grid, 1 + COUNTS[i], n + 2 - COUNTS[i]))
        overlay(ax, {name: d["p"][:, i] for name, d in draws.items()}, f"p[{i}]", exact=exact)
    for i, ax in enumerate(axes[1]):
        overlay(ax, {name: d["cutpoints"][:, i] for name, d in draws.items()}, f"cutpoints[{i}]")
    axes[0, 0].legend()
    save(fig, "constrained")


if __name__ == "__main__":
    main()
