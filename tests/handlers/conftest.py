"""Helpers that the tests of the metric handlers share."""

from __future__ import annotations

import numpy as np
import torch


def decollated_batches(
    scores: np.ndarray, labels: np.ndarray, mask: np.ndarray, batch_size: int = 16
) -> list[list[dict[str, torch.Tensor]]]:
    """Batches as a MONAI evaluator, such as the bundles', leaves them: decollated, ``pred_prob`` and ``label`` in
    the output, ``label_mask`` in the batch (an engine that returns its batch has both in one). ``scores``,
    ``labels`` and ``mask``: ``(N, C)``; each item holds one row of each as a float32 tensor."""
    items = [
        {
            "pred_prob": torch.tensor(scores[i], dtype=torch.float32),
            "label": torch.tensor(labels[i], dtype=torch.float32),
            "label_mask": torch.tensor(mask[i], dtype=torch.float32),
        }
        for i in range(len(labels))
    ]
    return [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
