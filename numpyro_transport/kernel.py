"""``AST``: annealed stochastic transport as a NumPyro MCMC kernel.

Each chain holds its own particle population in its state (as NumPyro's ``SA`` does), so chains
are independent and R̂ and ESS keep their meaning under every ``chain_method``.

- **Warm-up iterations** run adaptive sweeps (:mod:`numpyro_transport.warmup`): from a reference
  fitted to prior draws, each sweep refits the reference when that helps, tempering first when the
  reference is far from the posterior. The last warm-up sweep fixes the λ-grid and inner sizes.
- **Sampling iterations** run particle independent Metropolis–Hastings (Andrieu, Doucet &
  Holenstein 2010) with those settings frozen: a fresh sweep gives an unbiased Ẑ* and weighted
  particles; one particle θ* is drawn by weight and accepted with probability min(1, Ẑ*/Ẑ),
  where Ẑ is the estimate that came with the current draw. The chain targets the posterior
  exactly, for any number of particles.
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

from numpyro_transport import pimh, sizing
from numpyro_transport import warmup as _warmup
from numpyro_transport.config import TransportConfig
from numpyro_transport.model import flat_logdensity, laplace_reference, setup_model
from numpyro_transport.reference import Reference, broad, from_moments
from numpyro_transport.sweep import SweepRecord, empty_record, sweep, sweep_record

__all__ = ["AST", "ASTState"]

#: Seed of the λ = 0 pool that judges refits (common random numbers, shared by all chains).
POOL_SEED = 2**31 - 1
#: Seed of the pilot run of ``num_particles="auto"`` (shared by all chains and runs).
PILOT_SEED = 2**31 - 2
_pool_log_ratios = jax.jit(_warmup.pool_log_ratios, static_argnames=("logdensity_fn", "num"))


class ASTState(NamedTuple):
    """State of one AST chain.

    - **i** - iteration counter (warm-up while ``i < num_warmup``).
    - **z** - current draw, in unconstrained space (the sample field).
    - **potential_energy** - potential energy at ``z`` (ArviZ reports ``lp`` = −this).
    - **accept_prob** - this iteration's PIMH acceptance probability min(1, Ẑ*/Ẑ)
      (1 in warm-up; ArviZ reports ``acceptance_rate``).
    - **log_evidence** - log Ẑ* of this iteration's sweep (accepted or not).
    - **sweep_ess** - final ESS fraction 1/(NΣW²) of this iteration's sweep.
    - **num_sweep_steps** - steps K of this iteration's sweep.
    - **num_evaluations** - log-density evaluations of this iteration.
    - **warmup_evaluations** - log-density evaluations of the initialization and the warm-up
      iterations so far (the cost that the per-draw ``num_evaluations`` of a run leave out).
    - **chain_log_evidence** - log Ẑ that came with ``z`` (the PIMH state); −∞ during warm-up,
      so that the first sampling iteration accepts its frozen sweep's draw.
    - **warmup** - :class:`~numpyro_transport.warmup.WarmupState`: reference, grid, β.
    - **warmup_record**, **sample_record** - :class:`SweepRecord` of the first warm-up sweeps
      and of the latest sampling sweeps (a ring buffer).
    - **rng_key** - random key.
    """

    i: jax.Array
    z: dict
    potential_energy: jax.Array
    accept_prob: jax.Array
    log_evidence: jax.Array
    sweep_ess: jax.Array
    num_sweep_steps: jax.Array
    num_evaluations: jax.Array
    warmup_evaluations: jax.Array
    chain_log_evidence: jax.Array
    warmup: _warmup.WarmupState
    warmup_record: SweepRecord
    sample_record: SweepRecord
    rng_key: jax.Array


def _record(record: SweepRecord, slot, write, entry: SweepRecord):
    """Write the one-sweep ``entry`` into ``slot`` of ``record`` when ``write``."""
    slot = jnp.clip(slot, 0, record.iteration.shape[0] - 1)
    return jax.tree.map(lambda buf, v: jnp.where(write, buf.at[slot].set(v), buf), record, entry)


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

    Each iteration runs one sweep of N particles from a Gaussian reference to the posterior
    (:func:`~numpyro_transport.sweep.sweep`). Warm-up iterations adapt the reference, the
    λ-grid and the inner sizes; sampling iterations are particle independent Metropolis–Hastings
    steps with everything frozen, so the draws are exact for any N. An iteration costs about
    N·M·K log-density evaluations (no gradients); use few warm-up iterations (3–10).

    :param model: Python callable containing NumPyro primitives.
    :param potential_fn: potential energy (−log density) of an unconstrained pytree; then
        ``init_params`` is required and the reference is N(init_params, I) unless ``reference``.
    :param num_particles: N, particles per sweep; ``"auto"`` (default) chooses N at the first
        ``init`` from a pilot run so that one sweep's log Ẑ spreads by about 0.6
        (:mod:`~numpyro_transport.sizing`); the choice is kept in ``kernel.sizing``.
    :param reference: the first reference: ``None`` (default) for moments of prior draws;
        ``"laplace"`` for NumPyro's Laplace approximation (:func:`~numpyro_transport.model.
        laplace_reference`), for a unimodal posterior much narrower than its prior; or
        ``(mean, cov)`` over the flattened unconstrained latent vector.
    :param int num_prior_draws: prior draws for the first reference.
    :param float tempering_ess: warm-up tempers towards p^β·reference^(1−β) while importance
        sampling from the reference has an ESS fraction below this.
    :param int num_recorded_sweeps: sampling sweeps whose per-step diagnostics are kept
        (the latest ones) for :func:`~numpyro_transport.to_arviz`; up to 64 warm-up sweeps
        are kept too.
    :param options: other :class:`~numpyro_transport.TransportConfig` options.

    **Example**

    .. doctest::

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
        #: :class:`~numpyro_transport.sizing.Sizing` of ``num_particles="auto"``, once chosen.
        self.sizing = None
        self._setup = None
        self._sample_fn = None
        self._sample_fns = {}

    @property
    def model(self):
        return self._model

    @property
    def default_fields(self):
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
        return (
            f"acc. prob={float(state.accept_prob):.2f}, "
            f"log Z={float(state.log_evidence):.2f}, steps={int(state.num_sweep_steps)}"
        )

    def postprocess_fn(self, args, kwargs):
        if self._setup is None:
            return identity
        return self._setup.postprocess_fn_gen(*args, **kwargs)

    def _logdensity(self, model_args, model_kwargs, unravel):
        if self._setup is None:
            return flat_logdensity(self._potential_fn, unravel)
        potential = self._setup.potential_fn_gen(*model_args, **model_kwargs)
        return flat_logdensity(potential, unravel)

    def init(self, rng_key, num_warmup, init_params=None, model_args=(), model_kwargs=None):
        if not isinstance(num_warmup, int) or num_warmup < 1:
            raise ValueError(
                f"num_warmup={num_warmup!r}: AST needs at least 1 warm-up iteration, whose "
                "adaptive sweeps fit the reference and fix the λ-grid for sampling."
            )
        model_kwargs = model_kwargs or {}
        vectorized = not is_prng_key(rng_key)
        config = self.config
        with jax.ensure_compile_time_eval():  # under pmap, NumPyro traces init
            if self._model is not None:
                self._setup = setup_model(
                    self._model, model_args, model_kwargs, num_prior_draws=self._num_prior_draws
                )
                prototype, reference = self._setup.init_z, self._setup.reference
            elif init_params is None:
                raise ValueError(
                    "Valid value of `init_params` must be provided with `potential_fn`."
                )
            else:  # the reference is N(init_params, I), per chain
                prototype = jax.tree.map(lambda a: a[0], init_params) if vectorized else init_params
                reference = None
            flat, unravel = ravel_pytree(prototype)
            if self._reference == "laplace":
                reference = laplace_reference(self._model, model_args, model_kwargs)
            elif self._reference is not None:
                reference = from_moments(*self._reference)
            logdensity = self._logdensity(model_args, model_kwargs, unravel)
            first = reference if reference is not None else _around(flat)
            if self._auto and self.sizing is None:
                self.sizing = sizing.choose_num_particles(
                    jax.random.key(PILOT_SEED),
                    logdensity,
                    first,
                    config,
                    self._tempering_ess,
                    num_warmup,
                )
                self.config = config = replace(config, num_particles=self.sizing.num_particles)
            num_pool = config.num_particles * config.num_inner
            pool_key = jax.random.key(POOL_SEED)
            log_r = _pool_log_ratios(pool_key, logdensity, first, num_pool)
            if not isinstance(log_r, jax.core.Tracer):
                _check_start(np.asarray(log_r))
        num_records = (min(num_warmup, 64), self._num_recorded_sweeps)

        def init_one(key, params, log_r):
            flat = ravel_pytree(prototype if params is None else params)[0]
            if reference is None:  # each chain's own N(init_params, I)
                ref, log_r = _around(flat), None
            else:
                ref = reference
            start, _ = _warmup.init(pool_key, logdensity, ref, config, self._tempering_ess, log_r)
            zero = jnp.zeros(())
            no_evidence = jnp.full((), -jnp.inf, zero.dtype)  # typed as sample() returns it
            return ASTState(
                i=jnp.zeros((), jnp.int32),
                z=unravel(flat),
                potential_energy=-logdensity(flat),
                accept_prob=zero,
                log_evidence=no_evidence,
                sweep_ess=zero,
                num_sweep_steps=jnp.zeros((), jnp.int32),
                num_evaluations=jnp.asarray(num_pool, jnp.int32),
                warmup_evaluations=jnp.asarray(num_pool, jnp.int32),
                chain_log_evidence=no_evidence,
                warmup=start,
                warmup_record=empty_record(num_records[0], config),
                sample_record=empty_record(num_records[1], config),
                rng_key=key,
            )

        if vectorized:
            init_one = jax.vmap(init_one, in_axes=(0, None if init_params is None else 0, None))
        state = jax.jit(init_one)(rng_key, init_params, log_r)
        temperature = state.warmup.temperature
        if isinstance(temperature, jax.core.Tracer) or np.any(
            np.asarray(temperature) < _warmup.SMC_BELOW
        ):
            state = self._smc_reference(state, logdensity, vectorized)
        # One sample function per structure: a second run() with the same shapes reuses it.
        structure = (num_warmup, vectorized, jax.tree.structure(prototype), flat.shape)
        if structure not in self._sample_fns:
            sample_fn = self._build_sample_fn(num_warmup, unravel)
            if vectorized:
                sample_fn = jax.vmap(sample_fn, in_axes=(0, None, None))
            self._sample_fns[structure] = sample_fn
        self._sample_fn = self._sample_fns[structure]
        return state

    def _smc_reference(self, state: ASTState, logdensity, vectorized):
        """Chains whose first reference is far from the posterior (β̂ < ``SMC_BELOW``) adopt the
        moments of a tempered SMC run (:func:`~numpyro_transport.warmup.smc_reference`)."""
        config, tempering_ess = self.config, self._tempering_ess

        def refine(state: ASTState):
            key = jax.random.fold_in(state.rng_key, 1)
            w, _, spent = _warmup.smc_reference(
                key, state.warmup, logdensity, config, tempering_ess
            )
            needed = state.warmup.temperature < _warmup.SMC_BELOW
            return state._replace(
                warmup=jax.tree.map(lambda a, b: jnp.where(needed, a, b), w, state.warmup),
                warmup_evaluations=state.warmup_evaluations + jnp.where(needed, spent, 0),
            )

        return jax.jit(jax.vmap(refine) if vectorized else refine)(state)

    def _build_sample_fn(self, num_warmup: int, unravel):
        config, tempering_ess = self.config, self._tempering_ess

        def sample_fn(state: ASTState, model_args, model_kwargs):
            logdensity = self._logdensity(model_args, model_kwargs or {}, unravel)
            key, k_sweep, k_pimh = jax.random.split(state.rng_key, 3)
            warm = state.i < num_warmup
            final = state.i == num_warmup - 1
            w = state.warmup
            temperature = jnp.where(warm, _warmup.sweep_temperature(w, final), 1.0)
            result = sweep(
                k_sweep,
                logdensity,
                w.reference,
                config,
                w.schedule,
                temperature=temperature,
                adaptive=warm,
            )
            new_w, accepted = jax.lax.cond(
                warm,
                lambda: _warmup.adapt(w, result, logdensity, config, tempering_ess, final),
                lambda: (w, jnp.asarray(False)),
            )

            # PIMH (chain_log_evidence is −∞ in warm-up, so every finite draw is accepted).
            flat = ravel_pytree(state.z)[0]
            chain = pimh.PIMHState(flat, -state.potential_energy, state.chain_log_evidence)
            chain, info = pimh.accept(k_pimh, chain, result)

            entry = sweep_record(result, temperature, accepted, state.i)
            n_warm = state.warmup_record.iteration.shape[0]
            n_sample = state.sample_record.iteration.shape[0]
            warmup_record = _record(state.warmup_record, state.i, warm & (state.i < n_warm), entry)
            sample_record = _record(
                state.sample_record, (state.i - num_warmup) % n_sample, ~warm, entry
            )
            num_pool = config.num_particles * config.num_inner
            refits = jnp.where(warm, _warmup.REFIT_LEVELS * num_pool, 0)
            num_evaluations = (info.num_evaluations + refits).astype(jnp.int32)  # x64 too
            return ASTState(
                i=state.i + 1,
                z=unravel(chain.position),
                potential_energy=-chain.logdensity,
                accept_prob=info.acceptance_rate,
                log_evidence=info.log_evidence,
                sweep_ess=info.ess,
                num_sweep_steps=result.num_steps,
                num_evaluations=num_evaluations,
                warmup_evaluations=state.warmup_evaluations + jnp.where(warm, num_evaluations, 0),
                # A warm-up Ẑ comes from an adaptive sweep: the first PIMH step always accepts.
                chain_log_evidence=jnp.where(warm, -jnp.inf, chain.log_evidence),
                warmup=new_w,
                warmup_record=warmup_record,
                sample_record=sample_record,
                rng_key=key,
            )

        return sample_fn

    def sample(self, state, model_args, model_kwargs):
        """One iteration: an adaptive warm-up sweep, or a frozen sweep and a PIMH step.

        :param ASTState state: the current state.
        :param model_args: arguments of the model.
        :param model_kwargs: keyword arguments of the model.
        :return: the next :class:`ASTState`.
        """
        return self._sample_fn(state, model_args, model_kwargs)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_sample_fn"] = None
        state["_sample_fns"] = {}
        state["_setup"] = None
        return state
