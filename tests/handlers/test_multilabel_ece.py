"""The Ignite handler ``MultiLabelECE``: the expected calibration error over an engine's batches, masks honoured."""

import pytest
import torch
from ignite.engine import Engine

from cxrkd_monai.handlers import MultiLabelECE
from cxrkd_monai.metrics import expected_calibration_error


def test_handler_matches_function_over_batches():
    torch.manual_seed(0)
    p, y = torch.rand(30, 4), (torch.rand(30, 4) > 0.5).float()
    engine = Engine(lambda e, batch: batch)
    MultiLabelECE(num_bins=5).attach(engine, "ece")
    engine.run([(p[:10], y[:10]), (p[10:], y[10:])])
    assert engine.state.metrics["ece"] == pytest.approx(expected_calibration_error(p, y, 5))


def test_handler_honours_the_mask():
    torch.manual_seed(1)
    p, y, m = torch.rand(30, 4), (torch.rand(30, 4) > 0.5).float(), (torch.rand(30, 4) > 0.4).float()
    engine = Engine(lambda e, batch: batch)
    MultiLabelECE(num_bins=5, output_transform=lambda out: out[:2], mask_transform=lambda batch: batch[2]).attach(
        engine, "ece"
    )
    engine.run([(p[:10], y[:10], m[:10]), (p[10:], y[10:], m[10:])])
    observed = m > 0
    assert engine.state.metrics["ece"] == pytest.approx(
        expected_calibration_error(p[observed][:, None], y[observed][:, None], 5)
    )
    assert engine.state.metrics["ece"] != pytest.approx(expected_calibration_error(p, y, 5))
