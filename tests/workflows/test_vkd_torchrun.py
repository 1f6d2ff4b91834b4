"""One 2-process ``torchrun -m monai.bundle run`` of the VKD bundle's ``multi_gpu_train.json`` on the CPU (gloo),
checked three ways: each validation item is validated once, one shared preprocessed cache is built by both ranks,
and only rank 0 writes TensorBoard events.

Under DDP each rank validates its own share of the validation set (a ``DistributedSampler`` that does not pad the
shares to equal length), and the validation metrics gather every rank's items. An extra config file, merged after
the bundle's own, attaches :class:`tests.workflows.conftest.ValidatedItemsRecorder` to the evaluator: each rank
records the items it saw and the metric it computed. Every item of an odd-sized validation set (equal shares would
repeat one) must be seen by exactly one rank, and the AUROC every rank reports must be the AUROC of all items,
each counted once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from cxrkd_monai.metrics import MultiLabelAUROCMetric
from cxrkd_monai.phantom import generate_phantom_dataset
from tests.conftest import REPO_ROOT, VKD_CONFIGS
from tests.workflows.conftest import cache_index, unique_images, vkd_tiny_overrides

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def odd_validation_set(tmp_path_factory) -> Path:
    """A phantom dataset whose datalist has an odd number (5) of validation items, with absolute image paths."""
    phantom = tmp_path_factory.mktemp("odd_validation_phantom")
    generate_phantom_dataset(output_dir=str(phantom), num_patients=16, seed=3, image_size=(72, 64))
    datalist = json.loads((phantom / "datalist_vkd.json").read_text())
    for split in ("training", "validation", "test"):
        for item in datalist[split]:
            item["image"] = str(phantom / item["image"])
    assert len(datalist["validation"]) >= 5
    datalist["validation"] = datalist["validation"][:5]
    (phantom / "datalist_vkd.json").write_text(json.dumps(datalist))
    return phantom


@pytest.fixture(scope="module")
def torchrun_run(odd_validation_set, tmp_path_factory) -> Path:
    """The run folder of one ``torchrun --nproc_per_node=2 -m monai.bundle run`` of ``train.json`` and
    ``multi_gpu_train.json`` (one epoch, a preprocessed cache in ``cache/``), with ``validated_rank<r>.json``."""
    run_dir = tmp_path_factory.mktemp("vkd_torchrun")
    recorder_config = run_dir / "record_validated_items.json"
    recorder_config.write_text(json.dumps({
        "validated_items_recorder": {
            "_target_": "tests.workflows.conftest.ValidatedItemsRecorder", "output_dir": str(run_dir),
        },
        "+initialize": ["$@validated_items_recorder.attach(@validate#evaluator)"],
    }))  # fmt: skip
    overrides = vkd_tiny_overrides(
        odd_validation_set, run_dir, epochs=1, batch_size=2, cache_dir=str(run_dir / "cache")
    )
    args = []
    for key, value in overrides.items():
        args += [f"--{key}", str(value) if isinstance(value, (str, bool)) else json.dumps(value)]
    configs = [str(VKD_CONFIGS / "train.json"), str(VKD_CONFIGS / "multi_gpu_train.json"), str(recorder_config)]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
        "-m", "monai.bundle", "run", "--config_file", str(configs),
        "--logging_file", str(VKD_CONFIGS / "logging.conf"), *args,
    ]  # fmt: skip
    # the recorder's module is importable from the repository root
    python_path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=python_path)
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert (run_dir / "models" / "model.pt").is_file()
    return run_dir


def test_two_processes_validate_each_item_once(odd_validation_set, torchrun_run):
    datalist = json.loads((odd_validation_set / "datalist_vkd.json").read_text())
    ranks = [json.loads((torchrun_run / f"validated_rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    # each rank validated its own share: 3 and 2 of the 5 items, none of them twice
    assert sorted(len(r["images"]) for r in ranks) == [2, 3]
    validated = Counter(image for r in ranks for image in r["images"])
    assert validated == Counter(item["image"] for item in datalist["validation"])

    # the metric every rank reports is the AUROC of the 5 items, gathered from both ranks once each
    metric = MultiLabelAUROCMetric(datalist["class_names"])
    for r in ranks:
        metric(torch.tensor(r["pred_prob"]), torch.tensor(r["label"]), mask=torch.tensor(r["label_mask"]))
    expected = metric.aggregate()
    assert expected == expected, "no class has both labels among the 5 validation items"
    for r in ranks:
        assert r["val_macro_auroc"] == pytest.approx(expected, abs=1e-9)


def test_two_processes_build_and_read_one_shared_cache(odd_validation_set, torchrun_run):
    index = cache_index(torchrun_run / "cache")
    # each entry built once, by one of the two ranks, into the one cache both read: a rank that had found an
    # entry missing when reading would have stored it again (a duplicate key)
    assert len(index) == len(np.unique(index["key"])) == unique_images(odd_validation_set / "datalist_vkd.json")
    writers = {path.name.split("-")[3] for path in (torchrun_run / "cache").glob("v*/shard-*.idx.npy")}
    assert len(writers) == 2


def test_only_rank0_writes_tensorboard_events(torchrun_run, tensorboard_writers):
    # training and validation scalars, one process id
    assert len(tensorboard_writers(torchrun_run / "eval")) == 1
