"""BlackJAX's adaptive tempered SMC from a Gaussian reference, its inner kernel tuned on the
particles.

The path runs from the reference π₀ = N(mean, L Lᵀ) to the unnormalized target γ along
π_β ∝ π₀^(1−β) γ^β: BlackJAX's prior is π₀ and its log-likelihood ℓ = log γ − log π₀, so the sum of
its ``log_likelihood_increment`` estimates log Z. Two inner kernels, tuned after every tempering
step with ``blackjax.inner_kernel_tuning``:

- ``"hmc"``: HMC, inverse mass matrix = the particles' weighted variances, step size
  ← step size · exp(acceptance − 0.65) (the baseline of
  [`numpyro_transport.baselines`][numpyro_transport.baselines]);
- ``"rmh"``: gradient-free random-walk Metropolis with proposal scale s·chol(Σ̂), Σ̂ the particles'
  weighted covariance and s ← s · exp(acceptance − 0.234), from s = 2.38/√d (the warm-up's
  first reference, [`numpyro_transport.warmup`][numpyro_transport.warmup]).

Non-finite ℓ counts as −∞ (weight 0), stored as −1e30 so that BlackJAX's 0 · ℓ stays 0.
"""

import functools
from typing import NamedTuple

import blackjax
import jax
import jax.numpy as jnp
from blackjax.mcmc.random_walk import build_additive_step, normal
from blackjax.smc.resampling import systematic
from jax.scipy.linalg import solve_triangular

from numpyro_transport.reference import weighted_moments

__all__ = ["TemperedResult", "build_tempered_smc", "INNER_KERNELS"]

INNER_KERNELS = ("hmc", "rmh")
_TARGET_ACCEPTANCE = {"hmc": 0.65, "rmh": 0.234}
# Stand-in for -inf in the log-likelihood: BlackJAX multiplies it by the temperature
# increment (0 · -inf = NaN), whereas 0 · -1e30 = 0 and δ · -1e30 underflows to weight 0.
_LOG_ZERO = -1e30


class TemperedResult(NamedTuple):
    """One run of [`build_tempered_smc`][numpyro_transport.tempered.build_tempered_smc].

    Attributes:
        log_z: Σ of the log-likelihood increments: log Ẑ once ``tempering_param`` is 1.
        particles: ``(N, d)`` final particles.
        weights: ``(N,)`` their normalized weights.
        samples: ``(N, d)`` systematic resample of the particles.
        num_steps: tempering steps T.
        tempering_param: final β (< 1 only if ``max_iterations`` stopped the run).
        step_size: the inner kernel's last step size (HMC) or scale s (RMH).
        acceptance_rate: the last step's mean acceptance.
    """

    log_z: jax.Array
    particles: jax.Array
    weights: jax.Array
    samples: jax.Array
    num_steps: jax.Array
    tempering_param: jax.Array
    step_size: jax.Array
    acceptance_rate: jax.Array


def _mvn_logpdf_fn(mean, scale_tril):
    """``x -> log N(x; mean, L Lᵀ)``, normalized.

    L⁻¹ is formed once: a triangular solve per particle under ``vmap`` is ~100x slower on CPU
    (d=5) than the matrix-vector product.
    """
    dim = mean.shape[0]
    scale_tril_inv = solve_triangular(scale_tril, jnp.eye(dim, dtype=mean.dtype), lower=True)
    log_det = jnp.sum(jnp.log(jnp.abs(jnp.diagonal(scale_tril))))
    const = -log_det - 0.5 * dim * jnp.log(2 * jnp.pi)

    def logpdf(x):
        z = scale_tril_inv @ (x - mean)
        return -0.5 * jnp.sum(z**2) + const

    return logpdf


_additive_step = build_additive_step()


def _inner(kind, dim, scale_tril, num_integration_steps):
    """(step_fn, init_fn, initial parameters, parameters from (particles, weights, new size))."""
    if kind == "hmc":
        step = functools.partial(
            blackjax.hmc.build_kernel(), num_integration_steps=num_integration_steps
        )
        initial = {"step_size": dim**-0.25, "inverse_mass_matrix": jnp.sum(scale_tril**2, 1)}

        def tuned(particles, weights, size):
            variance = jnp.diagonal(weighted_moments(particles, weights)[1])
            return {"step_size": size, "inverse_mass_matrix": jnp.maximum(variance, 1e-10)}

        return step, blackjax.hmc.init, initial, tuned
    size = 2.38 / dim**0.5
    initial = {"step_size": size, "scale_tril": size * scale_tril}

    def tuned(particles, weights, size):
        cov = weighted_moments(particles, weights)[1]
        jitter = 1e-8 * jnp.mean(jnp.diagonal(cov)) + 1e-30
        chol = jnp.linalg.cholesky(cov + jitter * jnp.eye(dim, dtype=cov.dtype))
        return {"step_size": size, "scale_tril": size * chol}

    def step(rng_key, state, logdensity_fn, step_size, scale_tril):
        del step_size  # folded into scale_tril
        return _additive_step(rng_key, state, logdensity_fn, normal(scale_tril))

    return step, blackjax.rmh.init, initial, tuned


def _tuned_smc(
    logprior_fn, loglikelihood_fn, kernel, target_acceptance, num_mcmc_steps, target_ess, dtype
):
    """The initial inner-kernel parameters, and ``previous step size -> algorithm``: BlackJAX's
    adaptive tempered SMC whose inner kernel is retuned on the particles after every step."""
    step_fn, init_fn, initial, tuned = kernel
    # A leading axis of size 1 marks a parameter as shared by all particles.
    shared = functools.partial(jax.tree.map, lambda a: jnp.asarray(a, dtype)[None])

    def tuned_smc(previous_size):
        # update_fn only sees (key, new SMC state, info), not the parameters it replaces, so
        # the previous size is closed over; the algorithm is rebuilt at trace time.
        def update_fn(key, state, info):
            del key
            accept = jnp.nan_to_num(jnp.mean(info.update_info.acceptance_rate))
            size = previous_size * jnp.exp(accept - target_acceptance)
            return shared(tuned(state.particles, state.weights, size))

        return blackjax.inner_kernel_tuning(
            smc_algorithm=blackjax.adaptive_tempered_smc,
            logprior_fn=logprior_fn,
            loglikelihood_fn=loglikelihood_fn,
            mcmc_step_fn=step_fn,
            mcmc_init_fn=init_fn,
            resampling_fn=systematic,
            mcmc_parameter_update_fn=update_fn,
            initial_parameter_value=shared(initial),
            num_mcmc_steps=num_mcmc_steps,
            target_ess=target_ess,
        )

    return initial, tuned_smc


def build_tempered_smc(
    logdensity_fn,
    reference_mean,
    reference_scale_tril,
    *,
    inner: str = "hmc",
    num_particles: int = 1000,
    target_ess: float = 0.5,
    num_mcmc_steps: int = 10,
    num_integration_steps: int = 5,
    max_iterations: int = 500,
):
    """``run(rng_key) -> TemperedResult``: adaptive tempered SMC from N(mean, L Lᵀ) to γ.

    Each tempering step (BlackJAX's order): choose the next β so that the incremental weights
    have ESS ``target_ess · N``, resample (systematic), move every particle with
    ``num_mcmc_steps`` steps of the ``inner`` kernel (``"hmc"`` with ``num_integration_steps``
    leapfrog steps, or ``"rmh"``) targeting the previous π_β, reweight, retune. A
    ``lax.while_loop`` runs until β = 1 or ``max_iterations``. ``run`` is pure and jit-able.

    Args:
        logdensity_fn: the unnormalized target ``x (d,) -> log γ(x)``; non-finite values
            count as weight 0.
        reference_mean: ``(d,)`` mean of the reference π₀.
        reference_scale_tril: ``(d, d)`` lower-triangular scale L of π₀ = N(mean, L Lᵀ).
        inner: the inner kernel, ``"hmc"`` or ``"rmh"`` (see the module).
        num_particles: N.
        target_ess: ESS fraction of the incremental weights that chooses each next β.
        num_mcmc_steps: inner-kernel steps per particle and tempering step.
        num_integration_steps: leapfrog steps per HMC step (``"hmc"`` only).
        max_iterations: largest number of tempering steps.

    Returns:
        ``run(rng_key) -> TemperedResult``, one whole run.
    """
    if inner not in INNER_KERNELS:
        raise ValueError(f"inner={inner!r} must be one of {INNER_KERNELS}.")
    mean = jnp.asarray(reference_mean, dtype=jnp.result_type(float))
    scale_tril = jnp.asarray(reference_scale_tril, dtype=mean.dtype)
    dim = mean.shape[0]
    logprior_fn = _mvn_logpdf_fn(mean, scale_tril)

    def loglikelihood_fn(x):
        ll = logdensity_fn(x) - logprior_fn(x)
        return jnp.where(jnp.isfinite(ll), ll, _LOG_ZERO)

    initial, tuned_smc = _tuned_smc(
        logprior_fn,
        loglikelihood_fn,
        _inner(inner, dim, scale_tril, num_integration_steps),
        _TARGET_ACCEPTANCE[inner],
        num_mcmc_steps,
        target_ess,
        mean.dtype,
    )

    def run(rng_key) -> TemperedResult:
        key_init, key_loop, key_final = jax.random.split(rng_key, 3)
        eps = jax.random.normal(key_init, (num_particles, dim), dtype=mean.dtype)
        state = tuned_smc(initial["step_size"]).init(mean + eps @ scale_tril.T)

        def cond(carry):
            _, state, _, i, _ = carry
            return (state.sampler_state.tempering_param < 1.0) & (i < max_iterations)

        def body(carry):
            key, state, log_z, i, _ = carry
            key, key_step = jax.random.split(key)
            algorithm = tuned_smc(state.parameter_override["step_size"][0])
            state, info = algorithm.step(key_step, state)
            increment = info.log_likelihood_increment
            increment = jnp.where(jnp.isnan(increment), -jnp.inf, increment)
            accept = jnp.mean(info.update_info.acceptance_rate)
            return key, state, log_z + increment, i + 1, accept

        zero = jnp.zeros((), mean.dtype)
        carry = (key_loop, state, zero, jnp.zeros((), jnp.int32), zero)
        _, state, log_z, num_steps, accept = jax.lax.while_loop(cond, body, carry)
        smc = state.sampler_state
        return TemperedResult(
            log_z=log_z,
            particles=smc.particles,
            weights=smc.weights,
            samples=smc.particles[systematic(key_final, smc.weights, num_particles)],
            num_steps=num_steps,
            tempering_param=smc.tempering_param,
            step_size=state.parameter_override["step_size"][0],
            acceptance_rate=accept,
        )

    return run
