"""Helpers shared by the example scripts: run a sampler and print its summary, print AST's
evidence, overlay marginals, save the figure.

Not an example itself; the scripts import it as ``from common import ...`` (they run from the
repository root as ``python examples/<name>.py``, which puts ``examples/`` on the path).
"""

import time
from pathlib import Path

import jax
import matplotlib
import numpy as np
from numpyro.infer import MCMC

from numpyro_transport import log_evidence

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the non-interactive backend)

IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"


def run(name, kernel, num_warmup, num_samples, *model_args, seed=0, **model_kwargs):
    """Run two vectorized chains of ``kernel`` on the model's arguments, print a header (with the
    wall time, compilation included) and the summary; return the MCMC."""
    mcmc = MCMC(
        kernel,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=2,
        chain_method="vectorized",
        progress_bar=False,
    )
    start = time.perf_counter()
    mcmc.run(jax.random.key(seed), *model_args, **model_kwargs)
    jax.block_until_ready(mcmc.get_samples())
    print(f"\n=== {name} ({time.perf_counter() - start:.0f} s) ===")
    mcmc.print_summary()
    return mcmc


def print_evidence(mcmc, exact=None, label="log Z", name="exact"):
    """Print AST's log Z ± se, next to the ``exact`` value (or another reference, called
    ``name``) when there is one; return (log Z, se)."""
    log_z, se = log_evidence(mcmc)
    line = f"AST {label} = {log_z:.3f} ± {se:.3f}"
    if exact is not None:
        line += f"   ({name} {exact:.3f}, error {(log_z - exact) / se:+.1f} se)"
    print(line)
    return log_z, se


def overlay(ax, draws, title, exact=None, bins=50, limits=None):
    """Overlaid density histograms of ``draws`` (``{label: 1-D array}``) on ``ax``, with an
    optional exact density ``exact = (grid, pdf)`` as a black line."""
    pooled = np.concatenate([np.ravel(d) for d in draws.values()])
    limits = limits or tuple(np.percentile(pooled, [0.5, 99.5]))
    for label, d in draws.items():
        ax.hist(np.ravel(d), bins=bins, range=limits, density=True, histtype="step", label=label)
    if exact is not None:
        ax.plot(*exact, "k", lw=1, label="exact")
    ax.set(title=title, yticks=[])


def save(fig, name):
    """Save ``fig`` as ``docs/images/<name>.png`` and say where."""
    IMAGES.mkdir(parents=True, exist_ok=True)
    path = IMAGES / f"{name}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"\nfigure: {path.relative_to(IMAGES.parents[1])}")
