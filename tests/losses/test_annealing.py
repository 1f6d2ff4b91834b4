import pytest

from cxrkd_monai.losses.annealing import CyclicalAnnealingSchedule


def test_two_cycles_of_four_steps():
    schedule = CyclicalAnnealingSchedule(total_steps=8, num_cycles=2, max_value=1.0, ratio=0.5)
    assert [schedule(step) for step in range(8)] == [0.0, 0.5, 1.0, 1.0, 0.0, 0.5, 1.0, 1.0]


def test_authors_defaults_over_100_steps():
    # 4 cycles of 25 steps; the ramp covers 12.5 steps: beta = 1e-3 * step_in_cycle / 12.5, then 1e-3.
    schedule = CyclicalAnnealingSchedule(total_steps=100)
    expected = {0: 0.0, 5: 4e-4, 12: 9.6e-4, 13: 1e-3, 24: 1e-3, 25: 0.0, 30: 4e-4, 75: 0.0, 99: 1e-3}
    for step, value in expected.items():
        assert schedule(step) == pytest.approx(value, abs=1e-12), step


def test_fractional_cycle_length_and_full_ramp():
    schedule = CyclicalAnnealingSchedule(total_steps=10, num_cycles=4, max_value=2.0, ratio=1.0)
    assert schedule.cycle_length == 2.5
    # Step 3 lies 0.5 steps into the second cycle: 2.0 * 0.5 / 2.5; step 5 starts the third cycle.
    assert schedule(3) == pytest.approx(0.4)
    assert schedule(2) == pytest.approx(1.6)
    assert schedule(5) == 0.0


def test_after_the_last_step_the_weight_stays_at_max():
    schedule = CyclicalAnnealingSchedule(total_steps=8, num_cycles=2, max_value=0.3)
    assert schedule(8) == schedule(1000) == 0.3


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(total_steps=0), "total_steps"),
        (dict(total_steps=3, num_cycles=4), "num_cycles"),
        (dict(total_steps=10, max_value=-1.0), "max_value"),
        (dict(total_steps=10, ratio=0.0), "ratio"),
        (dict(total_steps=10, ratio=1.5), "ratio"),
    ],
)
def test_invalid_arguments_are_named(kwargs, name):
    with pytest.raises(ValueError, match=name):
        CyclicalAnnealingSchedule(**kwargs)


def test_negative_step_is_rejected():
    with pytest.raises(ValueError, match="step must be >= 0, got -1"):
        CyclicalAnnealingSchedule(total_steps=10)(-1)
