"""Cyclical linear annealing of a loss weight (Fu et al., NAACL 2019), used for the VKD KL weight ``beta``.

Restarting the KL weight from 0 several times lets the latent pick up information from the text posterior
before the KL pulls posterior and prior together, which counters posterior collapse.
"""

from __future__ import annotations

__all__ = ["CyclicalAnnealingSchedule"]


class CyclicalAnnealingSchedule:
    """Weight at a training step: ``num_cycles`` cycles, each a linear ramp from 0 followed by a plateau.

    The ``total_steps`` are split into ``num_cycles`` equal cycles of ``total_steps / num_cycles`` steps.
    Within a cycle, at fraction ``tau`` in ``[0, 1)`` of it, the weight is
    ``max_value * min(1, tau / ratio)``: it rises linearly from 0 over the first ``ratio`` of the cycle and
    then stays at ``max_value``. Steps at or after ``total_steps`` return ``max_value``.

    Args:
        total_steps: number of steps the schedule covers (iterations, or epochs if called per epoch).
        num_cycles: number of ramp-and-plateau cycles.
        max_value: weight on the plateau.
        ratio: fraction of each cycle spent ramping, in ``(0, 1]``.

    Example::

        schedule = CyclicalAnnealingSchedule(total_steps=8, num_cycles=2, max_value=1.0, ratio=0.5)
        [schedule(step) for step in range(8)]  # [0.0, 0.5, 1.0, 1.0, 0.0, 0.5, 1.0, 1.0]
    """

    def __init__(
        self, total_steps: int, num_cycles: int = 4, max_value: float = 1e-3, ratio: float = 0.5
    ) -> None:
        if total_steps < 1:
            raise ValueError(f"total_steps must be a positive integer, got {total_steps}.")
        if not 1 <= num_cycles <= total_steps:
            raise ValueError(f"num_cycles must be in [1, total_steps={total_steps}], got {num_cycles}.")
        if max_value < 0:
            raise ValueError(f"max_value must be >= 0, got {max_value}.")
        if not 0 < ratio <= 1:
            raise ValueError(f"ratio must be in (0, 1], got {ratio}.")
        self.total_steps = total_steps
        self.num_cycles = num_cycles
        self.max_value = float(max_value)
        self.ratio = float(ratio)

    @property
    def cycle_length(self) -> float:
        """Steps per cycle (fractional when ``total_steps`` is not a multiple of ``num_cycles``)."""
        return self.total_steps / self.num_cycles

    def __call__(self, step: int) -> float:
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}.")
        if step >= self.total_steps:
            return self.max_value
        tau = (step % self.cycle_length) / self.cycle_length
        return self.max_value * min(1.0, tau / self.ratio)
