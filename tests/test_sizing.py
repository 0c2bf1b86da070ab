"""``num_particles="auto"``: the rule N = N₀(σ̂₀/σ*)², rounded up to a power of two and bounded,
and the growing pilots (with the pilot run replaced by given outcomes). A real pilot's
prediction against the chosen N's measured spread is checked in
``test_compare.py::test_auto_particles_pilot_predicts_the_sweep_spread`` (slow)."""

import warnings

import jax
import numpy as np
import pytest

from numpyro_transport import AST, TransportConfig, sizing
from numpyro_transport.sizing import MAX_PARTICLES, MIN_PARTICLES, TARGET_SD, particles_for


@pytest.mark.parametrize(
    "pilot_sd, pilot_particles, expected",
    [
        (TARGET_SD, 64, 64),  # on target: keep N₀
        (2 * TARGET_SD, 64, 256),  # twice the spread: four times the particles
        (1.01 * TARGET_SD, 64, 128),  # just above: the next power of two
        (0.5 * TARGET_SD, 64, MIN_PARTICLES),  # 16 is below the floor
        (0.0, 32, MIN_PARTICLES),
        (20.0, 32, MAX_PARTICLES),
    ],
)
def test_rule(pilot_sd, pilot_particles, expected):
    assert particles_for(pilot_sd, pilot_particles) == expected


@pytest.mark.parametrize(
    "bad, error",
    [("many", ValueError), (64.0, TypeError), (None, TypeError), (True, TypeError)],
)
def test_num_particles_must_be_an_integer_or_auto(bad, error):
    with pytest.raises(error, match=r"num_particles=.* must be an integer"):
        AST(lambda: None, num_particles=bad)


def _fake_pilots(monkeypatch, outcome):
    """Replace the pilot run by ``outcome(n) -> sd``; return the pilots' N."""
    calls = []

    def pilot(key, logdensity_fn, reference, config, tempering_ess, n, warmup, progress):
        calls.append(n)
        return outcome(n), 1000 * n

    monkeypatch.setattr(sizing, "_pilot", pilot)
    return calls


@pytest.mark.parametrize(
    "outcome, pilots, chosen",
    [
        (lambda n: 0.3, [32], 32),  # already precise: the floor
        (lambda n: 1.2, [32], 128),  # 4 × N₀: extrapolated, no second pilot
        # 32·6.25 > 4·32: measure at 128, where 0.3 is enough (the rule's 32 is not trusted)
        (lambda n: 1.5 if n == 32 else 0.3, [32, 128], 128),
        (lambda n: 8.0 if n == 32 else 0.9, [32, 128], 512),  # 128·2.25 → 512
        (lambda n: 10.0, [32, 128, 512], 2048),  # capped, with a warning
    ],
)
def test_pilots_grow_until_the_rule_extrapolates_at_most_fourfold(
    monkeypatch, outcome, pilots, chosen
):
    calls = _fake_pilots(monkeypatch, outcome)
    config = TransportConfig(num_particles=32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = sizing.choose_num_particles(jax.random.key(0), None, None, config, 0.05, 3)
    assert calls == pilots
    assert result.num_particles == chosen
    assert result.pilot_particles == pilots[-1]
    assert result.num_evaluations == 1000 * sum(pilots)
    assert result.predicted_sd == pytest.approx(outcome(pilots[-1]) * (pilots[-1] / chosen) ** 0.5)
    capped = [w for w in caught if "would need more than 2048 particles" in str(w.message)]
    assert len(capped) == (chosen == 2048)


def test_failed_pilot_says_it_was_the_pilot(monkeypatch):
    """A pilot sweep whose particles all get zero weight stops the driver's run; the error says
    that it came from ``num_particles="auto"``'s pilot, and how to skip it."""

    def failing(*args, **kwargs):
        raise FloatingPointError("Every particle got zero weight during the frozen sweep.")

    monkeypatch.setattr(sizing.driver, "run", failing)
    config = TransportConfig(num_particles=32)
    message = r"auto'.*pilot run with 32 .*zero weight.*integer"
    with pytest.raises(FloatingPointError, match=message):
        sizing.choose_num_particles(jax.random.key(0), None, None, config, 0.05, 3)


def test_audit_flags_a_spread_beyond_the_pilot_and_a_stuck_chain():
    """Seed 0, synthetic proposals: a spread at the pilot's prediction and a chain that accepts
    at the healthy rate pass; a spread 2.5× the prediction, or a stretch of 40 proposals with
    acceptance probabilities 0.02, is flagged with the measured numbers and a larger N."""
    rng = np.random.default_rng(0)
    pilot = sizing.Sizing(64, 0.6, 64, 0.6, 1000)
    healthy = [rng.normal(0.0, 0.6, 200) for _ in range(2)]
    rate = [np.full(200, 0.67) for _ in range(2)]
    assert sizing.audit(healthy, rate, 64, pilot) == []
    assert sizing.audit(healthy, rate, 64, None) == []

    wide = [rng.normal(0.0, 1.5, 200) for _ in range(2)]
    (spread,) = [m for m in sizing.audit(wide, rate, 64, pilot) if "spread" in m]
    assert "beyond the 0.60" in spread and "num_particles=512" in spread, spread
    assert sizing.audit(wide, rate, 64, None) == []  # no pilot, no prediction to test

    stuck = rate[0].copy()
    stuck[50:90] = 0.02
    messages = sizing.audit(healthy, [rate[0], stuck], 64, None)
    assert len(messages) == 1 and messages[0].startswith("Chain 1 expected less than one")
    assert "over 40 consecutive" in messages[0] and "num_particles=128" in messages[0]
