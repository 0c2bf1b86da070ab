"""``num_particles="auto"``: the rule N = N₀(σ̂₀/σ*)², rounded up to a power of two and bounded.
The pilot's prediction against the chosen N's measured spread is checked in
``test_compare.py::test_eight_schools_table_and_figure``."""

import math

import pytest

from numpyro_transport import AST
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
        (math.nan, 32, MAX_PARTICLES),  # a pilot sweep with Ẑ = 0
        (math.inf, 32, MAX_PARTICLES),
    ],
)
def test_rule(pilot_sd, pilot_particles, expected):
    assert particles_for(pilot_sd, pilot_particles) == expected


@pytest.mark.parametrize("bad", ["many", 64.0, None])
def test_num_particles_must_be_an_integer_or_auto(bad):
    with pytest.raises(ValueError, match=r"num_particles=.* must be an integer or 'auto'"):
        AST(lambda: None, num_particles=bad)
