"""Small Ignite handlers shared by the bundles."""

from __future__ import annotations

from collections.abc import Callable

from ignite.engine import Engine, Events

__all__ = ["AttributeScheduleHandler"]


class AttributeScheduleHandler:
    """Sets ``setattr(target, attribute, schedule(step))`` before every iteration.

    Used for VKD's cyclical β annealing: ``target`` is the :class:`~cxrkd_monai.losses.VKDLoss`,
    ``attribute`` is ``"beta"`` and ``schedule`` a
    :class:`~cxrkd_monai.losses.CyclicalAnnealingSchedule`. ``step`` counts iterations from 0. The value
    is also stored as ``engine.state.metrics[attribute]`` so that stats and TensorBoard handlers log it.

    The handler keeps no state of its own: the value is a function of ``engine.state.iteration`` alone, so a
    run resumed from a checkpoint of the trainer's state continues the schedule where it stopped.
    """

    def __init__(self, target: object, attribute: str, schedule: Callable[[int], float]) -> None:
        if not hasattr(target, attribute):
            raise AttributeError(f"{type(target).__name__} has no attribute '{attribute}' to schedule.")
        self.target = target
        self.attribute = attribute
        self.schedule = schedule

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        value = float(self.schedule(engine.state.iteration - 1))
        setattr(self.target, self.attribute, value)
        engine.state.metrics[self.attribute] = value
