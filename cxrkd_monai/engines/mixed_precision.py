"""Mixed precision for the package's custom training iterations, on GPU and CPU alike."""

from __future__ import annotations

import torch
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents

__all__ = ["autocast_for", "backward_and_step"]


def autocast_for(engine: SupervisedTrainer) -> torch.autocast:
    """``torch.autocast`` on the engine's device type, enabled by ``engine.amp``.

    The dtype comes from ``amp_kwargs["dtype"]``; by default float16 on CUDA and bfloat16 on CPU (the
    only reduced precision CPU autocast supports). MONAI's own ``SupervisedTrainer`` autocasts on CUDA
    only, so the custom iterations use this instead.
    """
    device_type = torch.device(engine.state.device).type
    kwargs = dict(engine.amp_kwargs)
    kwargs.setdefault("dtype", torch.float16 if device_type == "cuda" else torch.bfloat16)
    return torch.autocast(device_type, enabled=engine.amp, **kwargs)


def backward_and_step(engine: SupervisedTrainer, loss: torch.Tensor) -> None:
    """Backward pass and optimiser step, through the engine's grad scaler when one is active."""
    scaler = engine.scaler if engine.amp else None
    if scaler is not None and scaler.is_enabled():
        scaler.scale(loss).backward()
        engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
        scaler.step(engine.optimizer)
        scaler.update()
    else:
        loss.backward()
        engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
        engine.optimizer.step()
