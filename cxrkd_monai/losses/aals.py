"""Adaptive asymmetric label sharpening (AALS) of a teacher's probability maps.

On record-positive images without region annotations (D_P) the mean teacher's map ``y`` is turned
into a training target for the student by

    ``S(y) = sigmoid(a * logit(y) + (1 - a) * logit(t))``,  ``a = a0 - (a0 - 1) * y_max``,

where ``y_max`` is the teacher's peak response for that image and fracture type. ``S`` fixes ``t``
(``S(t) = t``) and, for ``a >= 1``, pushes values above ``t`` up and values below ``t`` down. The
asymmetric target ``max(S(y), y)`` keeps only the upward push, so nothing is ever lowered. The
slope ``a`` is largest when the teacher's peak is low, i.e. when it has missed a fracture that the
record says is there.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["LabelSharpening", "asymmetric_label_sharpening"]


def asymmetric_label_sharpening(
    prob_map: torch.Tensor,
    a0: float = 4.0,
    threshold: float = 0.4,
    asymmetric: bool = True,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Sharpen probability maps around ``threshold`` with a slope that adapts to each map's peak.

    Args:
        prob_map: teacher probabilities in ``[0, 1]``, ``(B, K, *S)``: batch, fracture types, spatial.
        a0: slope of the sharpening when the map's peak is 0; must be ``>= 1``. The slope falls
            linearly to 1 (no sharpening) as the peak rises to 1.
        threshold: the fixed point ``t`` of the sharpening, ``0 < t < 1``.
        asymmetric: return ``max(S(y), y)`` (only raise values) instead of ``S(y)``.
        eps: probabilities are clamped to ``[eps, 1 - eps]`` before the logit.

    Returns:
        the sharpened map, same shape and dtype as ``prob_map``.

    Example::

        >>> y = torch.tensor([0.2, 0.4, 0.6]).view(1, 1, 1, 3)
        >>> asymmetric_label_sharpening(y)  # the peak 0.6 gives a = 2.2
        tensor([[[[0.2000, 0.4000, 0.7988]]]])
    """
    if a0 < 1:
        raise ValueError(f"a0 must be >= 1, got a0={a0}.")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must lie in (0, 1), got threshold={threshold}.")
    if prob_map.ndim < 3:
        raise ValueError(f"prob_map must have shape (B, K, *spatial), got shape {tuple(prob_map.shape)}.")
    spatial_dims = tuple(range(2, prob_map.ndim))
    peak = prob_map.amax(dim=spatial_dims, keepdim=True)
    slope = a0 - (a0 - 1.0) * peak
    clamped = prob_map.clamp(eps, 1.0 - eps)
    logit_threshold = torch.logit(torch.as_tensor(threshold, dtype=prob_map.dtype, device=prob_map.device))
    sharpened = torch.sigmoid(slope * torch.logit(clamped) + (1.0 - slope) * logit_threshold)
    if asymmetric:
        # Values at or below t are passed through untouched: S(y) <= y there, and taking the max would
        # only let the clamp above lift exact zeros to a tiny positive value.
        return torch.where(prob_map > threshold, torch.maximum(sharpened, prob_map), prob_map)
    return sharpened


class LabelSharpening(nn.Module):
    """Turn a teacher's probability map into a student target, as the stage-2 configuration selects.

    Modes:
        - ``"aals"``: adaptive asymmetric sharpening, ``max(S(y), y)``;
        - ``"symmetric"``: ``S(y)``, which also lowers values below the threshold;
        - ``"none"``: the teacher map itself (plain teacher-student distillation).

    The target is detached: it is a label for the student, not a path for gradients into the teacher.

    Args:
        mode: one of ``"aals"``, ``"symmetric"``, ``"none"``.
        a0: slope at a zero peak, see :func:`asymmetric_label_sharpening`.
        threshold: fixed point of the sharpening.

    Shapes:
        ``teacher_prob``: ``(B, K, *S)`` probabilities; output: same shape.

    Example::

        >>> sharpen = LabelSharpening(mode="aals", a0=4.0, threshold=0.4)
        >>> target = sharpen(torch.sigmoid(teacher(images)))
    """

    modes = ("aals", "symmetric", "none")

    def __init__(self, mode: str = "aals", a0: float = 4.0, threshold: float = 0.4) -> None:
        super().__init__()
        if mode not in self.modes:
            raise ValueError(f"mode must be one of {self.modes}, got mode={mode!r}.")
        if a0 < 1:
            raise ValueError(f"a0 must be >= 1, got a0={a0}.")
        if not 0 < threshold < 1:
            raise ValueError(f"threshold must lie in (0, 1), got threshold={threshold}.")
        self.mode = mode
        self.a0 = a0
        self.threshold = threshold

    def forward(self, teacher_prob: torch.Tensor) -> torch.Tensor:
        teacher_prob = teacher_prob.detach()
        if self.mode == "none":
            return teacher_prob
        return asymmetric_label_sharpening(
            teacher_prob, a0=self.a0, threshold=self.threshold, asymmetric=self.mode == "aals"
        )

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, a0={self.a0}, threshold={self.threshold}"
