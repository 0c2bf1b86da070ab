"""Throughput: AST (as a user calls it) against NUTS on the posteriordb posteriors, side by side.

    python -m benchmarks.throughput [--posteriors a,b] [--draws 1000] [--chains 4]
        [--out docs/benchmarks_throughput.md]

Both samplers run through :func:`numpyro_transport.compare_samplers` in one process on the same
model and data: NUTS with ``draws`` warm-up and ``draws`` draws per chain, AST with its defaults
(``MCMC(AST(model), num_warmup=5, ...)``: ``num_particles="auto"``, ``draws_per_sweep="auto"``)
and the same number of draws, 4 chains each (vectorized). The table gives, per sampler, the wall
and compile time, the min bulk and tail ESS, ESS/s with and without compilation, the max z-error
of the means against posteriordb's reference, evaluations and gradients, and the ratios
AST/NUTS; compilation is counted separately (``compile_s``) and together (``ESS/s incl.``).
``SYNTHETIC`` targets join the posteriordb ones with their exact posterior moments as reference.
"""

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import jax
import numpy as np
import numpyro

from benchmarks.posteriordb.models import POSTERIORS, Posterior
from benchmarks.posteriordb.run import Settings, _num, report_head, run_posterior
from numpyro_transport import targets

#: AST's warm-up iterations, as in compare_samplers()'s default.
AST_WARMUP = 5


def _flat_regression() -> Posterior:
    target = targets.flat_regression()
    return Posterior(
        "synthetic-flat_regression",
        target.model,
        lambda: {"x": target.x, "y": target.y},
        lambda: target.moments,
        lambda: None,
    )


#: Targets with closed-form posteriors that posteriordb lacks: a regression with flat priors on
#: an uncentred covariate (posterior correlation −0.999999).
SYNTHETIC = {p.name: p for p in [_flat_regression()]}


def _row(result, table_row):
    return dict(
        wall=result.wall_s,
        compile=result.compile_s,
        ess_bulk=result.ess_bulk_min,
        ess_tail=table_row.get("ess_tail_min"),
        ess_per_s=result.ess_per_s,
        ess_per_s_incl=None if result.ess_bulk_min is None else result.ess_bulk_min / result.wall_s,
        z_max=result.z_max,
        r_hat=result.r_hat_max,
        evaluations=table_row.get("evaluations"),
        gradients=table_row.get("gradients"),
        note=result.note,
    )


def measure(name, draws, chains, seed=0) -> dict:
    """``{"ast": row, "nuts": row}`` for posterior ``name``."""
    settings = Settings(
        num_samples=draws, num_warmup=draws, num_chains=chains, ast_warmup=AST_WARMUP
    )
    tables = {}
    results = run_posterior(
        name, settings, ("nuts", "ast"), seed=seed, tables=tables, posterior=SYNTHETIC.get(name)
    )
    return {r.sampler: _row(r, tables.get(r.sampler, {})) for r in results}


def _ratio(a, b):
    if a is None or b is None or not np.isfinite(a) or not np.isfinite(b) or b == 0:
        return None
    return a / b


def render(rows, command, elapsed, draws, chains) -> str:
    header = [
        "posterior",
        "sampler",
        "wall s",
        "compile s",
        "min bulk ESS",
        "min tail ESS",
        "ESS/s",
        "ESS/s incl. compile",
        "max z-error",
        "R̂ max",
        "evaluations",
        "gradients",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    ratios = []
    for name, by_sampler in rows.items():
        for sampler in ("ast", "nuts"):
            r = by_sampler[sampler]
            cells = [
                name,
                sampler.upper(),
                _num(r["wall"], ".1f"),
                _num(r["compile"], ".1f"),
                _num(r["ess_bulk"], ".0f"),
                _num(r["ess_tail"], ".0f"),
                _num(r["ess_per_s"], ".1f"),
                _num(r["ess_per_s_incl"], ".1f"),
                _num(r["z_max"], ".3f"),
                _num(r["r_hat"], ".3f"),
                _num(r["evaluations"], ".3g"),
                _num(r["gradients"], ".3g"),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        a, n = by_sampler["ast"], by_sampler["nuts"]
        ratios.append(
            (
                name,
                _ratio(a["ess_per_s"], n["ess_per_s"]),
                _ratio(a["ess_per_s_incl"], n["ess_per_s_incl"]),
                _ratio(a["compile"], n["compile"]),
                n["z_max"],
                a["z_max"],
            )
        )
    ratio_lines = [
        "| posterior | AST/NUTS ESS/s | AST/NUTS ESS/s incl. compile | AST/NUTS compile | "
        "NUTS accurate (z < 0.15) |",
        "|---|---|---|---|---|",
    ]
    accurate = []
    for name, run, incl, comp, nuts_z, _ in ratios:
        ok = nuts_z is not None and nuts_z < 0.15
        if ok and incl is not None:
            accurate.append(incl)
        ratio_lines.append(
            f"| {name} | {_num(run, '.2f')} | {_num(incl, '.2f')} | {_num(comp, '.2f')} | "
            f"{'yes' if ok else 'no'} |"
        )
    median = f"{np.median(accurate):.2f}" if accurate else "—"
    return "\n".join(
        [
            *report_head("Throughput: AST against NUTS on posteriordb", command, elapsed),
            f"- Machine: {platform.platform()}, `os.cpu_count()` = {os.cpu_count()}.",
            f"- Versions: Python {platform.python_version()}, jax {jax.__version__}, "
            f"numpyro {numpyro.__version__}.",
            f"- NUTS: {draws} warm-up + {draws} draws × {chains} chains (vectorized). AST: "
            f"`MCMC(AST(model), num_warmup={AST_WARMUP}, num_samples={draws}, "
            f"num_chains={chains})` with its defaults (vectorized); its evaluations include "
            "the `num_particles='auto'` pilot.",
            "- ESS/s: min bulk ESS over the wall time net of compilation; *incl. compile*: over "
            "the whole wall time. max z-error: max over posteriordb's scalars of |mean − "
            "reference mean| / reference sd.",
            "",
            *lines,
            "",
            "## Ratios",
            "",
            *ratio_lines,
            "",
            f"Median AST/NUTS ESS/s including compilation, over the posteriors where NUTS is "
            f"accurate: **{median}**.",
            "",
        ]
    )


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--posteriors", help="comma-separated names (default: the nine and the synthetic ones)"
    )
    parser.add_argument("--draws", type=int, default=1000, help="draws per chain")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--out", default="docs/benchmarks_throughput.md")
    args = parser.parse_args(argv)
    known = list(POSTERIORS) + list(SYNTHETIC)
    names = args.posteriors.split(",") if args.posteriors else known
    unknown = set(names) - set(known)
    if unknown:
        parser.error(f"unknown posteriors {sorted(unknown)}; choose among {known}")
    command = " ".join(["python -m benchmarks.throughput", *argv])
    start, rows = time.perf_counter(), {}
    for name in names:
        rows[name] = measure(name, args.draws, args.chains)
        for sampler, r in rows[name].items():
            print(
                f"{name:45s} {sampler:5s} ESS/s incl. {_num(r['ess_per_s_incl'], '.1f')} "
                f"compile {_num(r['compile'], '.1f')} z {_num(r['z_max'], '.3f')} {r['note']}",
                flush=True,
            )
        report = render(rows, command, time.perf_counter() - start, args.draws, args.chains)
        Path(args.out).write_text(report)  # kept after every posterior
    print(report)


if __name__ == "__main__":
    main()
