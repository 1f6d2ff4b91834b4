"""Both bundles' inference through ``python -m monai.bundle run``: a corrupt image, same-named files, an image of
extreme aspect ratio, reruns, a lock; the fracture bundle with its two types and with one (the FracAtlas set-up).

The networks are the bundles' own ``network_def`` at the tiny sizes of the backend-parity test, with random
weights saved as the checkpoint: what is under test is which images get a prediction, an error row or a map, and
the exit status, not the predictions' values.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from PIL import Image

from cxrkd_monai.handlers.failed_items import PARTIAL_FAILURE_EXIT_CODE
from tests.conftest import TINY_INFERENCE

pytestmark = pytest.mark.slow

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"
DATALIST_NAMES = {
    "cxr_vkd_classification": "datalist_vkd.json",
    "cxr_aals_fracture_detection": "datalist_fracture.json",
}
# test id: (bundle, overrides beyond the tiny network); the fracture bundle also with one type, as FracAtlas has
VARIANTS = {
    "cxr_vkd_classification": ("cxr_vkd_classification", {}),
    "cxr_aals_fracture_detection": ("cxr_aals_fracture_detection", {}),
    "cxr_aals_fracture_detection-one_class": ("cxr_aals_fracture_detection", {"class_names": ["fracture"]}),
}
TALL_SIZE = (64, 2000)  # (W, H): 1:31, letterboxed to 2 x 64 grid pixels, half a map pixel at stride 4


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _write_datalist(folder: Path, bundle: str, images: list[Path]) -> Path:
    """A datalist whose ``test`` list is ``images``, under the name the bundle's inference config reads."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / DATALIST_NAMES[bundle]).write_text(json.dumps({"test": [{"image": str(image)} for image in images]}))
    return folder


@pytest.fixture(scope="module")
def images(phantom, tmp_path_factory) -> dict[str, Path]:
    """Five inputs: ``view1_frontal.png`` in ``chexpert/`` and in ``mimic/`` (different images), two more, and
    ``broken/corrupt.png``, a PNG name over bytes that are no image. Also two clean extra images for a rerun, and
    ``extreme/tall.png``, a :data:`TALL_SIZE` radiograph-like gradient with noise."""
    root = tmp_path_factory.mktemp("inputs")
    sources = sorted((phantom / "images").glob("*.png"))
    layout = {
        "chexpert": ("chexpert/view1_frontal.png", sources[0]),
        "mimic": ("mimic/view1_frontal.png", sources[1]),
        "third": ("other/p_a.png", sources[2]),
        "fourth": ("other/p_b.png", sources[3]),
        "rerun_a": ("rerun/p_c.png", sources[4]),
        "rerun_b": ("rerun/p_d.png", sources[5]),
    }
    paths = {}
    for key, (relative, source) in layout.items():
        paths[key] = root / relative
        paths[key].parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, paths[key])
    paths["corrupt"] = root / "broken" / "corrupt.png"
    paths["corrupt"].parent.mkdir()
    paths["corrupt"].write_bytes(b"this is not a PNG file\n" * 8)
    paths["tall"] = root / "extreme" / "tall.png"
    paths["tall"].parent.mkdir()
    width, height = TALL_SIZE
    rows = np.linspace(40.0, 215.0, height)[:, None] + np.random.default_rng(0).normal(0.0, 10.0, (height, width))
    Image.fromarray(np.clip(rows, 0, 255).astype(np.uint8)).save(paths["tall"])
    return paths


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def bundle(request, tmp_path_factory) -> tuple[str, dict]:
    """A bundle name and the overrides that run its inference config on a tiny random-weight checkpoint."""
    name, variant = VARIANTS[request.param]
    work = tmp_path_factory.mktemp(request.param)
    parser = ConfigParser()
    parser.read_config(str(BUNDLES / name / "configs" / "inference.json"))
    overrides = {**TINY_INFERENCE[name], "image_size": [64, 64], "num_workers": 0, "batch_size": 2, **variant}
    if name == "cxr_aals_fracture_detection":
        overrides["save_maps"] = True
    parser.update(overrides)
    torch.manual_seed(0)
    checkpoint = work / "model.pt"
    torch.save(parser.get_parsed_content("network_def").state_dict(), checkpoint)
    return name, {**overrides, "bundle_root": str(BUNDLES / name), "ckpt_path": str(checkpoint)}


def run_inference(bundle: tuple[str, dict], dataset_dir: Path, output_dir: Path) -> subprocess.CompletedProcess:
    """``python -m monai.bundle run --config_file configs/inference.json ...`` from the bundle folder."""
    name, overrides = bundle
    arguments = []
    for key, value in {**overrides, "dataset_dir": str(dataset_dir), "output_dir": str(output_dir)}.items():
        arguments += [f"--{key}", value if isinstance(value, str) else repr(value)]
    command = [
        sys.executable, "-m", "monai.bundle", "run",
        "--config_file", "configs/inference.json",
        "--logging_file", "configs/logging.conf",
        *arguments,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(BUNDLES.parent)}
    return subprocess.run(command, cwd=BUNDLES / name, capture_output=True, text=True, timeout=600, env=env)


MIXED = ("chexpert", "corrupt", "tall", "mimic", "third", "fourth")
"""The inputs of the one run per variant that the corrupt-image and the extreme-aspect-ratio tests read."""


@pytest.fixture(scope="module")
def mixed_run(bundle, images, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """One inference run of the :data:`MIXED` inputs (a corrupt file, a 64 x 2000 image, two same-named files);
    the detector with a zero threshold, so that every map peak on an image is a detection. Returns the finished
    process and the output folder."""
    name, overrides = bundle
    work = tmp_path_factory.mktemp("mixed_run")
    run_overrides = {**overrides, "peak_threshold": 0.0} if name.endswith("detection") else overrides
    inputs = [images[key] for key in MIXED]
    output_dir = work / "predictions"
    return run_inference((name, run_overrides), _write_datalist(work / "data", name, inputs), output_dir), output_dir


def test_one_corrupt_image_of_six(bundle, images, mixed_run):
    """Five predictions, one error row naming the corrupt file, the documented exit status, distinct maps."""
    name, _ = bundle
    result, output_dir = mixed_run
    assert result.returncode == PARTIAL_FAILURE_EXIT_CODE, result.stderr[-4000:]
    predictions = _rows(output_dir / "predictions.csv")
    good = [images[key] for key in MIXED if key != "corrupt"]
    assert sorted(row["image"] for row in predictions) == sorted(map(str, good))
    assert len(json.loads((output_dir / "predictions.json").read_text())) == 5
    errors = _rows(output_dir / "errors.csv")
    assert [row["image"] for row in errors] == [str(images["corrupt"])]
    assert "corrupt.png" in errors[0]["reason"]
    assert "1 image(s) could not be processed" in result.stdout + result.stderr
    assert sorted(entry.name for entry in output_dir.iterdir()) == sorted(
        ["errors.csv", "predictions.csv", "predictions.json"] + (["maps"] if name.endswith("detection") else [])
    )
    if name.endswith("detection"):
        maps = {row["image"]: output_dir / row["probability_map"] for row in predictions}
        assert all(path.is_file() for path in maps.values())
        assert len(set(maps.values())) == 5 == len(list((output_dir / "maps").iterdir()))
        same_name = [maps[str(images[key])].name for key in ("chexpert", "mimic")]
        assert same_name[0] != same_name[1]
        assert all(file_name.startswith("view1_frontal_") for file_name in same_name)


def test_an_image_of_extreme_aspect_ratio_is_predicted_with_the_others(bundle, images, mixed_run):
    """Among the inputs one of 64 x 2000: predicted like the others, not an error row; for the detector one map
    per image at its original size, ``(W, H, 1, K)``, and every detection inside its image's original pixels."""
    name, overrides = bundle
    _, output_dir = mixed_run
    good = [images[key] for key in MIXED if key != "corrupt"]
    predictions = json.loads((output_dir / "predictions.json").read_text())
    assert sorted(record["image"] for record in predictions) == sorted(map(str, good))
    assert [row["image"] for row in _rows(output_dir / "errors.csv")] == [str(images["corrupt"])]
    if not name.endswith("detection"):
        return
    class_names = overrides.get("class_names", ["rib_fracture", "clavicle_fracture"])
    assert len(list((output_dir / "maps").iterdir())) == len(good)
    for record in predictions:
        with Image.open(record["image"]) as image:
            width, height = image.size
        prob_map = nib.load(output_dir / record["probability_map"])
        assert prob_map.shape == (width, height, 1, len(class_names))
        assert np.all((np.asarray(prob_map.dataobj) >= 0.0) & (np.asarray(prob_map.dataobj) <= 1.0))
        for detection in record["detections"]:
            assert detection["class"] in class_names
            assert 0.0 <= detection["x"] <= width and 0.0 <= detection["y"] <= height
    assert sum(len(record["detections"]) for record in predictions) > 0


# the output folder's handling does not depend on the number of types: the two-type variants only
@pytest.mark.parametrize("bundle", sorted(TINY_INFERENCE), indirect=True)
def test_rerun_sets_previous_outputs_aside_and_a_held_lock_refuses(bundle, images, tmp_path):
    """A second run's folder holds only its own results; the first run's are kept under previous/; a live lock
    holder makes a third run stop with a clear message, touching nothing."""
    name, _ = bundle
    output_dir = tmp_path / "predictions"
    # a listed file that does not exist is one more failed item, not the end of the run
    missing = tmp_path / "moved_away" / "gone.png"
    first = [images[key] for key in ("chexpert", "corrupt", "third")] + [missing]
    assert run_inference(bundle, _write_datalist(tmp_path / "first", name, first), output_dir).returncode == (
        PARTIAL_FAILURE_EXIT_CODE
    )
    second = [images["rerun_a"], images["rerun_b"]]
    result = run_inference(bundle, _write_datalist(tmp_path / "second", name, second), output_dir)
    assert result.returncode == 0, result.stderr[-4000:]

    assert sorted(row["image"] for row in _rows(output_dir / "predictions.csv")) == sorted(map(str, second))
    assert _rows(output_dir / "errors.csv") == []
    (previous,) = (output_dir / "previous").iterdir()
    assert sorted(row["image"] for row in _rows(previous / "predictions.csv")) == sorted(
        str(images[key]) for key in ("chexpert", "third")
    )
    failed = sorted(row["image"] for row in _rows(previous / "errors.csv"))
    assert failed == sorted([str(images["corrupt"]), str(missing)])
    if name.endswith("detection"):
        assert len(list((output_dir / "maps").iterdir())) == 2
        assert len(list((previous / "maps").iterdir())) == 2
    assert not (output_dir / ".lock").exists() and not (output_dir / ".incomplete").exists()

    before = sorted(str(path.relative_to(output_dir)) for path in output_dir.rglob("*"))
    (output_dir / ".lock").write_text(f"{os.getpid()} {socket.gethostname()}\n")
    locked = run_inference(bundle, _write_datalist(tmp_path / "third", name, first), output_dir)
    assert locked.returncode not in (0, PARTIAL_FAILURE_EXIT_CODE)
    message = locked.stdout + locked.stderr
    assert "is in use by another run" in message and f"pid {os.getpid()}" in message
    after = sorted(str(path.relative_to(output_dir)) for path in output_dir.rglob("*"))
    assert after == sorted([*before, ".lock"])
