"""Evidence precision per target evaluation: AST, BlackJAX adaptive tempered SMC and BlackJAX
nested slice sampling, side by side.

    python -m benchmarks.evidence [--runs R] [--only NAME] [--out docs/benchmarks_evidence.md]

For each target with a known log Z and each sampler at three or four sizes, ``R`` independent runs
(keys 0…R−1) give the spread of log Ẑ over runs (sd), its mean error against the exact log Z
(bias, with its standard error sd/√R), the mean reported standard error of one run and the
share of runs whose own 95 % interval covers the exact value, the mean number of target
evaluations and the wall time of one run (compilation excluded: every configuration is called
once before it is timed). All three samplers start from the same Gaussian reference: AST's
path and SMC's tempering start there, and nested sampling uses it as its prior (the likelihood
is the target over the reference), so all three estimate the same Z.

- AST: ``transport()`` with its defaults (4 frozen sweeps, the Student-t₃ interval) at
  N = 128, 256, 512 (the default) and 2048 particles.
- SMC: ``blackjax_smc`` (HMC, 10 steps × 5 leapfrog, target ESS 0.5), N = 256, 1024, 4096; one
  run gives no error bar, so its interval columns are empty.
- NSS: ``blackjax_nss`` (hit-and-run slice, 3·d inner steps, dlogz = 0.01) with 100, 400 and
  (for d ≤ 10: a run of 1600 in d = 50 takes minutes) 1600 live points; its interval is
  ± 1.96 × the simulated prior-volume error.

The figure (``--figure``) plots sd(log Ẑ) against evaluations, one panel per target.
"""

import argparse
import datetime
import os
import platform
import sys
import time
import warnings

import blackjax
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.engine import Spec, correlated_gaussian, reference, table
from numpyro_transport import targets, transport
from numpyro_transport.baselines import blackjax_nss, blackjax_smc
from numpyro_transport.model import model_run
from numpyro_transport.targets import EIGHT_SCHOOLS, Target, eight_schools_models

SIZES = {"ast": (128, 256, 512, 2048), "smc": (256, 1024, 4096), "nss": (100, 400, 1600)}
GOAL_EVALUATIONS, GOAL_SD = 1_000_000, 0.02


def eight_schools_spec():
    """The non-centred eight schools as a flat log-density, from AST's prior-moment reference,
    with its log Z by quadrature over τ."""
    model, log_z = eight_schools_models()["hierarchical"]
    run = model_run(model, EIGHT_SCHOOLS)
    ref = run.setup.reference
    target = Target(
        name="eight schools (non-centred)",
        dim=int(ref.mean.shape[0]),
        logdensity_fn=run.logdensity,
        log_z=log_z,
    )
    return target, (ref.mean, ref.scale_tril)


def specs():
    """(target, (reference mean, reference scale_tril)) for every benchmark target."""
    out = []
    for spec in (
        Spec(correlated_gaussian(10)),
        Spec(correlated_gaussian(50)),
        Spec(targets.two_mode(1, weights=(0.3, 0.7)), 2.0),
        Spec(targets.two_mode(8, weights=(0.3, 0.7)), 2.0),
    ):
        mean, _, scale_tril = reference(spec)
        out.append((spec.target, (mean, scale_tril)))
    return out + [eight_schools_spec()]


def run_ast(target, ref, size, keys):
    mean, scale_tril = ref
    options = dict(
        logdensity_fn=target.logdensity_fn,
        reference=(mean, scale_tril @ scale_tril.T),
        num_particles=size,
        progress=False,
    )
    transport(jax.random.key(2**20), **options)  # compiles
    rows = []
    for key in keys:
        start = time.perf_counter()
        result = transport(key, **options)
        wall = time.perf_counter() - start
        low, high = result.log_evidence_interval
        rows.append((result.log_evidence, result.log_evidence_se, low, high, wall))
        rows[-1] += (result.num_evaluations,)
    return rows


def run_baseline(name, target, ref, size, keys):
    mean, scale_tril = ref
    if name == "smc":
        out = blackjax_smc(
            keys[0], target.logdensity_fn, mean, scale_tril, num_particles=size, num_runs=len(keys)
        )
        log_z, se = np.atleast_1d(out["log_z"]), np.full(len(keys), np.nan)
        low = high = np.full(len(keys), np.nan)
        if np.any(np.atleast_1d(out["tempering_param"]) < 1.0):
            raise FloatingPointError("an SMC run stopped before the target")
    else:
        out = blackjax_nss(
            keys[0], target.logdensity_fn, mean, scale_tril, num_live=size, num_runs=len(keys)
        )
        log_z, se = np.atleast_1d(out["log_z"]), np.atleast_1d(out["log_z_se"])
        low, high = log_z - 1.96 * se, log_z + 1.96 * se
        if not np.all(out["converged"]):
            raise FloatingPointError("a nested sampling run stopped at max_steps")
    wall = out["wall_time"] / len(keys)  # one vectorized call for all runs
    evals = out["num_logdensity_evals"] / len(keys)
    return [(*r, wall, evals) for r in zip(log_z, se, low, high, strict=True)]


def summarize(target, sampler, size, rows):
    log_z, se, low, high, wall, evals = (np.asarray(c, np.float64) for c in zip(*rows, strict=True))
    error = log_z - target.log_z
    covered = (low <= target.log_z) & (target.log_z <= high)
    return {
        "target": target.name,
        "sampler": sampler,
        "size": size,
        "runs": len(rows),
        "bias": float(error.mean()),
        "bias_se": float(error.std(ddof=1) / np.sqrt(len(rows))),
        "sd": float(log_z.std(ddof=1)),
        "mean_se": float(np.mean(se)),
        "coverage": float(np.mean(covered)) if np.all(np.isfinite(low)) else np.nan,
        "evaluations": float(evals.mean()),
        "wall_s": float(wall.mean()),
    }


COLUMNS = [
    ("target", "target", "{}"),
    ("sampler", "sampler", "{}"),
    ("size", "N / live", "{}"),
    ("evaluations", "evaluations", "{:,.0f}"),
    ("sd", "sd(log Ẑ)", "{:.4f}"),
    ("bias", "bias", "{:+.4f}"),
    ("bias_se", "± (bias se)", "{:.4f}"),
    ("mean_se", "mean se", "{:.4f}"),
    ("coverage", "95 % coverage", "{:.0%}"),
    ("wall_s", "wall s / run", "{:.3g}"),
    ("runs", "runs", "{}"),
]


def figure(rows, path):
    """sd(log Ẑ) against evaluations, one panel per target, a line per sampler."""
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["target"] for r in rows))
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for sampler in SIZES:
            mine = [r for r in rows if r["target"] == name and r["sampler"] == sampler]
            if mine:
                ax.loglog(
                    [r["evaluations"] for r in mine], [r["sd"] for r in mine], "o-", label=sampler
                )
        ax.axhline(GOAL_SD, color="grey", lw=0.8, ls=":")
        ax.axvline(GOAL_EVALUATIONS, color="grey", lw=0.8, ls=":")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("target evaluations per run")
    axes[0][0].set_ylabel("sd of log Ẑ over runs")
    axes[0][0].legend(title="sampler", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def header(args):
    command = " ".join(["python -m benchmarks.evidence", *sys.argv[1:]])
    return "\n".join(
        [
            "# Evidence precision per evaluation: AST, BlackJAX SMC and nested slice sampling",
            "",
            f"- Date: {datetime.datetime.now().isoformat(timespec='seconds')}",
            f"- Command: `{command}`",
            f"- Machine: {os.cpu_count()} CPUs ({platform.machine()}, {platform.system()}), "
            f"jax {jax.__version__} on {jax.default_backend()}, blackjax {blackjax.__version__}",
            f"- {args.runs} runs per row (keys 0…{args.runs - 1}); the benchmark's docstring "
            "gives each sampler's settings. bias: mean of log Ẑ − log Z (± its standard "
            "error over runs); mean se: the error bar one run reports; coverage: runs whose "
            "95 % interval covers log Z (AST: Student-t₃; NSS: ± 1.96 se; SMC reports none).",
        ]
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--only", default=None, help="targets whose name contains this")
    parser.add_argument("--samplers", default="ast,smc,nss")
    parser.add_argument("--out", default="docs/benchmarks_evidence.md")
    parser.add_argument("--figure", default="docs/images/benchmarks_evidence.png")
    args = parser.parse_args(argv)
    keys = [jax.random.key(seed) for seed in range(args.runs)]
    rows = []
    for target, ref in specs():
        if args.only and args.only not in target.name:
            continue
        for sampler in args.samplers.split(","):
            for size in SIZES[sampler][: -1 if sampler == "nss" and target.dim > 10 else None]:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        if sampler == "ast":
                            runs = run_ast(target, ref, size, keys)
                        else:
                            runs = run_baseline(sampler, target, ref, size, jnp.stack(keys))
                except (FloatingPointError, ValueError) as error:
                    print(f"  {target.name} / {sampler} {size}: FAILED: {error}", flush=True)
                    continue
                rows.append(summarize(target, sampler, size, runs))
                r = rows[-1]
                print(
                    f"  {target.name} / {sampler} {size}: sd {r['sd']:.4f}, bias "
                    f"{r['bias']:+.4f} ± {r['bias_se']:.4f}, evals {r['evaluations']:,.0f}, "
                    f"{r['wall_s']:.2f} s/run",
                    flush=True,
                )
    text = header(args) + "\n\n" + table(rows, COLUMNS) + "\n"
    print("\n" + text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    if args.figure:
        figure(rows, args.figure)


if __name__ == "__main__":
    main()
