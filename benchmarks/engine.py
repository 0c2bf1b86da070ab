"""Our sampler (``transport``) next to BlackJAX adaptive tempered SMC, on the same targets.

    python -m benchmarks.engine [--quick] [--seeds N] [--only NAME] [--skip NAME] [--one-call]
                                [--out docs/benchmarks_engine.md]

Both samplers start from the same broad Gaussian reference per target, one a user could pick
without knowing the answer. Ours runs first on every seed; BlackJAX's particle count is then set
from a pilot run so that its target evaluations match ours (see ``matched_particles``). Each
sampler is called twice per seed, and the second (timed) call is reported; the first call's time
(compilation plus one run) is reported as compile time; with ``--one-call`` (for targets where
one run takes minutes) ours is called once and its time includes compilation.
"""

import argparse
import datetime
import functools
import os
import platform
import sys
import time
from typing import NamedTuple

import blackjax
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.logistic import logistic_regression
from numpyro_transport import targets, transport
from numpyro_transport.baselines import blackjax_smc
from numpyro_transport.targets import Target

MODE_RADIUS = 3.0  # a mode counts as found if some sample lies within this distance
MAX_BLACKJAX_PARTICLES = 32768


class Spec(NamedTuple):
    """A benchmark: the target and the scale s of the shared reference N(0, s² I)."""

    target: Target
    reference_scale: float = 1.0


class Truth(NamedTuple):
    """What each sampler is scored against: log Z, and mean/sd of ``coords``."""

    log_z: float | None
    mean: np.ndarray | None = None
    sd: np.ndarray | None = None
    coords: np.ndarray | None = None
    source: str = "exact"


def correlated_gaussian(dim, seed=0):
    """N(m, Σ): random rotation, eigenvalues log-spaced on [0.1, 10] (condition number 100),
    mean m ~ N(0, I); written without its normalizing constant so log Z = 0."""
    k_rot, k_mean = jax.random.split(jax.random.key(seed))
    rotation, _ = jnp.linalg.qr(jax.random.normal(k_rot, (dim, dim)))
    cov = (rotation * jnp.geomspace(0.1, 10.0, dim)) @ rotation.T
    mean = jax.random.normal(k_mean, (dim,))
    return targets.gaussian(mean, 0.5 * (cov + cov.T), name=f"gaussian d={dim}")


def benchmark_specs(quick):
    specs = [
        Spec(correlated_gaussian(10)),
        Spec(correlated_gaussian(100)),
        Spec(targets.two_mode(1, weights=(0.3, 0.7)), 2.0),
        Spec(targets.two_mode(8, weights=(0.3, 0.7)), 2.0),
        Spec(targets.gmm40(), 25.0),
        Spec(targets.funnel(10)),
        Spec(logistic_regression(0, 200, 5)),
    ]
    return [s for s in specs if not (quick and s.target.dim >= 100)]


def reference(spec):
    """The shared reference as (mean, covariance, Cholesky factor)."""
    d = spec.target.dim
    scale_tril = spec.reference_scale * jnp.eye(d)
    return jnp.zeros(d), scale_tril @ scale_tril.T, scale_tril


def truth(spec, reference_particles):
    """Exact answers where known; otherwise an exact sample (funnel, first coordinate) or a
    long BlackJAX run (log Z and posterior moments)."""
    t = spec.target
    if t.cov is not None:
        return Truth(t.log_z, np.asarray(t.mean), np.sqrt(np.diag(t.cov)), np.arange(t.dim))
    if t.sample is not None:
        v = np.asarray(t.sample(jax.random.key(2**20), 200_000))[:, :1]
        return Truth(t.log_z, v.mean(0), v.std(0), np.arange(1), "exact sample, 200k")
    mean, _, scale_tril = reference(spec)
    out = blackjax_smc(
        jax.random.key(2**20), t.logdensity_fn, mean, scale_tril, num_particles=reference_particles
    )
    x = out["samples"]
    source = f"BlackJAX, {reference_particles} particles"
    return Truth(out["log_z"], x.mean(0), x.std(0), np.arange(t.dim), source)


def run_ours(spec, key, num_particles, compile_call=True):
    """``transport`` on the target; timed on a second call unless ``compile_call`` is False
    (then the one call's time includes compilation and compile time is not reported)."""
    mean, cov, _ = reference(spec)
    kwargs = dict(reference=(mean, cov), num_particles=num_particles, progress=False)
    compile_time = float("nan")
    if compile_call:
        start = time.perf_counter()
        transport(jax.random.fold_in(key, 1), logdensity_fn=spec.target.logdensity_fn, **kwargs)
        compile_time = time.perf_counter() - start
    start = time.perf_counter()
    result = transport(key, logdensity_fn=spec.target.logdensity_fn, **kwargs)
    wall_time = time.perf_counter() - start
    return {
        "log_z": result.log_evidence,
        "samples": result.samples,
        "evals": result.num_evaluations,
        "grads": 0,
        "wall": wall_time,
        "compile": compile_time,
    }


def run_blackjax(spec, key, num_particles):
    mean, _, scale_tril = reference(spec)
    out = blackjax_smc(
        key, spec.target.logdensity_fn, mean, scale_tril, num_particles=num_particles
    )
    if out["tempering_param"] < 1.0:
        raise FloatingPointError(f"stopped at temperature {out['tempering_param']:.3g}")
    return {
        "log_z": out["log_z"],
        "samples": out["samples"],
        "evals": out["num_logdensity_evals"],
        "grads": out["num_grad_evals"],
        "wall": out["wall_time"],
        "compile": out["compile_time"],
    }


def matched_particles(spec, target_evals, pilot_particles):
    """BlackJAX particles giving ~``target_evals`` evaluations: a pilot run measures the
    evaluations per particle (53 per tempering step), which barely depend on N."""
    out = run_blackjax(spec, jax.random.key(2**21), pilot_particles)
    n = target_evals / (out["evals"] / pilot_particles)
    return int(np.clip(64 * round(n / 64), 64, MAX_BLACKJAX_PARTICLES))


def score(run, spec, truth):
    """Per-seed metrics of one run's samples and log Ẑ."""
    x, t = np.asarray(run["samples"]), spec.target
    out = {"log_z": run["log_z"], "log_z_err": run["log_z"] - truth.log_z}
    if truth.mean is not None:
        m, s = x[:, truth.coords].mean(0), x[:, truth.coords].std(0)
        out["mean_err"] = np.max(np.abs(m - truth.mean) / truth.sd)
        out["sd_err"] = np.max(np.abs(s / truth.sd - 1))
    if t.mode_means is not None:
        dist = np.linalg.norm(x[:, None, :] - np.asarray(t.mode_means)[None], axis=-1)
        share = np.bincount(dist.argmin(1), minlength=len(t.mode_weights)) / len(x)
        out["weight_err"] = np.max(np.abs(share - np.asarray(t.mode_weights)))
        out["modes"] = int(np.sum(dist.min(0) < MODE_RADIUS))
    return out | {k: run[k] for k in ("evals", "grads", "wall", "compile")}


def run_seeds(name, runner, spec, truth, num_particles, seeds):
    """One row of the table: metrics averaged over seeds (sd over seeds for log Ẑ)."""
    scores = []
    for seed in range(seeds):
        try:
            scores.append(score(runner(spec, jax.random.key(seed), num_particles), spec, truth))
        except (FloatingPointError, ValueError) as err:
            print(f"  {spec.target.name} / {name} seed {seed} FAILED: {err}", flush=True)
            continue
        s = scores[-1]
        print(
            f"  {spec.target.name} / {name} N={num_particles} seed {seed}: "
            f"log Ẑ − log Z = {s['log_z_err']:+.3f}, evals {s['evals']:,}, "
            f"wall {s['wall']:.1f}s, compile {s['compile']:.1f}s",
            flush=True,
        )
    row = {"target": spec.target.name, "sampler": name, "N": num_particles}
    row["runs"] = f"{len(scores)}/{seeds}"
    for key in scores[0] if scores else ():
        row[key] = float(np.mean([s[key] for s in scores]))
    if len(scores) >= 2:
        row["log_z_sd"] = float(np.std([s["log_z"] for s in scores], ddof=1))
    if "modes" in row:
        row["modes"] = f"{row['modes']:.3g}/{len(spec.target.mode_weights)}"
    return row


COLUMNS = [
    ("target", "target", "{}"),
    ("sampler", "sampler", "{}"),
    ("N", "particles", "{}"),
    ("log_z", "log Ẑ", "{:.3f}"),
    ("log_z_err", "log Ẑ − log Z", "{:+.3f}"),
    ("log_z_sd", "sd", "{:.3f}"),
    ("mean_err", "mean err", "{:.3f}"),
    ("sd_err", "sd err", "{:.3f}"),
    ("weight_err", "weight err", "{:.3f}"),
    ("modes", "modes", "{}"),
    ("evals", "evals", "{:,.0f}"),
    ("grads", "grads", "{:,.0f}"),
    ("wall", "wall s", "{:.3g}"),
    ("compile", "compile s", "{:.1f}"),
    ("runs", "runs", "{}"),
]


def table(rows, columns=COLUMNS):
    """A markdown table of ``rows`` with ``columns`` (key, header, format); a missing or NaN
    value is a dash."""
    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |"]
    lines.append("|" + "---|" * len(columns))
    for row in rows:
        cells = [
            fmt.format(row[k]) if k in row and row[k] == row[k] else "–" for k, _, fmt in columns
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def header(args, settings, truths):
    command = " ".join(["python -m benchmarks.engine", *sys.argv[1:]])
    refs = [
        f"- {name}: log Z unknown; its rows are scored against log Z = {t.log_z:.4f} and "
        f"the posterior mean and sd from {t.source}."
        for name, t in truths.items()
        if t.source != "exact"
    ]
    return "\n".join(
        [
            "# Engine benchmark: transport vs BlackJAX adaptive tempered SMC",
            "",
            f"- Date: {datetime.datetime.now().isoformat(timespec='seconds')}",
            f"- Command: `{command}`",
            f"- Machine: {os.cpu_count()} CPUs ({platform.machine()}, {platform.system()}), "
            f"jax {jax.__version__} on {jax.default_backend()}, blackjax {blackjax.__version__}",
            f"- Seeds: {args.seeds} per target and sampler; mean over seeds shown, sd is the "
            "sd of log Ẑ over seeds.",
            f"- Ours: `transport` defaults, N = {settings['ours']} particles. BlackJAX: adaptive "
            "tempered SMC, HMC (10 steps × 5 leapfrog), target ESS 0.5 "
            "(`numpyro_transport/baselines.py`), N chosen per target from a pilot run so its "
            "evaluations match ours (capped at "
            f"{MAX_BLACKJAX_PARTICLES}; compare the evals column).",
            "- Reference (both samplers): N(0, I); N(0, 2² I) for the two-mode mixtures; "
            "N(0, 25² I) for GMM-40.",
            "- Evaluations: points at which the target log-density was evaluated. Ours: "
            "`num_evaluations` (every sweep, retries included, and the N·M "
            "reference draws that choose each tempering exponent and judge refits); no "
            "gradients. "
            "BlackJAX: per tempering step N (ESS solver) + N (HMC init, value and gradient) + "
            "N·10·5 (leapfrog, value and gradient) + N (reweighting); grads counts the "
            "value-and-gradient calls.",
            "- mean err / sd err: max over coordinates of |mean − true mean| / true sd and of "
            "|sd / true sd − 1| (funnel: first coordinate only). weight err: max |fraction of "
            "samples nearest each component mean − its weight|. modes: components with a "
            f"sample within {MODE_RADIUS:g}. "
            + (
                "Wall time of ours: its one call, compilation included (--one-call). "
                if args.one_call
                else "Wall time: second call (the first compiles); compile s: the first call, "
                "compilation plus one run."
            ),
            *refs,
        ]
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds, N=256, no d=100")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per run (default 5)")
    parser.add_argument("--out", default="docs/benchmarks_engine.md")
    parser.add_argument("--only", default=None, help="run targets whose name contains this")
    parser.add_argument("--skip", default=None, help="skip targets whose name contains this")
    parser.add_argument(
        "--one-call",
        action="store_true",
        help="time our first call (compilation included) instead of a second one",
    )
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    specs = benchmark_specs(args.quick or args.smoke)
    if args.only:
        specs = [s for s in specs if args.only in s.target.name]
    if args.skip:
        specs = [s for s in specs if args.skip not in s.target.name]
    elif args.smoke:
        specs = specs[:2]  # gaussian d=10, two-mode d=1
    if args.smoke:
        settings, seeds = {"ours": 64, "reference": 256}, 1
    elif args.quick:
        settings, seeds = {"ours": 256, "reference": 8000}, 2
    else:
        settings, seeds = {"ours": 512, "reference": 8000}, 5
    args.seeds = args.seeds or seeds

    rows, truths = [], {}
    for spec in specs:
        name = spec.target.name
        print(f"[{name}] reference answers", flush=True)
        truths[name] = truth(spec, settings["reference"])
        print(f"[{name}] ours", flush=True)
        runner = functools.partial(run_ours, compile_call=not args.one_call)
        ours = run_seeds("ours", runner, spec, truths[name], settings["ours"], args.seeds)
        evals = ours.get("evals", 0)
        n = matched_particles(spec, evals, settings["ours"]) if evals else settings["ours"]
        print(f"[{name}] blackjax (N={n} to match {evals:,.0f} evaluations)", flush=True)
        rows += [ours, run_seeds("blackjax", run_blackjax, spec, truths[name], n, args.seeds)]

    text = header(args, settings, truths) + "\n\n" + table(rows) + "\n"
    print("\n" + text)
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text)
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
