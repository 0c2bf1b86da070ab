"""Two well-separated modes of unequal weight: AST gets the weights right, NUTS cannot.

The target is 0.3·N(−4, 0.5²) + 0.7·N(4, 0.5²) in 1-D, a normalized density (log Z = 0). A NUTS
chain never crosses the gap between the modes, so each chain reports the weight of the mode it
started in (0 or 1) and the pooled weight is the fraction of chains on the right. AST weights
its particles across both modes and gets 0.7, with the evidence on the side.

    python examples/two_modes.py
"""

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import numpyro
import numpyro.distributions as dist
from common import overlay, print_evidence, run, save
from numpyro.infer import NUTS

from numpyro_transport import AST

WEIGHTS, MEANS, SCALE = jnp.array([0.3, 0.7]), jnp.array([-4.0, 4.0]), 0.5
MIXTURE = dist.MixtureSameFamily(dist.Categorical(probs=WEIGHTS), dist.Normal(MEANS, SCALE))


def two_modes():
    numpyro.sample("x", MIXTURE)


def main():
    runs = {
        "AST": run("AST", AST(two_modes, num_particles=64, max_inner_blocks=1), 5, 500),
        "NUTS": run("NUTS", NUTS(two_modes), 500, 500),
    }
    print()
    print_evidence(runs["AST"], exact=0.0)
    draws = {name: mcmc.get_samples(group_by_chain=True)["x"] for name, mcmc in runs.items()}
    for name, x in draws.items():
        per_chain = ", ".join(f"{w:.3f}" for w in np.mean(x > 0, axis=1))
        print(f"{name:5} weight of the right mode: {np.mean(x > 0):.3f}  (chains: {per_chain})")
    print(f"{'exact':5} weight of the right mode: {WEIGHTS[1]:.3f}")

    fig, ax = plt.subplots(figsize=(8, 4), constrained_layout=True)
    grid = jnp.linspace(-7, 7, 400)
    exact = (grid, jnp.exp(MIXTURE.log_prob(grid)))
    overlay(ax, draws, "0.3·N(−4, 0.5²) + 0.7·N(4, 0.5²)", exact=exact, bins=80, limits=(-7, 7))
    ax.legend()
    save(fig, "two_modes")


if __name__ == "__main__":
    main()
