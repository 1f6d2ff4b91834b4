import csv
import json

import pytest
import torch
from ignite.engine import Engine, Events
from monai.data import DataLoader, MetaTensor
from monai.engines import SupervisedEvaluator
from monai.transforms import Compose

from cxrkd_monai.data.failed_items import DropFailedItems, FailureTolerantDataset
from cxrkd_monai.handlers import MetricsWriter, PredictionWriter
from cxrkd_monai.handlers.failed_items import PARTIAL_FAILURE_EXIT_CODE, FailedItemsWriter, skip_batches_without_items
from cxrkd_monai.transforms import UnreadableImageError
from cxrkd_monai.transforms.failures import failure_reason
from cxrkd_monai.utils.atomic_files import write_text_atomically


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


def test_write_text_atomically_keeps_the_old_file_when_the_replace_fails(tmp_path, monkeypatch):
    path = tmp_path / "predictions.csv"
    write_text_atomically(path, "old\n")

    def failing_replace(source, target):
        raise OSError("disk full")

    monkeypatch.setattr("cxrkd_monai.utils.atomic_files.os.replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_text_atomically(path, "new\n")
    assert path.read_text() == "old\n"
    assert [entry.name for entry in tmp_path.iterdir()] == ["predictions.csv"]  # no temporary file left behind


# --- per-item failures in a MONAI evaluator ----------------------------------------------------------------


class FailOnOddValues:
    """A per-item chain that loads ``{"image": "<n>"}`` as a 1 x 2 x 2 tensor of n, and fails on odd n."""

    def __call__(self, item):
        value = int(item["image"])
        if value % 2:
            raise ValueError(f"item {value} is odd")
        image = MetaTensor(torch.full((1, 2, 2), float(value)), meta={"filename_or_obj": item["image"]})
        return {"image": image}


def _record_unless_unrecordable(unrecordable: set[str]):
    """A ``record_fn``: ``{"image", "mean"}`` per item, a failure record for the images in ``unrecordable``."""

    def record_fn(batch, output):
        names = [item["image"].meta["filename_or_obj"] for item in batch]
        return [
            {"image": name, "failure": f"OSError: cannot write the map of {name}"}
            if name in unrecordable
            else {"image": name, "mean": float(out["pred"].mean())}
            for name, out in zip(names, output)
        ]

    return record_fn


def _evaluator(values, tmp_path, batch_size, unrecordable=()):
    dataset = FailureTolerantDataset([{"image": str(v)} for v in values], transform=Compose([FailOnOddValues()]))
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=DropFailedItems())
    failed_items = FailedItemsWriter(tmp_path)
    records = PredictionWriter(
        str(tmp_path), record_fn=_record_unless_unrecordable(set(unrecordable)), failed_items=failed_items
    )
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=loader,
        network=torch.nn.Identity(),
        val_handlers=[records, failed_items],
        iteration_update=skip_batches_without_items,
    )
    return evaluator, failed_items


def test_failed_items_are_written_to_errors_csv_and_the_rest_predicted(tmp_path):
    """3, 5 and 7 fail; with batch size 2 the batches are (0, 2), (3, 5), (4, 7), (6): one holds no loaded item."""
    evaluator, failed_items = _evaluator([0, 2, 3, 5, 4, 7, 6], tmp_path, batch_size=2)
    evaluator.run()

    records = json.loads((tmp_path / "predictions.json").read_text())
    assert [(r["image"], r["mean"]) for r in records] == [("0", 0.0), ("2", 2.0), ("4", 4.0), ("6", 6.0)]
    with open(tmp_path / "errors.csv") as f:
        errors = list(csv.DictReader(f))
    assert [e["image"] for e in errors] == ["3", "5", "7"]
    assert errors[0]["reason"] == "ValueError: item 3 is odd"  # MONAI's "applying transform" wrapper removed
    with pytest.raises(SystemExit) as exited:
        failed_items.exit_if_any()
    assert exited.value.code == PARTIAL_FAILURE_EXIT_CODE == 3


def test_an_image_whose_prediction_cannot_be_recorded_is_a_failed_item_too(tmp_path):
    """3 fails to load, 4 to be recorded (after the model): both are error rows, the rest predicted, exit 3."""
    evaluator, failed_items = _evaluator([0, 3, 4, 6], tmp_path, batch_size=2, unrecordable={"4"})
    evaluator.run()

    assert [r["image"] for r in json.loads((tmp_path / "predictions.json").read_text())] == ["0", "6"]
    with open(tmp_path / "errors.csv") as f:
        errors = list(csv.DictReader(f))
    assert errors == [
        {"image": "3", "reason": "ValueError: item 3 is odd"},
        {"image": "4", "reason": "OSError: cannot write the map of 4"},
    ]
    with pytest.raises(SystemExit) as exited:
        failed_items.exit_if_any()
    assert exited.value.code == PARTIAL_FAILURE_EXIT_CODE


def test_an_unrecordable_image_without_a_failed_items_writer_stops_the_run_naming_it(tmp_path):
    engine = Engine(lambda e, batch: batch)
    PredictionWriter(str(tmp_path), record_fn=_record_unless_unrecordable({"a.png"})).attach(engine)
    image = MetaTensor(torch.zeros(1, 2, 2), meta={"filename_or_obj": "a.png"})
    with pytest.raises(RuntimeError, match=r"prediction of a\.png could not be recorded: OSError: cannot write"):
        engine.run([[{"image": image}]])
    assert not (tmp_path / "predictions.json").exists()


def test_a_clean_run_writes_an_empty_errors_csv_and_does_not_exit(tmp_path):
    evaluator, failed_items = _evaluator([0, 2, 4], tmp_path, batch_size=2)
    evaluator.run()
    assert (tmp_path / "errors.csv").read_text().splitlines() == ["image,reason"]
    failed_items.exit_if_any()


def test_failure_reason_skips_monai_wrappers_only():
    error = UnreadableImageError("Image file 'a.png' cannot be decoded")
    error.__cause__ = KeyError("decoder")
    wrapped = RuntimeError("applying transform <Compose>")
    wrapped.__cause__ = error
    assert failure_reason(wrapped) == "UnreadableImageError: Image file 'a.png' cannot be decoded"
    assert failure_reason(RuntimeError("applying transform <X>")) == "RuntimeError: applying transform <X>"
