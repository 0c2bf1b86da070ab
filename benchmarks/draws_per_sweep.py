"""PIMH draws per sweep: effective draws and time against ``draws_per_sweep``.

    PYTHONPATH=. python -m benchmarks.draws_per_sweep [--posterior NAME] [--draws auto,64,1]
        [--particles 32]

For each setting, ``MCMC(AST(model, num_particles=N, draws_per_sweep=r), num_warmup=5,
num_samples=1000, num_chains=4, chain_method="vectorized")`` runs twice on the same data (seeds 0
and 1): the first call's time includes compilation, the second's is what a repeated ``run()``
costs. Prints the ``r`` used, both times, the min bulk ESS over all scalars of the second run,
its ESS/s, the mean PIMH acceptance and the number of proposed sweeps.
"""

import argparse
import time

import jax
import numpy as np
from numpyro.diagnostics import effective_sample_size
from numpyro.infer import MCMC

from benchmarks.posteriordb.models import POSTERIORS
from numpyro_transport import AST

CHAINS, DRAWS = 4, 1000


def measure(model, data, num_particles, draws_per_sweep):
    """(r used, first time, second time, min bulk ESS, acceptance, sweeps) of one setting."""
    kernel = AST(model, num_particles=num_particles, draws_per_sweep=draws_per_sweep)
    mcmc = MCMC(
        kernel,
        num_warmup=5,
        num_samples=DRAWS,
        num_chains=CHAINS,
        chain_method="vectorized",
        progress_bar=False,
    )
    times = []
    for seed in (0, 1):
        start = time.perf_counter()
        mcmc.run(jax.random.key(seed), **data)
        times.append(time.perf_counter() - start)
    samples = mcmc.get_samples(group_by_chain=True)
    ess = min(
        float(np.min(effective_sample_size(np.asarray(v).reshape(CHAINS, DRAWS, -1))))
        for v in samples.values()
    )
    fields = mcmc.get_extra_fields(group_by_chain=True)
    used = int(np.asarray(mcmc.last_state.draws_per_sweep)[0])
    accept = float(np.mean(fields["accept_prob"]))
    return used, *times, ess, accept, int(np.sum(fields["new_sweep"]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posterior", default="eight_schools-eight_schools_noncentered")
    parser.add_argument("--draws", default="auto,64,128,1")
    parser.add_argument("--particles", type=int, default=32)
    args = parser.parse_args()
    posterior = POSTERIORS[args.posterior]
    data = posterior.data_fn()
    print(
        "| draws_per_sweep | r used | 1st run s | 2nd run s | min bulk ESS | ESS/s (2nd) | "
        "acceptance | sweeps |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in args.draws.split(","):
        r = r if r == "auto" else int(r)
        used, first, second, ess, accept, sweeps = measure(posterior.model, data, args.particles, r)
        print(
            f"| {r} | {used} | {first:.1f} | {second:.1f} | {ess:.0f} | {ess / second:.1f} | "
            f"{accept:.2f} | {sweeps} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
