"""BlackJAX's adaptive tempered SMC, tuned, as the baseline run side by side with AST.

[`blackjax_smc`][numpyro_transport.baselines.blackjax_smc] is BlackJAX's adaptive tempered SMC with
an HMC inner kernel, tuned between tempering steps with ``blackjax.inner_kernel_tuning``
([`numpyro_transport.tempered`][numpyro_transport.tempered]). It tempers the geometric path from the
same Gaussian reference N(mean, L Lᵀ) our sampler starts from, so its log Ẑ estimates the log Z of
``logdensity_fn`` and the two samplers are compared on the same problem. It is used by
[`numpyro_transport.compare_samplers`][numpyro_transport.comparison.compare_samplers] and by the
benchmarks.
"""

import time

import jax
import numpy as np

from numpyro_transport.tempered import build_tempered_smc

__all__ = ["blackjax_smc"]


def blackjax_smc(
    rng_key,
    logdensity_fn,
    reference_mean,
    reference_scale_tril,
    *,
    num_particles=1000,
    target_ess=0.5,
    num_mcmc_steps=10,
    num_integration_steps=5,
    max_iterations=500,
    num_runs=1,
) -> dict:
    """BlackJAX adaptive tempered SMC from the Gaussian reference to ``logdensity_fn``.

    The ``"hmc"`` run of [`build_tempered_smc`][numpyro_transport.tempered.build_tempered_smc]
    (path, tuning and the treatment of non-finite values are described there), compiled ahead
    of time and timed.

    Cost counted per tempering step, N particles, M MCMC steps, K leapfrog steps (evaluations of
    ``logdensity_fn`` only; the reference density is not counted):

    - ``N`` values for the ESS solver (log-likelihood of the current particles);
    - ``N`` value-and-gradients for ``hmc.init`` at the resampled particles (BlackJAX recomputes
      them every step);
    - ``N · M · K`` value-and-gradients, one per leapfrog step (velocity Verlet reuses the
      gradient of the previous step; the Metropolis test uses the value returned with the
      final gradient, so it costs nothing extra);
    - ``N`` values for the new weights.

    ``num_grad_evals`` = T · N · (1 + M·K) counts the value-and-gradient calls;
    ``num_logdensity_evals`` = T · N · (3 + M·K) counts every point at which ``logdensity_fn``
    was evaluated, with or without its gradient (T = ``num_steps``).

    Args:
        rng_key: a JAX PRNG key, split into one key per run when ``num_runs > 1``.
        logdensity_fn: the unnormalized log-density of the target, ``x (d,) -> log γ(x)``.
        reference_mean: ``(d,)`` mean of the Gaussian reference the path starts from.
        reference_scale_tril: ``(d, d)`` lower-triangular scale L of the reference N(mean, L Lᵀ).
        num_particles: N, particles per run.
        target_ess: ESS fraction of the incremental weights that chooses each next temperature.
        num_mcmc_steps: M, HMC steps per particle and tempering step.
        num_integration_steps: K, leapfrog steps per HMC step.
        max_iterations: largest number of tempering steps; a run stopped by it has not reached
            the target.
        num_runs: independent runs, which go in one vectorized call.

    Returns:
        A dict with ``log_z``, ``samples`` ``(num_particles, d)``, ``num_steps``,
        ``tempering_param`` (1.0 unless ``max_iterations`` stopped the run early, in which case
        ``log_z`` is not log Z), ``step_size`` and ``acceptance_rate`` (last step's mean), each
        with a leading ``num_runs`` axis when ``num_runs > 1``; the evaluation counts
        ``num_grad_evals`` and ``num_logdensity_evals``, summed over runs; ``compile_time``
        (seconds, ahead-of-time compilation) and ``wall_time`` (seconds, the compiled run).
    """
    run = build_tempered_smc(
        logdensity_fn,
        reference_mean,
        reference_scale_tril,
        inner="hmc",
        num_particles=num_particles,
        target_ess=target_ess,
        num_mcmc_steps=num_mcmc_steps,
        num_integration_steps=num_integration_steps,
        max_iterations=max_iterations,
    )
    keys = jax.random.split(rng_key, num_runs) if num_runs > 1 else rng_key[None]
    start = time.perf_counter()
    compiled = jax.jit(jax.vmap(run)).lower(keys).compile()
    compile_time = time.perf_counter() - start
    start = time.perf_counter()
    out = jax.block_until_ready(compiled(keys))
    wall_time = time.perf_counter() - start

    num_steps = np.asarray(out.num_steps)
    grads_per_step = num_particles * (1 + num_mcmc_steps * num_integration_steps)
    squeeze = (lambda a: a[0]) if num_runs == 1 else (lambda a: a)
    return {
        "log_z": squeeze(np.asarray(out.log_z, dtype=np.float64)),
        "samples": squeeze(np.asarray(out.samples)),
        "num_steps": squeeze(num_steps),
        "num_logdensity_evals": int(np.sum(num_steps * (grads_per_step + 2 * num_particles))),
        "num_grad_evals": int(np.sum(num_steps * grads_per_step)),
        "wall_time": wall_time,
        "compile_time": compile_time,
        "tempering_param": squeeze(np.asarray(out.tempering_param)),
        "step_size": squeeze(np.asarray(out.step_size)),
        "acceptance_rate": squeeze(np.asarray(out.acceptance_rate)),
    }
