"""From a NumPyro model to what the transport needs: checks, a flat log-density, a reference.

The transport works on the unconstrained latent space, flattened to R^d. The log-density is
−potential_fn (it includes the log-Jacobians of the constraint transforms), so Z computed there
is the model evidence p(data). The first reference is moment-matched to prior draws mapped to
unconstrained space: it needs no MAP, so a multimodal posterior is not collapsed to one mode.
"""

import hashlib
import warnings
from collections import OrderedDict
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.distributions import constraints
from numpyro.infer import (
    init_to_sample,
    init_to_uniform,
    init_to_value,
)
from numpyro.infer.util import constrain_fn, initialize_model, potential_energy, unconstrain_fn

from numpyro_transport.reference import Reference, from_moments
from numpyro_transport.validation import check_reference

__all__ = [
    "ModelSetup",
    "ModelRun",
    "check_model",
    "setup_model",
    "flat_logdensity",
    "laplace_reference",
    "model_run",
]

#: Coordinates of sites with improper priors get this reference scale (unconstrained space).
IMPROPER_SCALE = 10.0


class ModelSetup(NamedTuple):
    """A model prepared for the transport.

    Attributes:
        potential_fn_gen: ``(*args, **kwargs) -> (z -> potential energy)``.
        postprocess_fn_gen: ``(*args, **kwargs) -> (z -> constrained + deterministic sites)``.
        init_z: one valid unconstrained point (a prior draw), a pytree.
        unravel: flat ``(d,)`` vector → pytree like ``init_z``.
        reference: the first Gaussian reference (flat unconstrained space): the user's if given,
            else fitted to the finite prior draws.
        improper: names of latent sites with improper priors (evidence undefined).
    """

    potential_fn_gen: object
    postprocess_fn_gen: object
    init_z: dict
    unravel: object
    reference: Reference
    improper: tuple


def _is_improper(fn) -> bool:
    try:
        jax.eval_shape(fn.sample, jax.random.key(0))
    except NotImplementedError:
        return True
    except ImportError:  # a proper prior whose sampler needs an optional package
        return False
    return False


def _prior_draw(site=None, unsampled=None):
    """``init_to_sample``, falling back to ``init_to_uniform`` (and adding the site's name to
    the set ``unsampled``) where sampling the prior needs an optional package: NumPyro falls
    back on NotImplementedError only, while e.g. a truncated Student-t's icdf raises
    ImportError without tensorflow_probability. Used as ``partial(_prior_draw, unsampled=...)``
    (NumPyro's initialization expects strategies to be partials)."""
    if site is None:
        return partial(_prior_draw, unsampled=unsampled)
    try:
        return init_to_sample(site)
    except ImportError:
        unsampled.add(site["name"])
        return init_to_uniform(site)


def _prior_trace(model, model_args, model_kwargs):
    seeded = handlers.substitute(
        handlers.seed(model, 0), substitute_fn=partial(_prior_draw, unsampled=set())
    )
    return handlers.trace(seeded).get_trace(*model_args, **(model_kwargs or {}))


def _hidden_dynamic_support(trace) -> bool:
    """Whether a latent site's bounds depend on other sites behind an ``independent`` wrapper
    (``ImproperUniform`` wraps every support so). NumPyro's ``initialize_model`` only looks for
    array bounds on unwrapped supports, so its ``postprocess_fn`` then constrains such a site
    with the bounds of the trace it was built from, not those of each draw."""
    for site in trace.values():
        if site["type"] != "sample" or site["is_observed"]:
            continue
        support = site["fn"].support
        if not isinstance(support, constraints._IndependentConstraint):
            continue
        while isinstance(support, constraints._IndependentConstraint):
            support = support.base_constraint
        bounds = [getattr(support, b, 0.0) for b in ("lower_bound", "upper_bound")]
        if not all(isinstance(b, (int, float)) for b in bounds):
            return True
    return False


def check_model(model, model_args=(), model_kwargs=None) -> tuple:
    """Raise a clear error for what the transport cannot sample; return improper sites.

    Rejects discrete latent sites that NumPyro cannot sum out (those marked
    ``infer={"enumerate": "parallel"}`` are summed out of the potential, as for NUTS),
    subsampled plates (they make the likelihood, hence the evidence, a noisy estimate) and models
    with no continuous latent site.

    Args:
        model: a NumPyro model, traced once with a prior draw of every latent site.
        model_args: positional arguments of the model.
        model_kwargs: keyword arguments of the model.

    Returns:
        The names of the latent sites with improper priors (a warning says their evidence is
        undefined).
    """
    improper = _inspect(model, model_args, model_kwargs).improper
    _warn_improper(improper)
    return improper


class _Inspection(NamedTuple):
    """What one prior trace of a model says (see ``_inspect``)."""

    improper: tuple
    enumerated: bool
    hidden_dynamic_support: bool
    max_plate_nesting: int


def _inspect(model, model_args, model_kwargs) -> _Inspection:
    """Check one prior trace of the model (``_check_trace``), traced abstractly with
    ``jax.eval_shape``: the checks need the sites, not their values, and nothing compiles."""
    found = []

    def inspect():
        trace = _prior_trace(model, model_args, model_kwargs)
        enumerated = any(s.get("infer", {}).get("enumerate") == "parallel" for s in trace.values())
        dims = [
            frame.dim
            for site in trace.values()
            if site["type"] == "sample"
            for frame in site["cond_indep_stack"]
        ]
        nesting = -min(dims) if dims else 0
        found.append(
            _Inspection(_check_trace(trace), enumerated, _hidden_dynamic_support(trace), nesting)
        )

    jax.eval_shape(inspect)
    return found[0]


def _warn_improper(improper, stacklevel=3):
    if improper:
        warnings.warn(
            f"Sites {list(improper)} have improper priors: the evidence Z is undefined (its "
            "estimate depends on the arbitrary scale of the prior). Sampling still works: with "
            "no prior draws to fit, the first reference is the posterior's Laplace "
            "approximation (MAP and Hessian).",
            UserWarning,
            stacklevel=stacklevel,
        )


def _check_trace(trace) -> tuple:
    """[`check_model`][numpyro_transport.model.check_model] on a prior trace of the model."""
    continuous, improper = [], []
    for name, site in trace.items():
        if site["type"] == "plate":
            size, subsample_size = site["args"][:2]
            if subsample_size is not None and subsample_size < size:
                raise ValueError(
                    f"Plate '{name}' subsamples {subsample_size} of {size} data points. AST "
                    "needs the full likelihood for exact draws and the evidence: remove "
                    f"`subsample_size` from plate '{name}'."
                )
        if site["type"] != "sample" or site["is_observed"]:
            continue
        if site["fn"].support.is_discrete:
            if site["infer"].get("enumerate") != "parallel":
                raise ValueError(
                    f"Latent site '{name}' is discrete ({type(site['fn']).__name__}). AST "
                    "moves continuous variables only. Sum it out: mark the site "
                    "infer={'enumerate': 'parallel'} (NumPyro then marginalizes it from the "
                    "potential; needs `pip install funsor`), or marginalize it in the model."
                )
            continue
        continuous.append(name)
        if _is_improper(site["fn"]):
            improper.append(name)
    if continuous and not any(np.size(trace[name]["value"]) for name in continuous):
        shapes = {name: tuple(np.shape(trace[name]["value"])) for name in continuous}
        raise ValueError(
            f"The model's continuous latent sites {shapes} hold no value (size 0), so there is "
            "nothing to sample. Give them a non-empty shape, or draw from the model with "
            "numpyro.infer.Predictive."
        )
    if not continuous:
        raise ValueError(
            "The model has no continuous latent sample site, so there is nothing to sample. "
            "Check that the model's latent variables are `numpyro.sample` sites without `obs=`; "
            "to draw from a model with no latent variables use numpyro.infer.Predictive."
        )
    return tuple(improper)


def _robust_moments(draws):
    """Mean and covariance of ``(n, d)`` draws winsorized per coordinate to the 1–99% range,
    so that heavy-tailed priors (Cauchy) still give a usable reference."""
    lo, hi = jnp.percentile(draws, jnp.array([1.0, 99.0]), axis=0)
    clipped = jnp.clip(draws, lo, hi)
    mean = jnp.mean(clipped, 0)
    centred = clipped - mean
    return mean, centred.T @ centred / (draws.shape[0] - 1)


def laplace_reference(model, model_args=(), model_kwargs=None) -> Reference:
    """N(MAP, ``LAPLACE_INFLATION``·H⁻¹): the Laplace approximation of the posterior.

    In unconstrained space, over the latents flattened as the kernel flattens them
    (``ravel_pytree`` of the site dict): the mode by optax's L-BFGS from the model's first
    finite prior draw, then the Hessian H of the potential there, inverted in double precision
    after scaling it to a unit diagonal. Unlike NumPyro's ``AutoLaplaceApproximation`` with
    Adam or with ``Minimize`` (BFGS from an identity Hessian), this reaches the mode of a
    posterior far narrower than its prior and correlated to −0.999999 (an intercept and a
    slope on an uncentred covariate) in float32, and inverts its Hessian there.

    For a unimodal posterior far narrower than its prior, where the tempered warm-up from prior
    moments needs many sweeps, and for models with improper priors (no prior draws to fit): it
    sees one mode only.

    Args:
        model: a NumPyro model.
        model_args: positional arguments of the model.
        model_kwargs: keyword arguments of the model.

    Returns:
        N(MAP, 1.2·H⁻¹), as a [`Reference`][numpyro_transport.Reference]: the first reference of
        [`setup_model`][numpyro_transport.model.setup_model] with ``reference="laplace"``.

    Raises:
        ValueError: the mode search or the Hessian gave a non-finite value, or the Hessian is
            not positive definite at the mode found (no mode, or a flat direction).
    """
    return setup_model(model, model_args, model_kwargs, reference="laplace").reference


#: L-BFGS iterations of the mode search, and its tolerance on the gradient's norm.
MODE_MAX_ITERATIONS = 500
MODE_TOLERANCE = 1e-6
#: Covariance inflation of the Laplace reference (a reference slightly too wide is safer than
#: one too narrow).
LAPLACE_INFLATION = 1.2


@partial(jax.jit, static_argnums=0)
def _mode_and_hessian(potential, start):
    """The mode of ``exp(−potential)`` by optax's L-BFGS (its documented ``while_loop``), and
    the Hessian of ``potential`` there."""
    import optax  # noqa: PLC0415 (on demand: import time)

    solver = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(potential)

    def step(carry):
        u, state = carry
        value, grad = value_and_grad(u, state=state)
        updates, state = solver.update(grad, state, u, value=value, grad=grad, value_fn=potential)
        return optax.apply_updates(u, updates), state

    def going(carry):
        _, state = carry
        count = optax.tree_utils.tree_get(state, "count")
        norm = optax.tree_utils.tree_norm(optax.tree_utils.tree_get(state, "grad"))
        return (count == 0) | ((count < MODE_MAX_ITERATIONS) & (norm >= MODE_TOLERANCE))

    mode, _ = jax.lax.while_loop(going, step, (start, solver.init(start)))
    return mode, jax.hessian(potential)(mode)


def _laplace(potential_fn, init_z, unravel) -> Reference:
    """[`laplace_reference`][numpyro_transport.model.laplace_reference] of a potential over
    latent pytrees, from ``init_z``."""

    def potential(u):
        value = potential_fn(unravel(u))
        return jnp.where(jnp.isnan(value), jnp.inf, value)

    mode, hessian = _mode_and_hessian(potential, ravel_pytree(init_z)[0])
    mode, hessian = np.asarray(mode, np.float64), np.asarray(hessian, np.float64)
    hessian = 0.5 * (hessian + hessian.T)
    diagonal = np.diagonal(hessian)
    fix = (
        "Use the default reference (reference=None), or give reference=(mean, cov) over the "
        "flattened unconstrained latent vector."
    )
    if not (np.all(np.isfinite(mode)) and np.all(np.isfinite(hessian)) and np.all(diagonal > 0)):
        raise ValueError(
            "reference='laplace': the Laplace approximation is not finite (the mode search or "
            f"the Hessian failed: the posterior may have no mode, or be flat). {fix}"
        )
    scale = 1 / np.sqrt(diagonal)
    try:  # H = D⁻¹ C D⁻¹ with C of unit diagonal, so H⁻¹ = D C⁻¹ D
        tril = np.linalg.cholesky(hessian * np.outer(scale, scale))
    except np.linalg.LinAlgError:
        raise ValueError(
            "reference='laplace': the Hessian of the potential is not positive definite at the "
            f"mode found (a saddle, or a flat direction). {fix}"
        ) from None
    inverse = np.linalg.solve(tril.T, np.linalg.solve(tril, np.eye(mode.size)))
    return from_moments(mode, LAPLACE_INFLATION * inverse * np.outer(scale, scale))


def setup_model(
    model, model_args=(), model_kwargs=None, *, num_prior_draws=512, seed=0, reference=None
) -> ModelSetup:
    """Check ``model``, build its potential and the prior-draw reference.

    The reference is fitted to the prior draws (in unconstrained space) where the potential is
    finite: a model finite on a small part of its prior gets a reference over that part (a
    warning says how many draws were finite when fewer than half were). With a user
    ``reference``, prior draws need not be finite anywhere: the start is a finite draw of that
    reference. The reference is deterministic in ``seed``, so every chain starts from the same
    one.

    Args:
        model: a NumPyro model.
        model_args: positional arguments of the model.
        model_kwargs: keyword arguments of the model.
        num_prior_draws: prior draws whose (winsorized) moments give the reference.
        seed: seed of the prior draws.
        reference: the first reference: ``None`` to fit it to the prior draws (for a model
            with improper priors, the Laplace approximation,
            [`laplace_reference`][numpyro_transport.model.laplace_reference], where it is
            finite); ``"laplace"`` for the Laplace approximation; or the user's ``(mean, cov)``
            over the flattened unconstrained latent vector.

    Returns:
        The model's [`ModelSetup`][numpyro_transport.model.ModelSetup].
    """
    model_kwargs = model_kwargs or {}
    inspection = _inspect(model, model_args, model_kwargs)
    improper, enum = inspection.improper, inspection.enumerated
    _warn_improper(improper, stacklevel=4)
    unsampled = set()  # sites whose prior cannot be sampled get the broad reference too
    if enum:  # as NumPyro's initialize_model prepares it: discrete sites summed out
        from numpyro.contrib.funsor import config_enumerate  # noqa: PLC0415
        from numpyro.contrib.funsor import enum as enum_handler  # noqa: PLC0415

        summed = enum_handler(config_enumerate(model), -inspection.max_plate_nesting - 1)
    else:
        summed = model
    draws = _prior_draws(
        model, summed, model_args, model_kwargs, seed, num_prior_draws, unsampled, enum
    )
    flat_draws, unravel = np.asarray(draws.flat), draws.unravel
    finite = np.isfinite(np.asarray(draws.potential))
    given = reference is not None and not isinstance(reference, str)
    if given:
        reference = check_reference(*reference, flat_draws.shape[1])
        start = _finite_reference_draw(summed, model_args, model_kwargs, reference, unravel, enum)
    elif not finite.any():
        raise ValueError(
            f"The potential is NaN or infinite at all {num_prior_draws} prior draws, so no "
            "particle can get weight. Check the likelihood's parameters and support at prior "
            "draws (e.g. a scale that can be 0, a log of a negative number), or pass a first "
            "reference=(mean, cov) inside the region where the model is finite."
        )
    else:
        start = flat_draws[np.argmax(finite)]
        if finite.sum() < num_prior_draws / 2:
            warnings.warn(
                f"The potential is finite at only {finite.sum()} of {num_prior_draws} prior "
                "draws; the first reference is fitted to those.",
                UserWarning,
                stacklevel=3,
            )
    init_z = unravel(jnp.asarray(start))
    constrain = partial(constrain_fn, handlers.seed(model, seed), model_args, model_kwargs)
    info = initialize_model(
        draws.first_key,
        model,
        init_strategy=init_to_value(values=jax.jit(constrain)(init_z)),
        model_args=model_args,
        model_kwargs=model_kwargs,
        dynamic_args=True,
        validate_grad=False,
    )
    potential = info.potential_fn(*model_args, **model_kwargs)
    if given:  # checked above
        ref = jax.jit(from_moments)(*reference)
    else:
        mask = _site_mask(init_z, set(improper) | unsampled)
        ref = jax.jit(_prior_reference)(flat_draws[finite], mask)
    if improper:  # an improper posterior is refused before any mode search
        _check_proper(flat_logdensity(potential, unravel), ref, init_z, improper)
    if reference == "laplace":
        ref = _laplace(potential, init_z, unravel)
    elif reference is None and improper:
        ref = _improper_reference(potential, init_z, unravel, ref)
    postprocess_fn_gen = info.postprocess_fn
    if inspection.hidden_dynamic_support:

        def postprocess_fn_gen(*args, **kwargs):  # replay the model for every draw
            return partial(constrain_fn, model, args, kwargs, return_deterministic=True)

    setup = ModelSetup(info.potential_fn, postprocess_fn_gen, init_z, unravel, ref, improper)
    return setup


#: Share of the Laplace reference's draws where the density must be finite for an improper-prior
#: model to start from it: a mode inside the support gives about 1, a mode on the edge of the
#: region where the density is finite about ½.
LAPLACE_MIN_FINITE = 0.9


def _improper_reference(potential_fn, init_z, unravel, broad_moments) -> Reference:
    """The first reference of a model with improper priors: the Laplace approximation, or, where
    it is not finite or most of its draws are not (a mode on the edge of the support), the
    prior moments with N(0, ``IMPROPER_SCALE``²) on the improper sites."""
    try:
        reference = _laplace(potential_fn, init_z, unravel)
    except ValueError:
        reason = "it is not finite: no mode, or a flat direction"
    else:
        tril = np.asarray(reference.scale_tril, np.float64)
        _, finite = _finite_draws(
            lambda u: potential_fn(unravel(u)), np.asarray(reference.mean), tril @ tril.T
        )
        finite = float(np.mean(finite))
        if finite >= LAPLACE_MIN_FINITE:
            return reference
        reason = f"only {finite:.0%} of its draws have a finite density: its mode is on an edge"
    warnings.warn(
        f"The model has improper priors and its Laplace approximation cannot start ({reason}): "
        f"the first reference takes N(0, {IMPROPER_SCALE}²) in the improper sites' "
        "unconstrained coordinates. If the posterior is much narrower, give "
        "AST(..., reference=(mean, cov)) or proper priors.",
        UserWarning,
        stacklevel=5,
    )
    return broad_moments


class _PriorDraws(NamedTuple):
    """Flat unconstrained prior draws ``(n, d)``, the potential energy at each, the map from a
    flat draw to the latent sites, and the first draw's key."""

    flat: jax.Array
    potential: jax.Array
    unravel: object
    first_key: jax.Array


def _prior_draws(
    model, summed, model_args, model_kwargs, seed, num, unsampled, enum
) -> _PriorDraws:
    """``num`` unconstrained prior draws from the keys ``split(key(seed), num)``, and the
    potential energy at each (of ``summed``, the model with its enumerated sites summed out):
    the draws of NumPyro's ``find_valid_initial_params`` from the same keys, without its
    redraws. One compiled program."""

    def one(key):
        seeded = handlers.seed(model, jax.random.split(key)[1])
        strategy = partial(_prior_draw, unsampled=unsampled)
        trace = handlers.trace(handlers.substitute(seeded, substitute_fn=strategy)).get_trace(
            *model_args, **model_kwargs
        )
        values = {
            name: site["value"]
            for name, site in trace.items()
            if site["type"] == "sample"
            and not site["is_observed"]
            and not site["fn"].support.is_discrete
        }
        z = unconstrain_fn(seeded, model_args, model_kwargs, values)
        flat, unravel = ravel_pytree(z)
        unravels.append(unravel)  # a function of the shapes only, not of traced values
        return flat, potential_energy(summed, model_args, model_kwargs, z, enum=enum)

    def run():
        keys = jax.random.split(jax.random.key(seed), num)
        return *jax.vmap(one)(keys), keys[0]

    unravels = []
    flat, potential, first_key = jax.jit(run)()
    return _PriorDraws(flat, potential, unravels[0], first_key)


def _finite_draws(potential, mean, cov, num=512):
    """``num`` draws of N(mean, cov) (NumPy seed 0), and where the flat ``potential`` is finite
    at them (one compiled program)."""
    draws = np.random.default_rng(0).multivariate_normal(mean, cov, num)
    energy = jax.jit(jax.vmap(potential))(jnp.asarray(draws, jnp.result_type(float)))
    return draws, np.isfinite(np.asarray(energy))


def _finite_reference_draw(model, model_args, model_kwargs, reference, unravel, enum):
    """The first of 512 draws of the user's ``reference`` where the potential is finite."""

    def potential(u):
        return potential_energy(model, model_args, model_kwargs, unravel(u), enum=enum)

    draws, finite = _finite_draws(potential, *reference)
    if not finite.any():
        raise ValueError(
            "The potential is NaN or infinite at all 512 draws of the given reference, so no "
            "particle can get weight: pass a reference=(mean, cov) over the region where the "
            "model is finite (in the flattened unconstrained latent space)."
        )
    return draws[np.argmax(finite)]


def _site_mask(init_z, sites) -> np.ndarray:
    """The flat boolean mask of the coordinates of ``sites`` in ``ravel_pytree(init_z)``."""
    flags = {k: np.full(np.shape(v), k in sites) for k, v in init_z.items()}
    return np.concatenate([np.ravel(a) for a in jax.tree.leaves(flags)])


def _prior_reference(draws, broad_mask) -> Reference:
    """The winsorized moments of ``(n, d)`` unconstrained prior draws; coordinates in
    ``broad_mask`` (improper or unsampled priors) get N(0, IMPROPER_SCALE²). With fewer draws
    than coordinates the covariance is their variances only."""
    mean, cov = _robust_moments(jnp.asarray(draws))
    if draws.shape[0] <= draws.shape[1]:
        cov = jnp.diag(jnp.where(jnp.diagonal(cov) > 0, jnp.diagonal(cov), 1.0))
    mean = jnp.where(broad_mask, 0.0, mean)
    keep = (~broad_mask[:, None]) & (~broad_mask[None, :])
    cov = jnp.where(keep, cov, jnp.diag(jnp.where(broad_mask, IMPROPER_SCALE**2, 0.0)))
    return from_moments(mean, cov)


#: Distances, in reference standard deviations, at which the tail check evaluates the target.
TAIL_DISTANCES = (1e3, 1e6)


def _check_proper(logdensity, reference: Reference, init_z, improper):
    """Raise if the posterior is improper along an improper site's coordinates.

    A proper density decays faster than 1/t along every ray, so ``log p(u₀ + t·σ·e) − log p(u₀)``
    drops below −log t far out; the test flags a coordinate whose log-density has not dropped
    by 1.2·log t (a t^−1.2 tail) at both ``TAIL_DISTANCES`` in one direction: the mass escapes
    there (a flat improper prior that the likelihood does not constrain, or one whose
    Jacobian grows, as on a positive support).
    """
    coords = np.flatnonzero(_site_mask(init_z, set(improper)))
    mean, scale = reference.mean, jnp.diagonal(reference.scale_tril)
    steps = np.array([s * t for s in (-1.0, 1.0) for t in TAIL_DISTANCES])
    points = mean + (
        steps[:, None, None] * np.eye(mean.shape[0])[coords][None] * scale[None, None, :]
    )
    values = jax.jit(jax.vmap(jax.vmap(logdensity)))(points)
    base = logdensity(mean)
    if not np.isfinite(base):
        return
    drop = np.log(np.asarray(TAIL_DISTANCES))
    values = np.asarray(values).reshape(2, len(TAIL_DISTANCES), coords.size)
    escapes = np.all(values > base - 1.2 * drop[None, :, None], axis=1).any(axis=0)
    if escapes.any():
        sites = sorted({_site_of(init_z, c) for c in coords[escapes]})
        raise ValueError(
            f"The posterior is improper: its density does not decay along the improper "
            f"site(s) {sites} (at {TAIL_DISTANCES[-1]:.0e} reference sds from the centre it is "
            "as high as there), so its mass escapes to infinity and no sampler's draws or "
            "evidence mean anything. Give these sites proper priors, or check that the "
            "likelihood involves them."
        )


def _site_of(init_z, coordinate: int) -> str:
    """The name of the site holding flat coordinate ``coordinate`` of ``ravel_pytree(init_z)``."""
    sizes = np.cumsum([np.size(v) for v in init_z.values()])
    return list(init_z)[int(np.searchsorted(sizes, coordinate, side="right"))]


def flat_logdensity(potential_fn, unravel):
    """``u (d,) -> −potential_fn(unravel(u))``, with NaN mapped to −∞ (zero weight).

    Args:
        potential_fn: potential energy of an unconstrained pytree.
        unravel: flat ``(d,)`` vector → that pytree.

    Returns:
        The flat log-density.
    """

    def logdensity(u):
        value = -potential_fn(unravel(u))
        return jnp.where(jnp.isnan(value), -jnp.inf, value)

    return logdensity


class ModelRun(NamedTuple):
    """A NumPyro model bound to its arguments, as [`transport`][numpyro_transport.transport]
    runs it.

    Attributes:
        model: the NumPyro model.
        model_args: its positional arguments.
        model_kwargs: its keyword arguments.
        setup: its [`ModelSetup`][numpyro_transport.model.ModelSetup].
        logdensity: the flat log-density ``u (d,) -> −potential(u)``.
    """

    model: object
    model_args: tuple
    model_kwargs: dict
    setup: ModelSetup
    logdensity: object

    def constrain(self, draws) -> dict:
        """Constrained and deterministic sites of ``(..., d)`` unconstrained flat draws.

        Args:
            draws: ``(..., d)`` flat draws in unconstrained space.

        Returns:
            ``{site: array}`` with the leading dims ``...`` of ``draws``.
        """
        draws = jnp.asarray(draws)
        flat = draws.reshape(-1, draws.shape[-1])
        postprocess = self.setup.postprocess_fn_gen(*self.model_args, **self.model_kwargs)
        sites = jax.jit(jax.vmap(lambda u: postprocess(self.setup.unravel(u))))(flat)
        return {k: np.asarray(v).reshape(draws.shape[:-1] + v.shape[1:]) for k, v in sites.items()}


#: How many set-ups [`model_run`][numpyro_transport.model.model_run] keeps (the latest ones).
MODEL_RUN_CACHE_SIZE = 4
_model_runs: OrderedDict = OrderedDict()


def _value_key(leaf):
    """A key equal for two leaves only if their values are: JAX arrays (immutable) by identity,
    NumPy arrays by content, scalars and strings by value; ``None`` for anything else."""
    if isinstance(leaf, jax.Array):
        return ("jax", id(leaf))
    if isinstance(leaf, np.ndarray):
        digest = hashlib.blake2b(np.ascontiguousarray(leaf).tobytes(), digest_size=16)
        return ("numpy", leaf.dtype.str, leaf.shape, digest.digest())
    if isinstance(leaf, (bool, int, float, complex, str, bytes, np.generic)):
        return ("value", type(leaf), leaf)
    return None


def _run_key(model, model_args, model_kwargs, reference):
    """The cache key of a model bound to its arguments and the leaves it was made of (a cache
    entry holds them, so that no JAX array keyed by its ``id`` is freed and its ``id`` reused),
    or ``(None, leaves)`` when one of them is not a value the key can vouch for."""
    leaves, treedef = jax.tree.flatten((model_args, model_kwargs, reference))
    keys = tuple(_value_key(leaf) for leaf in leaves)
    key = (model, treedef, keys)
    try:
        hash(key)
    except TypeError:
        return None, leaves
    return (None if None in keys else key), leaves


def model_run(model, model_args=(), model_kwargs=None, reference=None) -> ModelRun:
    """The NumPyro ``model`` bound to its arguments, checked and set up.

    The latest ``MODEL_RUN_CACHE_SIZE`` set-ups are kept: the same model with equal arguments
    (the same JAX arrays, NumPy arrays of equal content, equal scalars) gets the same
    [`ModelRun`][numpyro_transport.model.ModelRun], so a second
    [`transport`][numpyro_transport.transport] call neither sets the model up nor compiles its
    sweeps again. The set-up's warnings are shown on every call.

    Args:
        model: a NumPyro model.
        model_args: positional arguments of the model.
        model_kwargs: keyword arguments of the model.
        reference: the user's first reference ``(mean, cov)``, if any (see
            [`setup_model`][numpyro_transport.model.setup_model]).

    Returns:
        The model's [`ModelRun`][numpyro_transport.model.ModelRun], with its set-up and flat
        log-density.
    """
    model_kwargs = dict(model_kwargs or {})
    key, leaves = _run_key(model, model_args, model_kwargs, reference)
    if key is not None and key in _model_runs:
        _model_runs.move_to_end(key)
        bound, caught, _ = _model_runs[key]
    else:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                setup = setup_model(model, model_args, model_kwargs, reference=reference)
        except Exception:
            _replay(caught)
            raise
        potential = setup.potential_fn_gen(*model_args, **model_kwargs)
        logdensity = flat_logdensity(potential, setup.unravel)
        bound = ModelRun(model, tuple(model_args), model_kwargs, setup, logdensity)
        if key is not None:
            _model_runs[key] = (bound, caught, leaves)
            while len(_model_runs) > MODEL_RUN_CACHE_SIZE:
                _model_runs.popitem(last=False)
    _replay(caught)
    return bound


def _replay(caught):
    """Show the recorded warnings of a set-up (at the caller of the front-end)."""
    for caught_warning in caught:
        warnings.warn(caught_warning.message, stacklevel=4)
