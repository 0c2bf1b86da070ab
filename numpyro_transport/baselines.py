"""BlackJAX's adaptive tempered SMC and nested slice sampling: the baselines run side by side
with AST.

Both start from the Gaussian reference N(mean, L Lᵀ) our sampler starts from, and both estimate
the log Z of ``logdensity_fn``, so the three samplers are compared on the same problem:

- [`blackjax_smc`][numpyro_transport.baselines.blackjax_smc] is BlackJAX's adaptive tempered SMC
  with an HMC inner kernel, tuned between tempering steps with ``blackjax.inner_kernel_tuning``
  ([`numpyro_transport.tempered`][numpyro_transport.tempered]); it tempers the geometric path
  from the reference to the target.
- [`blackjax_nss`][numpyro_transport.baselines.blackjax_nss] is BlackJAX's nested slice sampling
  (``blackjax.nss``) with the reference as its prior and the target over the reference as its
  likelihood; it needs no gradients.

They are used by
[`numpyro_transport.compare_samplers`][numpyro_transport.comparison.compare_samplers] and by the
benchmarks.
"""

import time

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
from blackjax.ns.base import NSInfo
from blackjax.ns.utils import finalise, log_weights, sample
from jax.scipy.special import logsumexp

from numpyro_transport.tempered import _mvn_logpdf_fn, build_tempered_smc

__all__ = ["blackjax_smc", "blackjax_nss"]


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


def blackjax_nss(
    rng_key,
    logdensity_fn,
    reference_mean,
    reference_scale_tril,
    *,
    num_live=500,
    num_inner_steps=None,
    num_delete=None,
    dlogz=0.01,
    max_steps=2000,
    num_samples=1000,
    num_runs=1,
) -> dict:
    """BlackJAX nested slice sampling from the Gaussian reference as prior to ``logdensity_fn``.

    Nested sampling integrates a likelihood over a prior. The prior is the reference
    N(mean, L Lᵀ) that AST and [`blackjax_smc`][numpyro_transport.baselines.blackjax_smc] start
    from, and the log-likelihood is ``logdensity_fn`` minus the reference's log-density
    (non-finite values count as −∞), so the evidence ∫ prior · likelihood = ∫ γ is the same
    log Z. ``num_live`` points are drawn from the reference; each step deletes the
    ``num_delete`` of lowest likelihood and replaces each by ``num_inner_steps`` hit-and-run
    slice steps (stepping out, directions shaped by the live points' covariance) from a
    surviving point, within the deleted likelihood contour. A ``lax.while_loop`` runs until the
    live points' share of the evidence is small, log(1 + Ẑ_live / Ẑ) < ``dlogz``, or
    ``max_steps``; the dead points of each step are kept for the weights and draws. The runs
    are vectorized in one program, compiled ahead of time and timed.

    log Ẑ and its standard error are the mean and the standard deviation of log Ẑ over 100
    simulated prior-volume sequences (``blackjax.ns.utils.log_weights``), which count the live
    points at each death from the birth and death contours (Fowlie, Handley & Su 2021). BlackJAX's
    running integrator is not used for log Ẑ: it shrinks the volume by a factor e^(−1/n) at every
    deletion, which is wrong on a plateau of the likelihood. Where the target is non-finite on a
    share of the reference, the points at −∞ are a plateau (their replacements are born at −∞
    and land above all of them), and on a 3-d Gaussian target that is NaN on half the reference
    the integrator's log Ẑ was off by +0.18 ± 0.02 (12 runs of 200 live points), the simulated
    volumes' by +0.01 ± 0.03.

    Cost (evaluations of ``logdensity_fn``; the reference density is not counted): ``num_live``
    to start, then at every slice step 2 + E + S, where stepping out evaluates both ends of the
    initial bracket and one point per expansion (E of them) and shrinkage one point per draw
    (S, the last one accepted); BlackJAX reports E and S. ``num_logdensity_evals`` sums this
    over runs, steps, replacements and slice steps: it is what one sequential run costs. The
    vectorized program computes more, since a batched ``while_loop`` evaluates every lane until
    the slowest one finishes (a third more with ``num_delete = 3`` on a 2-d test target).

    Args:
        rng_key: a JAX PRNG key; split into the runs' keys and the keys of the volume
            simulation and the draws.
        logdensity_fn: the unnormalized log-density of the target, ``x (d,) -> log γ(x)``.
        reference_mean: ``(d,)`` mean of the Gaussian reference, the prior.
        reference_scale_tril: ``(d, d)`` lower-triangular scale L of the reference N(mean, L Lᵀ).
        num_live: live points per run.
        num_inner_steps: slice steps per replacement; ``None`` takes max(5, 3·d). BlackJAX
            asks for at least max(5, 2·d) for the new point to decorrelate from its start,
            fewer biasing log Z upward above d = 10; 3·d leaves a margin.
        num_delete: points deleted and replaced per step; ``None`` takes
            max(1, ``num_live`` // 10). The replacements run in parallel (vectorized), and
            deleting a tenth of the live points per step needs a tenth of the sequential steps
            of BlackJAX's default of 1 for about the same evaluations: the volume simulation
            counts n, n − 1, …, n − k + 1 live points through a batch of k deletions, and the
            price is that the replacements start from a live set short by up to a tenth.
        dlogz: the termination tolerance on log(1 + Ẑ_live / Ẑ).
        max_steps: largest number of steps (of ``num_delete`` deletions); a run stopped by it
            has ``converged`` False, and its log Ẑ includes the live points' share.
        num_samples: posterior draws per run, resampled from the dead and final live points by
            their weights (``blackjax.ns.utils.sample``).
        num_runs: independent runs, which go in one vectorized call.

    Returns:
        A dict with ``log_z``, ``log_z_se``, ``samples`` ``(num_samples, d)``, ``num_steps``
        and ``converged`` (the ``dlogz`` criterion was met before ``max_steps``), each with a
        leading ``num_runs`` axis when ``num_runs > 1``; the evaluation counts
        ``num_logdensity_evals`` (summed over runs) and ``num_grad_evals`` (0);
        ``compile_time`` (seconds, ahead-of-time compilation) and ``wall_time`` (seconds, the
        compiled run; the weights and draws computed afterwards are not timed).
    """
    mean = jnp.asarray(reference_mean, dtype=jnp.result_type(float))
    scale_tril = jnp.asarray(reference_scale_tril, dtype=mean.dtype)
    dim = mean.shape[0]
    num_inner_steps = max(5, 3 * dim) if num_inner_steps is None else num_inner_steps
    num_delete = max(1, num_live // 10) if num_delete is None else num_delete
    run = _nested_run(
        logdensity_fn, mean, scale_tril, num_live, num_inner_steps, num_delete, dlogz, max_steps
    )
    key_run, key_post = jax.random.split(rng_key)
    keys = jax.random.split(key_run, num_runs)
    start = time.perf_counter()
    compiled = jax.jit(jax.vmap(run)).lower(keys).compile()
    compile_time = time.perf_counter() - start
    start = time.perf_counter()
    live, dead, evals, num_steps, converged = jax.block_until_ready(compiled(keys))
    wall_time = time.perf_counter() - start

    num_steps = np.asarray(num_steps)
    per_run = [
        _nested_summary(key, live, dead, run_index, num_steps[run_index], num_samples)
        for run_index, key in enumerate(jax.random.split(key_post, num_runs))
    ]
    log_z, log_z_se, samples = (np.stack(a) for a in zip(*per_run, strict=True))
    squeeze = (lambda a: a[0]) if num_runs == 1 else (lambda a: a)
    return {
        "log_z": squeeze(log_z),
        "log_z_se": squeeze(log_z_se),
        "samples": squeeze(samples),
        "num_steps": squeeze(num_steps),
        "converged": squeeze(np.asarray(converged)),
        "num_logdensity_evals": num_runs * num_live + int(np.sum(np.asarray(evals, np.int64))),
        "num_grad_evals": 0,
        "wall_time": wall_time,
        "compile_time": compile_time,
    }


def _nested_run(
    logdensity_fn, mean, scale_tril, num_live, num_inner_steps, num_delete, dlogz, max_steps
):
    """``run(rng_key)``: one NSS run to termination, the dead particles of each step buffered."""
    logprior_fn = _mvn_logpdf_fn(mean, scale_tril)

    def loglikelihood_fn(x):
        ll = logdensity_fn(x) - logprior_fn(x)
        return jnp.where(jnp.isfinite(ll), ll, -jnp.inf)

    algorithm = blackjax.nss(
        logprior_fn, loglikelihood_fn, num_inner_steps=num_inner_steps, num_delete=num_delete
    )

    def unfinished(integrator):
        return ~(jnp.logaddexp(integrator.logZ, integrator.logZ_live) - integrator.logZ < dlogz)

    def run(rng_key):
        key_init, key_loop = jax.random.split(rng_key)
        eps = jax.random.normal(key_init, (num_live, mean.shape[0]), dtype=mean.dtype)
        state = algorithm.init(mean + eps @ scale_tril.T)
        dead = jax.tree.map(
            lambda a: jnp.zeros((max_steps, num_delete, *a.shape[1:]), a.dtype), state.particles
        )
        evals = jnp.zeros(max_steps, jnp.int32)

        def cond(carry):
            _, state, _, _, i = carry
            return unfinished(state.integrator) & (i < max_steps)

        def body(carry):
            key, state, dead, evals, i = carry
            key, key_step = jax.random.split(key)
            state, info = algorithm.step(key_step, state)
            dead = jax.tree.map(lambda buffer, x: buffer.at[i].set(x), dead, info.particles)
            # Per slice step: both ends of stepping_out's initial bracket, one point per
            # expansion and one per shrinkage draw.
            slices = info.update_info
            count = jnp.sum(2 + slices.num_expansions + slices.num_shrink)
            return key, state, dead, evals.at[i].set(count), i + 1

        carry = (key_loop, state, dead, evals, jnp.zeros((), jnp.int32))
        _, state, dead, evals, num_steps = jax.lax.while_loop(cond, body, carry)
        return state, dead, evals, num_steps, ~unfinished(state.integrator)

    return run


def _nested_summary(rng_key, live, dead, run_index, num_steps, num_samples):
    """One run's ``(log Ẑ, its standard error, (num_samples, d) draws)``, from its dead points
    and final live points, log Ẑ and its error as the mean and sd over simulated volumes."""
    key_volume, key_sample = jax.random.split(rng_key)
    live = jax.tree.map(lambda a: a[run_index], live)
    dead = jax.tree.map(lambda a: a[run_index, :num_steps].reshape(-1, *a.shape[3:]), dead)
    final = finalise(live, [NSInfo(dead, None)], update_info=False)
    log_z = np.asarray(logsumexp(log_weights(key_volume, final, shape=100), axis=0))
    samples = np.asarray(sample(key_sample, final, shape=num_samples).position)
    return float(np.mean(log_z)), float(np.std(log_z, ddof=1)), samples
