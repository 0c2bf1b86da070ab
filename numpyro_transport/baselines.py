"""BlackJAX's adaptive tempered SMC, tuned, as the baseline run side by side with AST.

:func:`blackjax_smc` is BlackJAX's adaptive tempered SMC with an HMC inner kernel, tuned
between tempering steps with ``blackjax.inner_kernel_tuning``. It tempers the geometric path
from the same Gaussian reference N(mean, L Lᵀ) our sampler starts from, so its log Ẑ estimates
the log Z of ``logdensity_fn`` and the two samplers are compared on the same problem. It is used
by :func:`numpyro_transport.compare` and by the benchmarks.
"""

import functools
import time

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
from blackjax.smc.resampling import systematic
from jax.scipy.linalg import solve_triangular

__all__ = ["blackjax_smc"]

TARGET_ACCEPTANCE = 0.65
# Stand-in for -inf in the log-likelihood: BlackJAX multiplies it by the temperature
# increment (0 · -inf = NaN), whereas 0 · -1e30 = 0 and δ · -1e30 underflows to weight 0.
_LOG_ZERO = -1e30


def _mvn_logpdf_fn(mean, scale_tril):
    """``x -> log N(x; mean, L Lᵀ)``, normalized.

    L⁻¹ is formed once: a triangular solve per particle under ``vmap`` is ~100x slower on CPU
    (d=5) than the matrix-vector product, and would bill the baseline for the reference.
    """
    dim = mean.shape[0]
    scale_tril_inv = solve_triangular(scale_tril, jnp.eye(dim, dtype=mean.dtype), lower=True)
    log_det = jnp.sum(jnp.log(jnp.abs(jnp.diagonal(scale_tril))))
    const = -log_det - 0.5 * dim * jnp.log(2 * jnp.pi)

    def logpdf(x):
        z = scale_tril_inv @ (x - mean)
        return -0.5 * jnp.sum(z**2) + const

    return logpdf


def _weighted_variance(particles, weights):
    mean = weights @ particles
    return weights @ (particles - mean) ** 2


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

    Path: prior π₀ = N(reference_mean, L Lᵀ) (normalized), likelihood ℓ(x) = log γ(x) − log π₀(x),
    so the tempered path ends at γ and Σ ``log_likelihood_increment`` estimates log Z. Non-finite
    ℓ(x) counts as -inf (weight 0; stored as -1e30 so that 0 · ℓ stays 0, see ``_LOG_ZERO``).

    Each tempering step (BlackJAX's order): choose the next temperature so the ESS of the
    incremental weights is ``target_ess · N``, resample (systematic), move every particle with
    ``num_mcmc_steps`` HMC steps of ``num_integration_steps`` leapfrog steps targeting the
    previous temperature, reweight. Tuning, via ``inner_kernel_tuning``, after each step:

    - inverse mass matrix = diagonal of the weighted particle variances (shared);
    - step size ← step size · exp(mean acceptance − 0.65), acceptance averaged over particles
      and MCMC steps (shared). Initial: variances of the reference, step size d^(-1/4).

    A ``lax.while_loop`` runs until the temperature reaches 1 or ``max_iterations``; the final
    weighted particles are resampled (systematic) to ``num_particles`` equal-weight samples.

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

    ``num_runs`` independent runs go in one vectorized call. Returns a dict with ``log_z``,
    ``samples`` ``(num_particles, d)``, ``num_steps``, ``tempering_param`` (1.0 unless
    ``max_iterations`` stopped the run early, in which case ``log_z`` is not log Z),
    ``step_size`` and ``acceptance_rate`` (last step's mean), each with a leading ``num_runs``
    axis when ``num_runs > 1``; the evaluation counts summed over runs; ``compile_time``
    (seconds, ahead-of-time compilation) and ``wall_time`` (seconds, the compiled run).
    """
    mean = jnp.asarray(reference_mean, dtype=jnp.result_type(float))
    scale_tril = jnp.asarray(reference_scale_tril, dtype=mean.dtype)
    dim = mean.shape[0]

    logprior_fn = _mvn_logpdf_fn(mean, scale_tril)

    def loglikelihood_fn(x):
        ll = logdensity_fn(x) - logprior_fn(x)
        return jnp.where(jnp.isfinite(ll), ll, _LOG_ZERO)

    hmc_step_fn = functools.partial(
        blackjax.hmc.build_kernel(), num_integration_steps=num_integration_steps
    )
    # A leading axis of size 1 marks a parameter as shared by all particles.
    initial_parameters = {
        "step_size": jnp.full((1,), dim**-0.25, dtype=mean.dtype),
        "inverse_mass_matrix": jnp.sum(scale_tril**2, axis=1)[None],
    }

    def tuned_smc(previous_step_size):
        # update_fn only sees (key, new SMC state, info), not the parameters it replaces, so
        # the previous step size is closed over; the algorithm is rebuilt at trace time.
        def update_fn(key, state, info):
            del key
            accept = jnp.nan_to_num(jnp.mean(info.update_info.acceptance_rate))
            variance = _weighted_variance(state.particles, state.weights)
            return {
                "step_size": previous_step_size * jnp.exp(accept - TARGET_ACCEPTANCE),
                "inverse_mass_matrix": jnp.maximum(variance, 1e-10)[None],
            }

        return blackjax.inner_kernel_tuning(
            smc_algorithm=blackjax.adaptive_tempered_smc,
            logprior_fn=logprior_fn,
            loglikelihood_fn=loglikelihood_fn,
            mcmc_step_fn=hmc_step_fn,
            mcmc_init_fn=blackjax.hmc.init,
            resampling_fn=systematic,
            mcmc_parameter_update_fn=update_fn,
            initial_parameter_value=initial_parameters,
            num_mcmc_steps=num_mcmc_steps,
            target_ess=target_ess,
        )

    def run(key):
        key_init, key_loop, key_final = jax.random.split(key, 3)
        eps = jax.random.normal(key_init, (num_particles, dim), dtype=mean.dtype)
        particles = mean + eps @ scale_tril.T
        state = tuned_smc(initial_parameters["step_size"]).init(particles)

        def cond(carry):
            _, state, _, i, _ = carry
            return (state.sampler_state.tempering_param < 1.0) & (i < max_iterations)

        def body(carry):
            key, state, log_z, i, _ = carry
            key, key_step = jax.random.split(key)
            algorithm = tuned_smc(state.parameter_override["step_size"])
            state, info = algorithm.step(key_step, state)
            increment = info.log_likelihood_increment
            increment = jnp.where(jnp.isnan(increment), -jnp.inf, increment)
            accept = jnp.mean(info.update_info.acceptance_rate)
            return key, state, log_z + increment, i + 1, accept

        zero = jnp.zeros((), mean.dtype)
        carry = (key_loop, state, zero, jnp.zeros((), jnp.int32), zero)
        _, state, log_z, num_steps, accept = jax.lax.while_loop(cond, body, carry)
        smc_state = state.sampler_state
        idx = systematic(key_final, smc_state.weights, num_particles)
        return {
            "log_z": log_z,
            "samples": smc_state.particles[idx],
            "num_steps": num_steps,
            "tempering_param": smc_state.tempering_param,
            "step_size": state.parameter_override["step_size"][0],
            "acceptance_rate": accept,
        }

    keys = jax.random.split(rng_key, num_runs) if num_runs > 1 else rng_key[None]
    start = time.perf_counter()
    compiled = jax.jit(jax.vmap(run)).lower(keys).compile()
    compile_time = time.perf_counter() - start
    start = time.perf_counter()
    out = jax.block_until_ready(compiled(keys))
    wall_time = time.perf_counter() - start

    num_steps = np.asarray(out["num_steps"])
    grads_per_step = num_particles * (1 + num_mcmc_steps * num_integration_steps)
    squeeze = (lambda a: a[0]) if num_runs == 1 else (lambda a: a)
    return {
        "log_z": squeeze(np.asarray(out["log_z"], dtype=np.float64)),
        "samples": squeeze(np.asarray(out["samples"])),
        "num_steps": squeeze(num_steps),
        "num_logdensity_evals": int(np.sum(num_steps * (grads_per_step + 2 * num_particles))),
        "num_grad_evals": int(np.sum(num_steps * grads_per_step)),
        "wall_time": wall_time,
        "compile_time": compile_time,
        "tempering_param": squeeze(np.asarray(out["tempering_param"])),
        "step_size": squeeze(np.asarray(out["step_size"])),
        "acceptance_rate": squeeze(np.asarray(out["acceptance_rate"])),
    }
