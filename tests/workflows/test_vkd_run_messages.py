"""What a failing VKD training run tells its user: no report text anywhere, the non-finite loss named in full."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import VKD_CONFIGS, config_workflow, error_chain
from tests.workflows.conftest import vkd_tiny_overrides

pytestmark = pytest.mark.slow

PRIVATE = "QX7PRIVATE"
"""A word that only the broken items' report text holds: found in any output, the text leaked."""


def _surrogate(items: list) -> None:
    # The old message quoted the 20 characters before the surrogate: "near 'normal QX7PRIVATE '".
    items[1]["report"] = f"FINDINGS: Heart normal {PRIVATE} \ud800 lungs clear."


def _missing(items: list) -> None:
    del items[1]["report"]


def _not_a_string(items: list) -> None:
    items[1]["report"] = [f"FINDINGS: Heart normal {PRIVATE}."]


def _not_an_object(items: list) -> None:
    items[1] = [items[1]["image"], f"FINDINGS: Heart normal {PRIVATE}."]


@pytest.mark.parametrize(
    "edit, expected",
    [
        (_surrogate, "item 1 (image '{image}'): 'report': text cannot be encoded as UTF-8: a lone surrogate U+D800 at "
                     "position 34 of 48 characters."),
        (_missing, "{image}: 'report' is missing or empty"),
        (_not_a_string, "item 1 (image '{image}'): 'report' must be a string, got list."),
        (_not_an_object, "item 1 must be an object with an 'image' path, got list."),
    ],
    ids=["surrogate", "missing", "not_a_string", "not_an_object"],
)  # fmt: skip
def test_bad_reports_stop_training_without_any_report_text_in_logs_or_files(
    phantom, tmp_path, edit: Callable[[list], None], expected: str
):
    """``monai.bundle run`` of train.json as a user runs it; its console output (the bundle's logging.conf, the
    traceback) and every file the run wrote are searched for the text of every report in the datalist."""
    datalist = json.loads((phantom / "datalist_vkd.json").read_text())
    for split in ("training", "validation", "test"):
        for item in datalist[split]:
            item["image"] = str(phantom / item["image"])
    reports = {item["report"] for split in ("training", "validation", "test") for item in datalist[split]}
    image = datalist["training"][1]["image"]
    edit(datalist["training"])
    datalist_path = tmp_path / "datalist_vkd.json"
    datalist_path.write_text(json.dumps(datalist))  # ASCII: the lone surrogate as the escape "\ud800"
    run_dir = tmp_path / "run"
    overrides = vkd_tiny_overrides(
        phantom, run_dir, bundle_root=str(run_dir), datalist=str(datalist_path), cache_dir=str(run_dir / "cache"),
        epochs=1, image_size=[32, 32],
    )  # fmt: skip
    command = [
        sys.executable, "-m", "monai.bundle", "run",
        "--config_file", str(VKD_CONFIGS / "train.json"),
        "--meta_file", str(VKD_CONFIGS / "metadata.json"),
        "--logging_file", str(VKD_CONFIGS / "logging.conf"),
        *(f"--{key}={value if isinstance(value, bool) else json.dumps(value)}" for key, value in overrides.items()),
    ]  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert expected.format(image=image) in output, output[-3000:]

    written = {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()}
    for text in (PRIVATE, *reports):
        assert text not in output, f"report text in the run's output: {text[:30]!r}..."
        leaks = [str(path) for path, content in written.items() if text.encode("utf-8") in content]
        assert not leaks, f"report text in {leaks}"


def test_non_finite_loss_names_epoch_iteration_and_images(phantom, tmp_path):
    """As the fracture bundle's trainers: a NaN prior-BCE weight makes the first loss NaN; the message names where."""
    overrides = vkd_tiny_overrides(phantom, tmp_path, bundle_root=str(tmp_path), cache_dir=str(tmp_path / "cache"),
                               epochs=1, batch_size=4, image_size=[32, 32], gamma=float("nan"))  # fmt: skip
    workflow = config_workflow([VKD_CONFIGS / "train.json"], "train", **overrides)
    with pytest.raises(Exception) as error:
        workflow.run()
    guard_errors = [e for e in error_chain(error.value) if isinstance(e, FloatingPointError)]
    assert guard_errors, f"training must stop with the guard's FloatingPointError, got {error.value!r}"
    message = str(guard_errors[0])
    assert message.startswith("Training loss is not finite (nan) at epoch 1, iteration 1 of 4 (iteration 1 overall)")
    images = message.split("images of the batch: ")[1].rstrip(".").split(", ")
    assert len(images) == 4 and all(Path(name).parent == phantom / "images" for name in images), message
    assert workflow.trainer.state.iteration == 1
