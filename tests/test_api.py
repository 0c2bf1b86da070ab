"""Reproducibility, compilation caching and bad input of the one-call API."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from shared import HALF_NORMAL_OPTIONS, half_normal

from numpyro_transport import TransportConfig, transport
from numpyro_transport.engine import _sweep


def _normal(u):
    return -0.5 * jnp.sum(u**2)


def _run(key, logdensity=half_normal, **kwargs):
    """The half-normal sweep of test_arviz.py too (one compilation for both modules)."""
    return transport(logdensity, key, **{**HALF_NORMAL_OPTIONS, **kwargs})


def test_same_key_same_result_and_no_recompilation():
    first = _run(jax.random.key(3))
    size = _sweep._cache_size()
    second = _run(jax.random.key(3))
    assert _sweep._cache_size() == size
    np.testing.assert_array_equal(first.samples, second.samples)
    assert first.log_evidence == second.log_evidence
    third = _run(jax.random.key(4))
    assert not np.array_equal(first.samples, third.samples)


def test_progress_bar_does_not_change_draws():
    quiet = _run(jax.random.key(5))
    shown = _run(jax.random.key(5), progress=True)
    np.testing.assert_array_equal(quiet.samples, shown.samples)


def test_non_finite_density_gets_zero_weight():
    """NaN outside the support: no NaN in the output, every draw inside the support, and log Ẑ
    within 3 se of log(√(2π)/2) (seed 6)."""
    result = _run(jax.random.key(6))
    assert np.all(np.isfinite(result.samples)) and np.all(result.samples > 0)
    assert np.isfinite(result.log_evidence)
    truth = 0.5 * np.log(2 * np.pi) - np.log(2)
    assert abs(result.log_evidence - truth) < 3 * max(result.log_evidence_se, 0.01)


def test_all_non_finite_at_start_raises():
    with pytest.raises(ValueError, match="NaN or -inf at all"):
        _run(jax.random.key(0), logdensity=lambda u: jnp.nan * jnp.sum(u))
    with pytest.raises(ValueError, match="NaN or -inf at all"):
        _run(jax.random.key(0), logdensity=lambda u: -jnp.inf + jnp.sum(u))


@pytest.mark.parametrize(
    "options, name",
    [
        ({"num_particles": 1}, "num_particles"),
        ({"num_inner": 7}, "num_inner"),
        ({"max_lambda": 0.0}, "max_lambda"),
        ({"epsilon": -1.0}, "epsilon"),
        ({"move": "leapfrog"}, "move"),
        ({"inner_correlation": 1.5}, "inner_correlation"),
    ],
)
def test_invalid_options_name_the_option(options, name):
    with pytest.raises(ValueError, match=name):
        TransportConfig(**options)
    with pytest.raises(ValueError, match=name):
        transport(_normal, jax.random.key(0), dim=2, progress=False, **options)


def test_invalid_driver_options():
    with pytest.raises(ValueError, match="num_sweeps"):
        _run(jax.random.key(0), num_sweeps=1)
    with pytest.raises(ValueError, match="dim"):
        transport(_normal, jax.random.key(0), progress=False)
