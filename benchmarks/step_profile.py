"""Where one transport step spends its time: target evaluations vs the sampler's own work.

    python -m benchmarks.step_profile [--particles 512]

For each target and inner-block setting, the parts of one step λ → λ + δ are jitted and timed
separately (best of 5 calls after compilation): the inner draws (the target's N·b·M
evaluations), the pooled drift estimate, the SMC kernel (move, draws, weights, resampling) and
the whole step (estimate and kernel, frozen: no CESS retries). ``max blocks`` preallocates the
inner draws; ``active`` blocks are evaluated; ``share`` is the target's part of the step.
"""

import argparse
import time

import jax
import jax.numpy as jnp

from benchmarks.logistic import logistic_regression
from numpyro_transport import drift, sweep, targets
from numpyro_transport.config import TransportConfig


def _estimate(rng_key, state, config):
    return drift.estimate(rng_key, state.draws, state.y, state.lam, state.num_blocks, config)


def best_time(fn, *args, repeats=5):
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return min(times)


def profile(target, num_particles, max_blocks, active):
    """Milliseconds of each part of one step at λ = 1 → 1 + δ."""
    config = TransportConfig(num_particles=num_particles, max_inner_blocks=max_blocks)
    logdensity, lam = target.logdensity_fn, 1.0
    key = jax.random.key(0)
    state = sweep.init(key, logdensity, target.dim, config)
    noise = state.draws.noise
    y = jax.random.normal(key, state.y.shape)
    draws = drift.draw(logdensity, noise, y, lam, active, False)
    state = state._replace(y=y, draws=draws, lam=jnp.asarray(lam), num_blocks=jnp.int32(active))
    kernel = sweep.build_kernel(logdensity, config)
    step = sweep._step(kernel, config)
    n_max = config.max_steps
    schedule = sweep.Schedule(  # a frozen step to λ + 0.1: no CESS retries in the timing
        jnp.full(n_max, lam + 0.1), jnp.full(n_max, active, jnp.int32), jnp.int32(1)
    )
    parts = {
        "target (draws)": (
            jax.jit(lambda y, b: drift.draw(logdensity, noise, y, lam, b, False)),
            (y, state.num_blocks),
        ),
        "estimate": (jax.jit(lambda k, s: _estimate(k, s, config)), (key, state)),
        "kernel": (
            jax.jit(lambda k, s, dr: kernel(k, s, dr, lam + 0.1, s.num_blocks)),
            (key, state, _estimate(key, state, config)),
        ),
        "step": (
            jax.jit(lambda k, s: step(k, s, 0, s.num_blocks, schedule, False)),
            (key, state),
        ),
    }
    return {name: 1e3 * best_time(fn, *args) for name, (fn, args) in parts.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particles", type=int, default=512)
    args = parser.parse_args(argv)
    cases = [
        targets.gaussian(jnp.zeros(50), jnp.eye(50), name="gaussian d=50"),
        logistic_regression(0, 200, 5),
        logistic_regression(0, 5000, 20),
    ]
    print(f"N = {args.particles}, M = 16, k = 16; ms per call, best of 5")
    print("| target | max blocks | active | target (draws) | estimate | kernel | step | share |")
    print("|---|---|---|---|---|---|---|---|")
    for target in cases:
        for max_blocks, active in ((1, 1), (4, 1), (4, 4)):
            t = profile(target, args.particles, max_blocks, active)
            share = t["target (draws)"] / t["step"]
            cells = " | ".join(
                f"{t[k]:.1f}" for k in ("target (draws)", "estimate", "kernel", "step")
            )
            print(
                f"| {target.name} | {max_blocks} | {active} | {cells} | {share:.0%} |", flush=True
            )


if __name__ == "__main__":
    main()
