"""Where a first ``MCMC.run`` spends its time before the first draw: set-up, pilot, compilation.

    python -m benchmarks.first_run [--chains 4] [--samples 1000]

Runs ``MCMC(AST(model), num_warmup=5)`` (defaults: ``num_particles="auto"``) and
``MCMC(NUTS(model), num_warmup=1000)`` on the non-centred eight schools, vectorized chains, each
in a fresh process, and prints per phase of AST's ``init`` (model set-up, the
``num_particles="auto"`` pilot, the chains' first states) and of the sampling loop: its wall
time, the number of XLA compilations and their seconds (JAX's ``backend_compile_duration``
events), next to NUTS's totals.
"""

import argparse
import functools
import json
import subprocess
import sys
import time

import numpy as np

_CHILD = "--child"


def _instrument(owner, name, phases, counter):
    original = getattr(owner, name)

    @functools.wraps(original)
    def timed(*args, **kwargs):
        start, count, seconds = time.perf_counter(), counter[0], counter[1]
        out = original(*args, **kwargs)
        phases.append((name, time.perf_counter() - start, counter[0] - count, counter[1] - seconds))
        return out

    setattr(owner, name, timed)


def _child(sampler: str, chains: int, samples: int) -> dict:
    import jax  # noqa: PLC0415 (the child process only)
    import numpyro.infer.mcmc as numpyro_mcmc  # noqa: PLC0415
    from jax import monitoring  # noqa: PLC0415
    from numpyro.infer import MCMC, NUTS  # noqa: PLC0415

    import numpyro_transport.kernel as kernel  # noqa: PLC0415
    from benchmarks.posteriordb.models import eight_schools_noncentered  # noqa: PLC0415

    counter = [0, 0.0]

    def listen(event, duration, **_):
        if event == "/jax/core/compile/backend_compile_duration":
            counter[0] += 1
            counter[1] += duration

    monitoring.register_event_duration_secs_listener(listen)
    phases = []
    for name in ("setup_model",):
        _instrument(kernel, name, phases, counter)
    _instrument(kernel.sizing, "choose_num_particles", phases, counter)
    _instrument(kernel.AST, "_init_state", phases, counter)
    _instrument(numpyro_mcmc, "fori_collect", phases, counter)
    y = np.array([28.0, 8, -3, 7, -1, 1, 18, 12])
    sigma = np.array([15.0, 10, 16, 11, 9, 11, 10, 18])
    if sampler == "ast":
        mcmc = MCMC(
            kernel.AST(eight_schools_noncentered),
            num_warmup=5,
            num_samples=samples,
            num_chains=chains,
            chain_method="vectorized",
            progress_bar=False,
        )
    else:
        mcmc = MCMC(
            NUTS(eight_schools_noncentered),
            num_warmup=1000,
            num_samples=samples,
            num_chains=chains,
            chain_method="vectorized",
            progress_bar=False,
        )
    start = time.perf_counter()
    mcmc.run(jax.random.key(0), y, sigma)
    jax.block_until_ready(mcmc.get_samples())
    wall = time.perf_counter() - start
    return dict(phases=phases, wall=wall, compilations=counter[0], compile_s=counter[1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument(_CHILD, default=None)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.chains, args.samples)))
        return
    rows = {}
    for sampler in ("ast", "nuts"):
        command = [
            sys.executable,
            "-m",
            "benchmarks.first_run",
            _CHILD,
            sampler,
            "--chains",
            str(args.chains),
            "--samples",
            str(args.samples),
        ]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        rows[sampler] = json.loads(out.strip().splitlines()[-1])
    print("| phase | wall s | compilations | compile s |\n|---|---|---|---|")
    for name, wall, count, seconds in rows["ast"]["phases"]:
        print(f"| AST {name} | {wall:.1f} | {count} | {seconds:.1f} |")
    for sampler in ("ast", "nuts"):
        r = rows[sampler]
        print(
            f"| **{sampler.upper()} whole run** | {r['wall']:.1f} | {r['compilations']} "
            f"| {r['compile_s']:.1f} |"
        )
    print(f"\nAST/NUTS compile seconds: {rows['ast']['compile_s'] / rows['nuts']['compile_s']:.2f}")


if __name__ == "__main__":
    main()
