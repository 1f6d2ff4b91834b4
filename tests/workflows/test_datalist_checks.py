"""Both bundles refuse a datalist they cannot run on before any work: an empty split, class names in another order.

An empty training or validation split stops training before its first epoch, naming the datalist and the split;
evaluation and inference over an empty split stop the same way. ``class_names`` that
differ from the datalist's own ``class_names`` in order or content stop training and evaluation with both lists
shown: labels are read by position, so a reordered list would train every class on another's labels.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tests.conftest import BUNDLES, FRACTURE_CONFIGS, VKD_CONFIGS, config_workflow, error_messages
from tests.workflows.conftest import FRACTURE_TINY, vkd_tiny_overrides

pytestmark = pytest.mark.slow

VKD_TRAIN = [VKD_CONFIGS / "train.json"]
STAGE1 = [FRACTURE_CONFIGS / "train_teacher.json"]
STAGE2 = [*STAGE1, FRACTURE_CONFIGS / "train_student.json"]
TRAININGS = {"vkd": VKD_TRAIN, "fracture_stage1": STAGE1, "fracture_stage2": STAGE2}
DATALIST_NAMES = {"vkd": "datalist_vkd.json", "fracture": "datalist_fracture.json"}


def _bundle(run: str) -> str:
    return "vkd" if run == "vkd" else "fracture"


def _write_datalist(phantom: Path, folder: Path, bundle: str, edit) -> Path:
    """The phantom's datalist of ``bundle`` with absolute image paths and ``edit(content)`` applied, written under
    the name the bundle's configs read in ``folder`` (the run's ``dataset_dir``)."""
    content = json.loads((phantom / DATALIST_NAMES[bundle]).read_text())
    for split in ("training", "validation", "test"):
        for item in content[split]:
            item["image"] = str(phantom / item["image"])
    edit(content)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / DATALIST_NAMES[bundle]
    path.write_text(json.dumps(content))
    return path


def _overrides(run: str, phantom: Path, dataset_dir: Path, run_dir: Path, **extra) -> dict:
    """Tiny settings for ``run`` (a key of :data:`TRAININGS`) reading the datalist in ``dataset_dir``."""
    if run == "vkd":
        return vkd_tiny_overrides(phantom, run_dir, dataset_dir=str(dataset_dir), epochs=1, **extra)
    return {**FRACTURE_TINY, "bundle_root": str(run_dir), "dataset_dir": str(dataset_dir), **extra}


def _refused_run(configs: list[Path], workflow_type: str, overrides: dict) -> str:
    """The messages of the error that ``configs`` stop with when run."""
    with pytest.raises(Exception) as raised:
        config_workflow(configs, workflow_type, **overrides).run()
    return error_messages(raised.value)


def _written_files(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


@pytest.mark.parametrize("split", ["training", "validation"])
@pytest.mark.parametrize("run", sorted(TRAININGS))
def test_training_on_an_empty_split_stops_before_the_first_epoch(phantom, tmp_path, run, split):
    datalist = _write_datalist(phantom, tmp_path / "data", _bundle(run), lambda content: content[split].clear())
    run_dir = tmp_path / "run"
    message = _refused_run(TRAININGS[run], "train", _overrides(run, phantom, datalist.parent, run_dir))
    assert f"Datalist {datalist} '{split}' has no items" in message
    models = run_dir / "models"
    assert not models.exists() or _written_files(models) == []  # no epoch ran: no checkpoint


def test_fracture_training_without_items_of_its_subsets_names_them(phantom, tmp_path):
    """Stage 1 trains on D_R and D_N: a training split of D_P items only leaves it nothing."""

    def only_dp(content):
        content["training"] = [item for item in content["training"] if item["subset"] == "D_P"]
        assert content["training"]

    datalist = _write_datalist(phantom, tmp_path / "data", "fracture", only_dp)
    message = _refused_run(STAGE1, "train", _overrides("fracture_stage1", phantom, datalist.parent, tmp_path / "run"))
    assert f"Datalist {datalist} 'training' has no items of subset D_R, D_N" in message


@pytest.mark.parametrize("bundle", ["vkd", "fracture"])
def test_evaluation_of_an_empty_split_is_refused(phantom, tmp_path, bundle):
    datalist = _write_datalist(phantom, tmp_path / "data", bundle, lambda content: content["test"].clear())
    run = "vkd" if bundle == "vkd" else "fracture_stage1"
    configs = [*TRAININGS[run], (VKD_CONFIGS if bundle == "vkd" else FRACTURE_CONFIGS) / "evaluate.json"]
    message = _refused_run(configs, "eval", _overrides(run, phantom, datalist.parent, tmp_path / "run"))
    assert f"Datalist {datalist} 'test' has no items" in message


@pytest.mark.parametrize("bundle", ["vkd", "fracture"])
def test_inference_over_an_empty_split_stops_with_a_message(tmp_path, bundle, caplog):
    """The error ends the run (``monai.bundle run`` exits non-zero); nothing is written, no empty "Wrote" line."""
    datalist = tmp_path / "data" / DATALIST_NAMES[bundle]
    datalist.parent.mkdir()
    datalist.write_text(json.dumps({"test": []}))
    output_dir = tmp_path / "predictions"
    overrides = {
        "bundle_root": str(BUNDLES / ("cxr_vkd_classification" if bundle == "vkd" else "cxr_aals_fracture_detection")),
        "dataset_dir": str(datalist.parent),
        "output_dir": str(output_dir),
        "ckpt_path": str(tmp_path / "model.pt"),
        "num_workers": 0,
    }
    configs = [(VKD_CONFIGS if bundle == "vkd" else FRACTURE_CONFIGS) / "inference.json"]
    with caplog.at_level(logging.INFO):
        message = _refused_run(configs, "infer", overrides)
    assert f"Datalist {datalist} 'test' has no items" in message
    assert not any(record.getMessage().startswith("Wrote") for record in caplog.records)
    assert not output_dir.exists() or _written_files(output_dir) == []


@pytest.mark.parametrize("run", sorted(TRAININGS))
def test_class_names_in_another_order_than_the_datalists_stop_training(phantom, tmp_path, run):
    """``--class_names`` with the datalist's names reversed is refused, both lists shown."""
    bundle = _bundle(run)
    stored = json.loads((phantom / DATALIST_NAMES[bundle]).read_text())["class_names"]
    reversed_names = stored[::-1]
    assert reversed_names != stored
    dataset_dir = _write_datalist(phantom, tmp_path / "data", bundle, lambda content: None).parent
    run_dir = tmp_path / "run"
    message = _refused_run(
        TRAININGS[run], "train", _overrides(run, phantom, dataset_dir, run_dir, class_names=reversed_names)
    )
    assert f"'class_names' {stored} differ from the bundle's class_names {reversed_names}" in message
    models = run_dir / "models"
    assert not models.exists() or _written_files(models) == []


@pytest.mark.parametrize("bundle", ["vkd", "fracture"])
def test_class_names_differing_from_the_datalists_stop_evaluation(phantom, tmp_path, bundle):
    """One class left out: the evaluation would score the kept class's outputs against another's labels."""
    stored = json.loads((phantom / DATALIST_NAMES[bundle]).read_text())["class_names"]
    dataset_dir = _write_datalist(phantom, tmp_path / "data", bundle, lambda content: None).parent
    run = "vkd" if bundle == "vkd" else "fracture_stage1"
    configs = [*TRAININGS[run], (VKD_CONFIGS if bundle == "vkd" else FRACTURE_CONFIGS) / "evaluate.json"]
    overrides = _overrides(run, phantom, dataset_dir, tmp_path / "run", class_names=stored[1:])
    message = _refused_run(configs, "eval", overrides)
    assert f"'class_names' {stored} differ from the bundle's class_names {stored[1:]}" in message
