"""PIMH cost per effective draw against the number of particles N, next to NUTS in one run.

    PYTHONPATH=. python -m benchmarks.pimh_particles [--posterior NAME] [--particles auto,32,64]

For each N (``auto``: the pilot's choice, shown with the pilot's σ̂₀ and its evaluations
counted), :func:`numpyro_transport.compare_samplers` runs AST (10 warm-up sweeps, 200 PIMH draws × 2
chains) and NUTS (300 warm-up + 200 draws × 2 chains) on a posteriordb posterior, same seed, and
prints AST's min bulk ESS, ESS/s (net of compilation), mean PIMH acceptance, R̂, and its ESS/s
as a fraction of NUTS's from the same call.
"""

import argparse
import warnings

import jax

from benchmarks.posteriordb.models import POSTERIORS
from numpyro_transport import compare_samplers


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posterior", default="eight_schools-eight_schools_noncentered")
    parser.add_argument("--particles", default="auto,16,32,64")
    args = parser.parse_args()
    posterior = POSTERIORS[args.posterior]
    data = posterior.data_fn()
    print("| N | AST min bulk ESS | AST ESS/s | acceptance | R̂ max | NUTS ESS/s | AST / NUTS |")
    print("|---|---|---|---|---|---|---|")
    for n in args.particles.split(","):
        n = n if n == "auto" else int(n)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Sites .* have improper priors")
            result = compare_samplers(
                posterior.model,
                jax.random.key(0),
                num_warmup=300,
                num_samples=200,
                ast_warmup=10,
                ast_options=dict(num_particles=n),
                progress_bar=False,
                **data,
            )
        ast, nuts = result.table.loc["ast"], result.table.loc["nuts"]
        attrs = result.trees["ast"]["transport"].attrs
        if n == "auto":
            n = f"auto: {attrs['num_particles']} (σ̂₀ = {attrs['pilot_log_evidence_sd']:.2f})"
        stats = result.trees["ast"]["sample_stats"].dataset
        accept = float(stats["acceptance_rate"].mean())
        print(
            f"| {n} | {ast['ess_bulk_min']:.0f} | {ast['ess_per_s']:.2f} | {accept:.2f} | "
            f"{ast['r_hat_max']:.3f} | {nuts['ess_per_s']:.2f} | "
            f"{ast['ess_per_s'] / nuts['ess_per_s']:.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
