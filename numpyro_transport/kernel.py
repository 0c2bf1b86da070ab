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

import contextlib
import functools
from dataclasses import replace
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro.infer.mcmc import MCMCKernel
from numpyro.util import identity, is_prng_key

from numpyro_transport import driver, pimh, progress_bar, records, sizing
from numpyro_transport.config import TransportConfig
from numpyro_transport.model import flat_logdensity, setup_model
from numpyro_transport.reference import Reference, broad, from_moments
from numpyro_transport.validation import (
    boolean,
    check_logdensity,
    check_reference,
    integer,
    real,
)
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
        i: iterations run (warm-up while ``i < num_warmup``).
        z: current draw, in unconstrained space (the sample field).
        potential_energy: potential energy at ``z`` (ArviZ reports ``lp`` = −this).
        accept_prob: PIMH acceptance probability min(1, Ẑ*/Ẑ) of the latest proposed sweep
            (1 in warm-up; ArviZ reports ``acceptance_rate``); an iteration that only
            refreshes the draw repeats it, so its mean over a run is the proposals' mean.
        log_evidence: log Ẑ* of the latest proposed sweep (accepted or not), repeated like
            ``accept_prob``; ``new_sweep`` marks the iterations that proposed it.
        sweep_ess: final ESS fraction 1/(NΣW²) of the latest proposed sweep.
        num_sweep_steps: steps K of the latest proposed sweep.
        num_evaluations: log-density evaluations of this iteration (0 for a refresh).
        new_sweep: whether this iteration ran a sweep (a warm-up sweep or a PIMH proposal);
            the others draw a new particle from the chain's particle system.
        draws_per_sweep: draws each sampling sweep serves (see
            [`draws_for`][numpyro_transport.kernel.draws_for]); 0 during the warm-up of
            ``draws_per_sweep="auto"``, which its last iteration sets.
        chain: the PIMH chain, [`PIMHState`][numpyro_transport.pimh.PIMHState]: the accepted
            sweep's weighted particles and the index of ``z`` among them; its log Ẑ is −∞
            during warm-up, so that the first sampling iteration accepts its frozen sweep.
        driver: [`DriverState`][numpyro_transport.driver.DriverState]: reference, grid, β̂, the
            iteration count and the warm-up's evaluations.
        warmup_record: [`SweepRecord`][numpyro_transport.records.SweepRecord] of the first warm-up
            sweeps.
        sample_record: [`SweepRecord`][numpyro_transport.records.SweepRecord] of the latest sampling
            sweeps (a ring buffer).
        rng_key: random key.
    """

    i: jax.Array
    z: dict
    potential_energy: jax.Array
    accept_prob: jax.Array
    log_evidence: jax.Array
    sweep_ess: jax.Array
    num_sweep_steps: jax.Array
    num_evaluations: jax.Array
    new_sweep: jax.Array
    draws_per_sweep: jax.Array
    chain: pimh.PIMHState
    driver: driver.DriverState
    warmup_record: records.SweepRecord
    sample_record: records.SweepRecord
    rng_key: jax.Array

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


def draws_for(sweep_ess, num_particles: int):
    """Draws per sampling sweep: the sweep's effective sample size, N·ESS, in [1, N].

    r index refreshes of one particle system carry the information of r·E/(r + E) independent
    draws, where E is the system's effective number of independent draws (about N·ESS). With
    r = E a sweep serves half of what it holds, where a plain PIMH step serves one draw; r
    refreshes cost r categorical draws and no target evaluation. More refreshes gain at most
    twice as much, for more memory and fewer proposals in a run of ``num_samples`` draws (the
    chain's moves between systems).

    Args:
        sweep_ess: the final ESS fraction 1/(NΣW²) of the last warm-up sweep.
        num_particles: N.

    Returns:
        The number of draws, an int32 in [1, N] (1 if the ESS is not finite).
    """
    draws = jnp.round(jnp.where(jnp.isfinite(sweep_ess), sweep_ess, 0.0) * num_particles)
    return jnp.clip(draws, 1, num_particles).astype(jnp.int32)


def _is_proposal(i, draws_per_sweep, num_warmup: int):
    """Whether iteration ``i`` runs a sweep: every warm-up iteration, then every
    ``draws_per_sweep``-th."""
    return (i < num_warmup) | ((i - num_warmup) % jnp.maximum(draws_per_sweep, 1) == 0)


def _around(flat) -> Reference:
    """N(flat, I): the reference of a ``potential_fn`` without a given one."""
    return broad(flat.shape[0])._replace(mean=flat)


class AST(MCMCKernel):
    """Annealed stochastic transport: an exact, gradient-free particle sampler with evidence.

    A sweep moves N particles from a Gaussian reference to the posterior
    ([`numpyro_transport.driver.step`][numpyro_transport.driver.step]). Every warm-up iteration
    runs one, adapting the reference, the λ-grid and the inner sizes (the driver's warm-up rule:
    ``num_warmup`` counts every warm-up sweep, tempered ones included). Sampling iterations are
    particle independent Metropolis–Hastings with everything frozen: every ``draws_per_sweep``-th
    iteration proposes a fresh sweep's weighted particles (about N·M·K log-density evaluations,
    no gradients), and every iteration draws the next particle from the accepted ones by weight
    (no evaluation), so the draws are exact for any N ([`pimh`][numpyro_transport.pimh]). Use few
    warm-up iterations (3–10).

    Args:
        model: Python callable containing NumPyro primitives.
        potential_fn: potential energy (−log density) of an unconstrained pytree; then
            ``init_params`` is required and the reference is N(init_params, I) unless
            ``reference``.
        num_particles: N, particles per sweep; ``"auto"`` (default) chooses N at the first
            ``init`` from a pilot run so that one sweep's log Ẑ spreads by about 0.6
            ([`sizing`][numpyro_transport.sizing]); the choice is kept in ``kernel.sizing``.
        reference: the first reference: ``None`` (default) for moments of prior draws (with
            improper priors, the Laplace approximation where it is finite);
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
        draws_per_sweep: draws each sampling sweep serves; ``"auto"`` (default) takes the last
            warm-up sweep's effective sample size
            ([`draws_for`][numpyro_transport.kernel.draws_for]; under
            ``chain_method="vectorized"`` the smallest over the chains); 1 is plain PIMH.
        progress_bar: print what ``init`` does (model set-up, the pilot's sweeps in a bar,
            the chosen N, compilation) to stderr from its first second; NumPyro's own bar
            (``MCMC(..., progress_bar=...)``) shows the iterations. Nothing is printed under
            ``chain_method="parallel"``, where NumPyro traces ``init``.
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
        draws_per_sweep: int | str = "auto",
        progress_bar: bool = True,
        **options,
    ):
        if not (model is None) ^ (potential_fn is None):
            raise ValueError("Only one of `model` or `potential_fn` must be specified.")
        real("tempering_ess", tempering_ess, 0, 1, open_low=True, open_high=True)
        integer("num_recorded_sweeps", num_recorded_sweeps)
        integer("num_prior_draws", num_prior_draws, 2)
        if isinstance(reference, str) and (reference != "laplace" or model is None):
            raise ValueError(
                f"reference={reference!r}: the only named reference is 'laplace', and it needs "
                "a model; otherwise give None or (mean, cov)."
            )
        auto = isinstance(num_particles, str) and num_particles == "auto"
        if isinstance(num_particles, str) and not auto:
            raise ValueError(f"num_particles={num_particles!r} must be an integer or 'auto'.")
        if draws_per_sweep != "auto":
            integer("draws_per_sweep", draws_per_sweep)
        self._progress_bar = boolean("progress_bar", progress_bar)
        self._model = model
        self._potential_fn = potential_fn
        self._reference = reference
        self._num_prior_draws = num_prior_draws
        self._tempering_ess = tempering_ess
        self._num_recorded_sweeps = num_recorded_sweeps
        self._draws_per_sweep = draws_per_sweep
        self.config = TransportConfig.from_options(
            "AST", num_particles=sizing.MIN_PARTICLES if auto else num_particles, **options
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
            "new_sweep",
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
        # Under pmap NumPyro traces init: the set-up and the pilot need concrete values. Only
        # then, since it also folds every constant of the jitted programs eagerly (one small
        # compilation each).
        traced = isinstance(rng_key, jax.core.Tracer)
        show = self._progress_bar and not traced
        if show:
            what = "the model" if self._model is not None else "the potential"
            progress_bar.status(f"AST: setting up {what} and its first reference")
        with jax.ensure_compile_time_eval() if traced else contextlib.nullcontext():
            target = self._target(init_params, model_args, model_kwargs, vectorized)
            flat = ravel_pytree(target.prototype)[0]
            first = target.reference if target.reference is not None else _around(flat)
            if self._auto and self.sizing is None:
                self._choose_num_particles(target.logdensity, first, num_warmup, show)
            num_pool = self.config.num_particles * self.config.num_inner
            log_r = _pool_log_ratios(jax.random.key(POOL_SEED), target.logdensity, first, num_pool)
            if not isinstance(log_r, jax.core.Tracer):
                driver.check_start(
                    np.asarray(log_r),
                    "potential",
                    "The reference is the moments of prior draws, or N(init_params, I) with a "
                    "potential_fn. Check the model's support and its values at prior draws, or "
                    "pass AST(..., reference=(mean, cov)) over the flattened unconstrained latent "
                    "vector.",
                )
        state = self._init_state(rng_key, init_params, target, num_warmup, log_r, vectorized)
        if show:
            progress_bar.status(
                "AST: compiling the sampling loop (about twice a sweep's compilation), then "
                f"{num_warmup} warm-up sweeps"
            )
        # One sample function per structure: a second run() with the same shapes reuses it.
        structure = (num_warmup, vectorized, jax.tree.structure(target.prototype), flat.shape)
        if structure not in self._sample_fns:
            sample_fn = self._build_sample_fn(num_warmup, target.unravel, vectorized)
            self._sample_fns[structure] = sample_fn
        self._sample_fn = self._sample_fns[structure]
        return state

    def _target(self, init_params, model_args, model_kwargs, vectorized) -> _Target:
        """Set up the model (or the potential and ``init_params``) and the first reference."""
        if self._model is not None:
            self._setup = setup_model(
                self._model,
                model_args,
                model_kwargs,
                num_prior_draws=self._num_prior_draws,
                reference=self._reference,
            )
            prototype, reference = self._setup.init_z, self._setup.reference
        elif init_params is None:
            raise ValueError("Valid value of `init_params` must be provided with `potential_fn`.")
        else:  # the reference is N(init_params, I), per chain
            prototype = jax.tree.map(lambda a: a[0], init_params) if vectorized else init_params
            reference = None
        flat, unravel = ravel_pytree(prototype)
        dim = flat.shape[0]
        if self._reference is not None and self._model is None:  # a model's set-up took it
            reference = from_moments(*check_reference(*self._reference, dim))
        logdensity = self._logdensity(model_args, model_kwargs, unravel)
        if self._model is None:
            check_logdensity(lambda u: -self._potential_fn(unravel(u)), dim, "potential_fn")
        return _Target(prototype, unravel, reference, logdensity)

    def _choose_num_particles(self, logdensity, reference, num_warmup, progress):
        """``num_particles="auto"``: pilot runs of the driver choose N, once per kernel."""
        if progress:
            progress_bar.status(
                "AST: num_particles='auto': pilot runs choose N (the first sweep compiles, a "
                "few seconds)"
            )
        self.sizing = sizing.choose_num_particles(
            jax.random.key(PILOT_SEED),
            logdensity,
            reference,
            self.config,
            self._tempering_ess,
            num_warmup,
            progress,
        )
        self.config = replace(self.config, num_particles=self.sizing.num_particles)
        if progress:
            chosen = self.sizing
            progress_bar.status(
                f"AST: N = {chosen.num_particles} particles (pilot at N = "
                f"{chosen.pilot_particles}: sd of log Z {chosen.pilot_log_evidence_sd:.2f})"
            )

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
            logdensity = target.logdensity(flat)
            # 0 until the warm-up sets "auto" (data, not a Python branch: one compiled program).
            fixed = 0 if self._draws_per_sweep == "auto" else self._draws_per_sweep
            return ASTState(
                i=jnp.zeros((), jnp.int32),
                z=target.unravel(flat),
                potential_energy=-logdensity,
                accept_prob=zero,
                log_evidence=no_evidence,
                sweep_ess=zero,
                num_sweep_steps=jnp.zeros((), jnp.int32),
                num_evaluations=start.num_evaluations,
                new_sweep=jnp.zeros((), bool),
                draws_per_sweep=jnp.asarray(fixed, jnp.int32),
                chain=pimh.init(flat, logdensity, config.num_particles),
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

    def _build_sample_fn(self, num_warmup: int, unravel, vectorized: bool):
        """The sample function: a sweep or a refresh, chosen once per iteration (for all chains
        under ``vectorized``, from the shared iteration count, so that ``lax.cond`` runs one
        branch)."""
        propose = functools.partial(self._propose, num_warmup=num_warmup, unravel=unravel)
        refresh = functools.partial(self._refresh, unravel=unravel)
        if not vectorized:

            def sample_fn(state: ASTState, model_args, model_kwargs):
                due = _is_proposal(state.i, state.draws_per_sweep, num_warmup)
                # The model's arguments are closed over, not operands: they may hold shapes.
                return jax.lax.cond(
                    due,
                    lambda s: propose(s, model_args, model_kwargs),
                    lambda s: refresh(s, model_args, model_kwargs),
                    state,
                )

            return sample_fn
        propose = jax.vmap(propose, in_axes=(0, None, None))
        refresh = jax.vmap(refresh, in_axes=(0, None, None))

        def sample_fn(state: ASTState, model_args, model_kwargs):
            due = _is_proposal(state.i[0], state.draws_per_sweep[0], num_warmup)
            state = jax.lax.cond(
                due,
                lambda s: propose(s, model_args, model_kwargs),
                lambda s: refresh(s, model_args, model_kwargs),
                state,
            )
            shared = jnp.full_like(state.draws_per_sweep, jnp.min(state.draws_per_sweep))
            return state._replace(draws_per_sweep=shared)

        return sample_fn

    def _propose(self, state: ASTState, model_args, model_kwargs, *, num_warmup, unravel):
        """An iteration with a sweep: a warm-up sweep, or a frozen sweep proposed to PIMH."""
        config = self.config
        logdensity = self._logdensity(model_args, model_kwargs or {}, unravel)
        key, k_sweep, k_pimh = jax.random.split(state.rng_key, 3)
        new_driver, out = driver.step(
            k_sweep, state.driver, logdensity, config, self._tempering_ess, num_warmup
        )
        # In warm-up the chain's log Ẑ is −∞, so every finite proposal is accepted.
        chain, info = pimh.propose(k_pimh, state.chain, out.result)
        warm, i = out.is_warmup, state.i
        # A warm-up Ẑ comes from an adaptive sweep: the first sampling proposal replaces it.
        system = chain.system
        chain = chain._replace(
            system=system._replace(log_evidence=jnp.where(warm, -jnp.inf, system.log_evidence))
        )
        draws = state.draws_per_sweep
        chosen = draws_for(info.ess, config.num_particles)
        draws = jnp.where((i == num_warmup - 1) & (draws == 0), chosen, draws)
        n_warm = state.warmup_record.iteration.shape[0]
        n_sample = state.sample_record.iteration.shape[0]
        proposal = (i - num_warmup) // jnp.maximum(draws, 1)
        return ASTState(
            i=i + 1,
            z=unravel(chain.position),
            potential_energy=-chain.logdensity,
            accept_prob=info.acceptance_rate,
            log_evidence=info.log_evidence,
            sweep_ess=info.ess,
            num_sweep_steps=out.result.num_steps,
            num_evaluations=out.num_evaluations,
            new_sweep=jnp.ones((), bool),
            draws_per_sweep=draws,
            chain=chain,
            driver=new_driver,
            warmup_record=records.write(state.warmup_record, i, warm & (i < n_warm), out.record),
            sample_record=records.write(
                state.sample_record, proposal % n_sample, ~warm, out.record
            ),
            rng_key=key,
        )

    @staticmethod
    def _refresh(state: ASTState, model_args, model_kwargs, *, unravel):
        """An iteration without a sweep: the next draw from the chain's particle system, by
        weight (exact: [`pimh.refresh`][numpyro_transport.pimh.refresh])."""
        del model_args, model_kwargs
        key, k_index = jax.random.split(state.rng_key)
        chain = pimh.refresh(k_index, state.chain)
        return state._replace(
            i=state.i + 1,
            z=unravel(chain.position),
            potential_energy=-chain.logdensity,
            num_evaluations=jnp.zeros_like(state.num_evaluations),
            new_sweep=jnp.zeros((), bool),
            chain=chain,
            rng_key=key,
        )

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
