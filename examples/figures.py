"""The diagnostic figures of the documentation, regenerated in one command.

``transport()`` samples a two-mode target (two 2-D Gaussians of weights 0.3 and 0.7), and
``compare_samplers`` runs ``MCMC(AST)`` next to NUTS on a small NumPyro model whose site ``x`` has
two such modes, next to an ordinary ``mu``, ``sigma`` regression. Every figure of
``numpyro_transport.plots`` and the comparison's marginals go to ``docs/images/diagnostics_*.png``:
the λ schedule with ESS and CESS, the MMSE curve and the per-sweep evidence and means of the
``transport()`` run; the PIMH acceptance of the AST chains; AST against NUTS, with the parameter
on which the samplers disagree marked (NUTS chains stay in the mode they start in).

    python examples/figures.py
"""

import time

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from common import save

from numpyro_transport import compare_samplers, transport
from numpyro_transport.plots import plot_acceptance, plot_mmse, plot_schedule, plot_sweeps
from numpyro_transport.targets import two_mode

TARGET = two_mode(dim=2, separation=6.0)
MIXTURE = dist.MixtureSameFamily(
    dist.Categorical(probs=jnp.array([0.3, 0.7])), dist.Normal(jnp.array([-3.0, 3.0]), 0.5)
)
Y = jnp.array([0.5, 1.2, 0.3, 1.9, 1.1, 0.8])


def bimodal_regression(y):
    numpyro.sample("x", MIXTURE)
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    with numpyro.plate("obs", y.shape[0]):
        numpyro.sample("y", dist.Normal(mu, sigma), obs=y)


def save_collection(pc, name):
    """Save an ``arviz_plots.PlotCollection``'s figure as ``docs/images/<name>.png``."""
    save(pc.viz["figure"].item(), name)


def main():
    start = time.perf_counter()
    result = transport(
        jax.random.key(0),
        logdensity_fn=TARGET.logdensity_fn,
        reference=(jnp.zeros(2), 9.0 * jnp.eye(2)),
        num_particles=256,
        num_sweeps=8,
        progress=False,
    )
    print(
        f"transport(): log Z = {result.log_evidence:.3f} ± {result.log_evidence_se:.3f} (exact 0)"
    )
    tree = result.to_arviz()
    save_collection(plot_schedule(tree), "diagnostics_schedule")
    save_collection(plot_mmse(tree), "diagnostics_mmse")
    save_collection(plot_sweeps(tree, var_names="x"), "diagnostics_sweeps")

    comparison = compare_samplers(
        bimodal_regression,
        jax.random.key(1),
        Y,
        num_warmup=300,
        num_samples=300,
        ast_warmup=3,
        ast_options=dict(
            num_particles=64, max_inner_blocks=1, draws_per_sweep=10, progress_bar=False
        ),
        progress_bar=False,
    )
    print(comparison.agreement.to_string())
    save_collection(plot_acceptance(comparison.trees["ast"]), "diagnostics_acceptance")
    save_collection(comparison.plot(), "diagnostics_comparison")
    print(f"\nall figures in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
