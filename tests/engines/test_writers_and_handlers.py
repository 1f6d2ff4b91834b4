import csv
import json

import pytest
import torch
from ignite.engine import Engine, Events

from cxrkd_monai.engines import AttributeScheduleHandler, MetricsWriter, PredictionWriter
from cxrkd_monai.losses.annealing import CyclicalAnnealingSchedule


def test_prediction_writer_writes_every_record_to_json_and_csv(tmp_path):
    engine = Engine(lambda e, batch: {"value": batch})
    writer = PredictionWriter(
        str(tmp_path), record_fn=lambda batch, out: [{"id": int(v), "points": [[1, 2]]} for v in out["value"]]
    )
    writer.attach(engine)
    engine.run([torch.tensor([0, 1]), torch.tensor([2])])
    records = json.loads((tmp_path / "predictions.json").read_text())
    assert [r["id"] for r in records] == [0, 1, 2]
    with open(tmp_path / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["id"]) for r in rows] == [0, 1, 2]
    assert json.loads(rows[0]["points"]) == [[1, 2]]


def test_metrics_writer_turns_nan_into_null(tmp_path):
    engine = Engine(lambda e, batch: None)

    @engine.on(Events.EPOCH_COMPLETED)
    def _set(e):
        e.state.metrics.update({"auroc": 0.75, "auroc_rare": float("nan")})

    MetricsWriter(str(tmp_path), extra=lambda: {"run": "test"}).attach(engine)
    engine.run([0])
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"auroc": 0.75, "auroc_rare": None, "run": "test"}


def test_attribute_schedule_handler_follows_the_schedule():
    class Target:
        beta = 1.0

    target, seen = Target(), []
    engine = Engine(lambda e, batch: seen.append(target.beta))
    schedule = CyclicalAnnealingSchedule(total_steps=8, num_cycles=2, max_value=1.0, ratio=0.5)
    AttributeScheduleHandler(target, "beta", schedule).attach(engine)
    engine.run(range(8), max_epochs=1)
    assert seen == pytest.approx([schedule(step) for step in range(8)])
    assert engine.state.metrics["beta"] == pytest.approx(schedule(7))


def test_attribute_schedule_handler_rejects_unknown_attribute():
    with pytest.raises(AttributeError, match="gamma"):
        AttributeScheduleHandler(object(), "gamma", lambda step: 0.0)
