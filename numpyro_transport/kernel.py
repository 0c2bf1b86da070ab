"""``AST``: annealed stochastic transport as a NumPyro MCMC kernel.

Each chain holds its own particle population in its state (as NumPyro's ``SA`` does), so chains
are independent and R̂ and ESS keep their meaning under every ``chain_method``. Every iteration
is one [`numpyro_transport.driver.step`][numpyro_transport.driver.step]:

- **Warm-up iterations** are the driver's warm-up sweeps: from a reference fitted to prior draws,
  each sweep refits the reference when that helps, tempering while the reference is far from the
  posterior; the last warm-up sweep fixes the λ-grid and inner sizes.
- **Sampling iterations** run particle independent Metropolis–Hastings (Andrieu, Doucet &
  Holenstein 2010; [`numpyro_transport.pimh`][numpyro_transport.pimh]) on frozen sweeps: a fresh
  sweep gives an unbiased Ẑ* and weighted particles; one particle θ* is drawn by weight and accepted
  with probability min(1, Ẑ*/Ẑ), where Ẑ is the estimate that came with the current draw. The chain
  targets the posterior exactly, for any number of particles.
"""

import numbers
from dataclasses import replace
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro.infer.mcmc import MCMCKernel
from numpyro.util import identity, is_prng_key

from numpyro_transport import driver, pimh, records, sizing
from numpyro_transport.config import TransportConfig
from numpyro_transport.model import flat_logdensity, laplace_reference, setup_model
from numpyro_transport.reference import Reference, broad, from_moments
from numpyro_transport.warmup import pool_log_ratios

__all__ = ["AST", "ASTState"]

#: Seed of the λ = 0 pool that judges refits (common random numbers, shared by all chains).
POOL_SEED = 2**31 - 1
#: Seed of the pilot run of ``num_particles="auto"`` (shared by all chains and runs).
PILOT_SEED = 2**31 - 2
#: Warm-up sweeps whose per-step diagnostics are kept (the first ones).
MAX_WARMUP_RECORDS = 64
_pool_log_ratios = jax.jit(pool_log_ratios, static_argnames=("logdensity_fn", "num"))


class ASTState(NamedTuple):
    """State of one AST chain.

    Attributes:
        z: current draw, in unconstrained space (the sample field).
        potential_energy: potential energy at ``z`` (ArviZ reports ``lp`` = −this).
        accept_prob: this iteration's PIMH acceptance probability min(1, Ẑ*/Ẑ)
            (1 in warm-up; ArviZ reports ``acceptance_rate``).
        log_evidence: log Ẑ* of this iteration's sweep (accepted or not).
        sweep_ess: final ESS fraction 1/(NΣW²) of this iteration's sweep.
        num_sweep_steps: steps K of this iteration's sweep.
        num_evaluations: log-density evaluations of this iteration.
        chain_log_evidence: log Ẑ that came with ``z`` (the PIMH state); −∞ during warm-up,
            so that the first sampling iteration accepts its frozen sweep's draw.
        driver: [`DriverState`][numpyro_transport.driver.DriverState]: reference, grid, β̂, the
            iteration count and the warm-up's evaluations.
        warmup_record: [`SweepRecord`][numpyro_transport.records.SweepRecord] of the first warm-up
            sweeps.
        sample_record: [`SweepRecord`][numpyro_transport.records.SweepRecord] of the latest sampling
            sweeps (a ring buffer).
        rng_key: random key.
    """

    z: dict
    potential_energy: jax.Array
    accept_prob: jax.Array
    log_evidence: jax.Array
    sweep_ess: jax.Array
    num_sweep_steps: jax.Array
    num_evaluations: jax.Array
    chain_log_evidence: jax.Array
    driver: driver.DriverState
    warmup_record: records.SweepRecord
    sample_record: records.SweepRecord
    rng_key: jax.Array

    @property
    def i(self):
        """Iterations run (warm-up while ``i < num_warmup``)."""
        return self.driver.iteration

    @property
    def warmup_evaluations(self):
        """Log-density evaluations of the initialization and the warm-up iterations so far
        (the cost that the per-draw ``num_evaluations`` of a run leave out)."""
        return self.driver.num_evaluations


class _Target(NamedTuple):
    """What ``init`` learns of the model or potential: a prototype latent pytree, its
    ``unravel``, the shared first reference (``None``: each chain's N(init_params, I)) and the
    flat log-density."""

    prototype: dict
    unravel: object
    reference: Reference | None
    logdensity: object


def _around(flat) -> Reference:
    """N(flat, I): the reference of a ``potential_fn`` without a given one."""
    return broad(flat.shape[0])._replace(mean=flat)


def _check_start(log_r):
    if not np.any(np.isfinite(log_r)):
        raise ValueError(
            f"The potential is NaN or infinite at all {log_r.shape[0]} initial particles drawn "
            "from the reference Gaussian (moments of prior draws, or N(init_params, I) with a "
            "potential_fn). Check the model's support and its values at prior draws, or pass "
            "AST(..., reference=(mean, cov)) over the flattened unconstrained latent vector."
        )


class AST(MCMCKernel):
    """Annealed stochastic transport: an exact, gradient-free particle sampler with evidence.

    Each iteration is one sweep of N particles from a Gaussian reference to the posterior,
    run by [`numpyro_transport.driver.step`][numpyro_transport.driver.step]. Warm-up iterations
    adapt the reference, the λ-grid and the inner sizes (the driver's warm-up rule: ``num_warmup``
    counts every warm-up sweep, tempered ones included); sampling iterations are particle
    independent Metropolis–Hastings steps with everything frozen, so the draws are exact for any N.
    An iteration costs about N·M·K log-density evaluations (no gradients); use few warm-up
    iterations (3–10).

    Args:
        model: Python callable containing NumPyro primitives.
        potential_fn: potential energy (−log density) of an unconstrained pytree; then
            ``init_params`` is required and the reference is N(init_params, I) unless
            ``reference``.
        num_particles: N, particles per sweep; ``"auto"`` (default) chooses N at the first
            ``init`` from a pilot run so that one sweep's log Ẑ spreads by about 0.6
            ([`sizing`][numpyro_transport.sizing]); the choice is kept in ``kernel.sizing``.
        reference: the first reference: ``None`` (default) for moments of prior draws;
            ``"laplace"`` for NumPyro's Laplace approximation
            ([`laplace_reference`][numpyro_transport.model.laplace_reference]), for a unimodal
            posterior much narrower than its prior; or ``(mean, cov)`` over the flattened
            unconstrained latent vector.
        num_prior_draws: prior draws for the first reference.
        tempering_ess: warm-up tempers towards p^β·reference^(1−β) while importance sampling
            from the reference has an ESS fraction below this.
        num_recorded_sweeps: sampling sweeps whose per-step diagnostics are kept (the latest
            ones) for [`to_arviz`][numpyro_transport.inference_data.to_arviz]; up to 64 warm-up
            sweeps are kept too.
        **options: other [`TransportConfig`][numpyro_transport.TransportConfig] options.

    Examples:
        >>> import jax, numpyro, numpyro.distributions as dist
        >>> from numpyro.infer import MCMC
        >>> from numpyro_transport import AST
        >>> def model(y):  # log Z = log N(y; 0, 2)
        ...     mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        ...     numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> kernel = AST(model, num_particles=32, max_inner_blocks=1)
        >>> mcmc = MCMC(kernel, num_warmup=2, num_samples=20, progress_bar=False)
        >>> mcmc.run(jax.random.key(0), 0.0)
        >>> mcmc.get_samples()["mu"].shape
        (20,)
    """

    sample_field = "z"

    def __init__(
        self,
        model=None,
        potential_fn=None,
        *,
        num_particles: int | str = "auto",
        reference=None,
        num_prior_draws: int = 512,
        tempering_ess: float = 0.05,
        num_recorded_sweeps: int = 8,
        **options,
    ):
        if not (model is None) ^ (potential_fn is None):
            raise ValueError("Only one of `model` or `potential_fn` must be specified.")
        if not 0 < tempering_ess < 1:
            raise ValueError(f"tempering_ess={tempering_ess!r} must be in (0, 1).")
        if num_recorded_sweeps < 1:
            raise ValueError(f"num_recorded_sweeps={num_recorded_sweeps!r} must be at least 1.")
        if isinstance(reference, str) and (reference != "laplace" or model is None):
            raise ValueError(
                f"reference={reference!r}: the only named reference is 'laplace', and it needs "
                "a model; otherwise give None or (mean, cov)."
            )
        auto = isinstance(num_particles, str) and num_particles == "auto"
        if not auto and not isinstance(num_particles, numbers.Integral):
            raise ValueError(f"num_particles={num_particles!r} must be an integer or 'auto'.")
        if num_prior_draws < 2:
            raise ValueError(f"num_prior_draws={num_prior_draws!r} must be at least 2.")
        self._model = model
        self._potential_fn = potential_fn
        self._reference = reference
        self._num_prior_draws = num_prior_draws
        self._tempering_ess = tempering_ess
        self._num_recorded_sweeps = num_recorded_sweeps
        self.config = TransportConfig(
            num_particles=sizing.MIN_PARTICLES if auto else int(num_particles), **options
        )
        self._auto = auto
        #: [`Sizing`][numpyro_transport.sizing.Sizing] of ``num_particles="auto"``, once chosen.
        self.sizing = None
        self._setup = None
        self._sample_fn = None
        self._sample_fns = {}

    @property
    def model(self):
        """The NumPyro model, or ``None`` for a ``potential_fn``."""
        return self._model

    @property
    def default_fields(self):
        """The [`ASTState`][numpyro_transport.ASTState] fields that ``MCMC`` collects by default."""
        return (
            "z",
            "accept_prob",
            "log_evidence",
            "sweep_ess",
            "num_sweep_steps",
            "num_evaluations",
            "potential_energy",
        )

    def get_diagnostics_str(self, state):
        """The progress bar's text: acceptance probability, log Ẑ* and steps of the sweep.

        Args:
            state: the current [`ASTState`][numpyro_transport.ASTState].

        Returns:
            A short string for NumPyro's progress bar.
        """
        return (
            f"acc. prob={float(state.accept_prob):.2f}, "
            f"log Z={float(state.log_evidence):.2f}, steps={int(state.num_sweep_steps)}"
        )

    def postprocess_fn(self, args, kwargs):
        """The map from unconstrained draws to constrained and deterministic sites.

        Args:
            args: positional arguments of the model.
            kwargs: keyword arguments of the model.

        Returns:
            A function of one unconstrained draw; the identity for a ``potential_fn``.
        """
        if self._setup is None:
            return identity
        return self._setup.postprocess_fn_gen(*args, **kwargs)

    def _logdensity(self, model_args, model_kwargs, unravel):
        if self._setup is None:
            return flat_logdensity(self._potential_fn, unravel)
        potential = self._setup.potential_fn_gen(*model_args, **model_kwargs)
        return flat_logdensity(potential, unravel)

    def init(self, rng_key, num_warmup, init_params=None, model_args=(), model_kwargs=None):
        """Set up the model and every chain's first state, called by ``MCMC`` before sampling.

        With ``num_particles="auto"`` the pilot runs that choose N run here, at the first call.
        Chains whose first reference is far from the posterior run the driver's tempered SMC
        start ([`smc_reference`][numpyro_transport.driver.smc_reference]).

        Args:
            rng_key: a JAX PRNG key, or one key per chain (a batch) for vectorized chains.
            num_warmup: warm-up iterations (≥ 1), each a whole adaptive sweep.
            init_params: initial unconstrained positions (one per chain when vectorized);
                required with ``potential_fn``, whose reference is then N(init_params, I)
                unless the kernel was given one. With a model, the chains start at a prior
                draw unless it is given.
            model_args: positional arguments of the model.
            model_kwargs: keyword arguments of the model.

        Returns:
            The first [`ASTState`][numpyro_transport.ASTState] (batched for vectorized chains).
        """
        if not isinstance(num_warmup, int) or num_warmup < 1:
            raise ValueError(
                f"num_warmup={num_warmup!r}: AST needs at least 1 warm-up iteration, whose "
                "adaptive sweeps fit the reference and fix the λ-grid for sampling."
            )
        model_kwargs = model_kwargs or {}
        vectorized = not is_prng_key(rng_key)
        with jax.ensure_compile_time_eval():  # under pmap, NumPyro traces init
            target = self._target(init_params, model_args, model_kwargs, vectorized)
            flat = ravel_pytree(target.prototype)[0]
            first = target.reference if target.reference is not None else _around(flat)
            if self._auto and self.sizing is None:
                self._choose_num_particles(target.logdensity, first, num_warmup)
            num_pool = self.config.num_particles * self.config.num_inner
            log_r = _pool_log_ratios(jax.random.key(POOL_SEED), target.logdensity, first, num_pool)
            if not isinstance(log_r, jax.core.Tracer):
                _check_start(np.asarray(log_r))
        state = self._init_state(rng_key, init_params, target, num_warmup, log_r, vectorized)
        # One sample function per structure: a second run() with the same shapes reuses it.
        structure = (num_warmup, vectorized, jax.tree.structure(target.prototype), flat.shape)
        if structure not in self._sample_fns:
            sample_fn = self._build_sample_fn(num_warmup, target.unravel)
            if vectorized:
                sample_fn = jax.vmap(sample_fn, in_axes=(0, None, None))
            self._sample_fns[structure] = sample_fn
        self._sample_fn = self._sample_fns[structure]
        return state

    def _target(self, init_params, model_args, model_kwargs, vectorized) -> _Target:
        """Set up the model (or the potential and ``init_params``) and the first reference."""
        if self._model is not None:
            self._setup = setup_model(
                self._model, model_args, model_kwargs, num_prior_draws=self._num_prior_draws
            )
            prototype, reference = self._setup.init_z, self._setup.reference
        elif init_params is None:
            raise ValueError("Valid value of `init_params` must be provided with `potential_fn`.")
        else:  # the reference is N(init_params, I), per chain
            prototype = jax.tree.map(lambda a: a[0], init_params) if vectorized else init_params
            reference = None
        unravel = ravel_pytree(prototype)[1]
        if self._reference == "laplace":
            reference = laplace_reference(self._model, model_args, model_kwargs)
        elif self._reference is not None:
            reference = from_moments(*self._reference)
        logdensity = self._logdensity(model_args, model_kwargs, unravel)
        return _Target(prototype, unravel, reference, logdensity)

    def _choose_num_particles(self, logdensity, reference, num_warmup):
        """``num_particles="auto"``: pilot runs of the driver choose N, once per kernel."""
        self.sizing = sizing.choose_num_particles(
            jax.random.key(PILOT_SEED),
            logdensity,
            reference,
            self.config,
            self._tempering_ess,
            num_warmup,
        )
        self.config = replace(self.config, num_particles=self.sizing.num_particles)

    def _init_state(self, rng_key, init_params, target: _Target, num_warmup, log_r, vectorized):
        """Every chain's first state; chains whose first reference is far from the posterior
        then run the driver's tempered SMC start
        ([`smc_reference`][numpyro_transport.driver.smc_reference])."""
        config, tempering_ess = self.config, self._tempering_ess
        sizes = (min(num_warmup, MAX_WARMUP_RECORDS), self._num_recorded_sweeps)

        def init_one(key, params, log_r):
            flat = ravel_pytree(target.prototype if params is None else params)[0]
            if target.reference is None:  # each chain's own N(init_params, I)
                ref, log_r = _around(flat), None
            else:
                ref = target.reference
            pool_key = jax.random.key(POOL_SEED)
            start, _ = driver.init(pool_key, target.logdensity, ref, config, tempering_ess, log_r)
            zero = jnp.zeros(())
            no_evidence = jnp.full((), -jnp.inf, zero.dtype)  # typed as sample() returns it
            return ASTState(
                z=target.unravel(flat),
                potential_energy=-target.logdensity(flat),
                accept_prob=zero,
                log_evidence=no_evidence,
                sweep_ess=zero,
                num_sweep_steps=jnp.zeros((), jnp.int32),
                num_evaluations=start.num_evaluations,
                chain_log_evidence=no_evidence,
                driver=start,
                warmup_record=records.empty_record(sizes[0], config),
                sample_record=records.empty_record(sizes[1], config),
                rng_key=key,
            )

        def smc_start(state: ASTState):
            key = jax.random.fold_in(state.rng_key, 1)
            moved = driver.smc_reference(
                key, state.driver, target.logdensity, config, tempering_ess
            )
            return state._replace(driver=moved)

        if vectorized:
            init_one = jax.vmap(init_one, in_axes=(0, None if init_params is None else 0, None))
            smc_start = jax.vmap(smc_start)
        state = jax.jit(init_one)(rng_key, init_params, log_r)
        needed = driver.needs_smc_reference(state.driver)
        if isinstance(needed, jax.core.Tracer) or np.any(np.asarray(needed)):
            state = jax.jit(smc_start)(state)
        return state

    def _build_sample_fn(self, num_warmup: int, unravel):
        config, tempering_ess = self.config, self._tempering_ess

        def sample_fn(state: ASTState, model_args, model_kwargs):
            logdensity = self._logdensity(model_args, model_kwargs or {}, unravel)
            key, k_sweep, k_pimh = jax.random.split(state.rng_key, 3)
            new_driver, out = driver.step(
                k_sweep, state.driver, logdensity, config, tempering_ess, num_warmup
            )
            # PIMH (chain_log_evidence is −∞ in warm-up, so every finite draw is accepted).
            flat = ravel_pytree(state.z)[0]
            chain = pimh.PIMHState(flat, -state.potential_energy, state.chain_log_evidence)
            chain, info = pimh.accept(k_pimh, chain, out.result)
            warm, i = out.is_warmup, state.driver.iteration
            n_warm = state.warmup_record.iteration.shape[0]
            n_sample = state.sample_record.iteration.shape[0]
            return ASTState(
                z=unravel(chain.position),
                potential_energy=-chain.logdensity,
                accept_prob=info.acceptance_rate,
                log_evidence=info.log_evidence,
                sweep_ess=info.ess,
                num_sweep_steps=out.result.num_steps,
                num_evaluations=out.num_evaluations,
                # A warm-up Ẑ comes from an adaptive sweep: the first PIMH step always accepts.
                chain_log_evidence=jnp.where(warm, -jnp.inf, chain.log_evidence),
                driver=new_driver,
                warmup_record=records.write(
                    state.warmup_record, i, warm & (i < n_warm), out.record
                ),
                sample_record=records.write(
                    state.sample_record, (i - num_warmup) % n_sample, ~warm, out.record
                ),
                rng_key=key,
            )

        return sample_fn

    def sample(self, state, model_args, model_kwargs):
        """One iteration: an adaptive warm-up sweep, or a frozen sweep and a PIMH step.

        Args:
            state: the current [`ASTState`][numpyro_transport.ASTState].
            model_args: arguments of the model.
            model_kwargs: keyword arguments of the model.

        Returns:
            The next [`ASTState`][numpyro_transport.ASTState].
        """
        return self._sample_fn(state, model_args, model_kwargs)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_sample_fn"] = None
        state["_sample_fns"] = {}
        state["_setup"] = None
        return state
