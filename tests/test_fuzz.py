"""Property-based fuzzing of the public API (hypothesis): any options, and small random models
with constraints, NaN and −∞ regions and improper sites, give a correct result or a clear
``ValueError``/``TypeError`` naming the option or site; never an internal exception, never a
NaN without a warning. The default run is a fast profile; ``-m slow`` runs 10× more examples.
Examples are derandomized: the same examples every run."""

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from numpyro_transport import AST, TransportConfig, transport

#: (fast profile, slow profile) examples of each property.
OPTION_EXAMPLES = (300, 3000)
MODEL_EXAMPLES = (1, 20)


def _profiles(fast_and_slow):
    fast, slow = fast_and_slow
    return pytest.mark.parametrize(
        "examples", [fast, pytest.param(slow, marks=pytest.mark.slow)], ids=["fast", "slow"]
    )


def _run_property(test, examples):
    settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )(test)()


ANY_VALUE = st.one_of(
    st.integers(-5, 5000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=8),
    st.sampled_from(["covariance", "euler", "posterior", "auto"]),
)
FIELDS = [name for name in TransportConfig.__dataclass_fields__]
OPTIONS = st.dictionaries(
    st.one_of(st.sampled_from(FIELDS), st.sampled_from(["num_particle", "eps", "steps"])),
    ANY_VALUE,
    max_size=4,
)
#: Options whose valid values the kernel AST adds to TransportConfig's.
KERNEL_ARGS = st.dictionaries(
    st.sampled_from(["tempering_ess", "num_recorded_sweeps", "num_prior_draws", "draws_per_sweep"]),
    ANY_VALUE,
    max_size=2,
)


def _assert_clear(error: Exception, names):
    """A ValueError/TypeError whose message names one of ``names``."""
    assert isinstance(error, (ValueError, TypeError)), repr(error)
    assert any(name in str(error) for name in names), str(error)


@_profiles(OPTION_EXAMPLES)
def test_options_are_validated_or_named(examples):
    """Any option values: the config is built with every field of its declared type and in
    range, or the error names an offending option. Both front-ends give the same verdict."""

    @given(options=OPTIONS, kernel_args=KERNEL_ARGS)
    def check(options, kernel_args):
        try:
            config = TransportConfig.from_options("transport()", **options)
        except Exception as error:  # noqa: BLE001 (the property is about the exception's kind)
            _assert_clear(error, list(options))
            config = None
        if config is not None:
            for field in FIELDS:
                value = getattr(config, field)
                assert type(value) is TransportConfig.__dataclass_fields__[field].type
                assert not isinstance(value, float) or math.isfinite(value), (field, value)
            assert config.num_inner % 2 == 0 and config.num_particles >= 2
        try:
            AST(potential_fn=lambda z: 0.5 * jnp.sum(z**2), **kernel_args, **options)
        except Exception as error:  # noqa: BLE001
            _assert_clear(error, [*options, *kernel_args])
        else:  # the kernel alone also takes num_particles="auto"
            assert config is not None or options.get("num_particles") == "auto", options

    _run_property(check, examples)


PRIORS = {
    "normal": lambda: dist.Normal(0.0, 2.0),
    "half_normal": lambda: dist.HalfNormal(1.0),
    "uniform": lambda: dist.Uniform(-1.0, 3.0),
    "exponential": lambda: dist.Exponential(2.0),
    "improper_real": lambda: dist.ImproperUniform(dist.constraints.real, (), ()),
    "improper_positive": lambda: dist.ImproperUniform(dist.constraints.positive, (), ()),
}
FACTORS = ("gaussian", "none", "nan_region", "minus_inf_region", "plus_inf_region")
SITES = st.lists(st.sampled_from(sorted(PRIORS)), min_size=1, max_size=3)
#: The tiniest run: the properties are about errors and finiteness, not accuracy.
TINY = dict(
    num_particles=16,
    num_inner=2,
    max_inner_blocks=1,
    pool_neighbours=4,
    max_steps=16,
    num_warmup=2,
    num_sweeps=2,
    progress=False,
)


def _random_model(priors, factor):
    def model():
        values = [numpyro.sample(f"x{i}", PRIORS[name]()) for i, name in enumerate(priors)]
        total = sum(values)
        if factor == "gaussian":
            numpyro.factor("f", -0.5 * (total - 1.0) ** 2)
        elif factor == "nan_region":
            numpyro.factor("f", jnp.where(total > 0.5, jnp.nan, -0.5 * total**2))
        elif factor == "minus_inf_region":
            numpyro.factor("f", jnp.where(total > 0.5, -jnp.inf, -0.5 * total**2))
        elif factor == "plus_inf_region":
            numpyro.factor("f", jnp.where(total > 0.5, jnp.inf, -0.5 * total**2))

    return model


@_profiles(MODEL_EXAMPLES)
def test_random_models_give_a_result_or_a_clear_error(examples):
    """Small random models (1–3 sites, proper and improper priors on R and R₊, with a Gaussian
    factor, none, or a NaN, −∞ or +∞ region): a result with finite draws and evidence (or a
    warning that says why not), or a ValueError/TypeError that names a site or the cause."""

    @given(priors=SITES, factor=st.sampled_from(FACTORS), seed=st.integers(0, 2**16))
    def check(priors, factor, seed):
        model = _random_model(priors, factor)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = transport(jax.random.key(seed), model=model, **TINY)
            except Exception as error:  # noqa: BLE001
                names = [f"'x{i}'" for i in range(len(priors))] + ["+inf", "NaN or infinite"]
                _assert_clear(error, names)
                return
        finite = np.isfinite(result.log_evidence) and all(
            np.all(np.isfinite(v)) for v in result.samples.values()
        )
        assert finite or caught, (priors, factor, result.log_evidence)

    _run_property(check, examples)
