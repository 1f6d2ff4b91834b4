"""Packing bundles as Model Zoo zips, large_files.yml, and a round trip through a file:// download."""

import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import yaml
from monai.apps.utils import HashCheckError
from monai.bundle import ConfigParser, download_large_files

from cxrkd_monai.bundle import check_bundle_archive, pack_bundle
from tests.conftest import config_workflow

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"
VKD = BUNDLES / "cxr_vkd_classification"


def test_pack_writes_one_bundle_folder_without_weights(tmp_path):
    archive = pack_bundle(VKD, tmp_path / "dist" / "cxr_vkd_classification_v0.1.0.zip")
    names = zipfile.ZipFile(archive).namelist()
    assert all(name.startswith("cxr_vkd_classification/") for name in names)
    expected = {f"configs/{path.name}" for path in (VKD / "configs").iterdir()}
    expected |= {"docs/README.md", "docs/data_license.txt", "LICENSE", "large_files.yml"}
    assert {name.split("/", 1)[1] for name in names} == expected
    assert check_bundle_archive(archive) == "cxr_vkd_classification"


def test_pack_is_reproducible_and_skips_run_outputs(tmp_path):
    bundle = tmp_path / "cxr_vkd_classification"
    shutil.copytree(VKD, bundle)
    (bundle / "eval").mkdir()
    (bundle / "eval" / "metrics.json").write_text("{}")
    (bundle / "configs" / ".inference.json.swp").write_text("editor")
    first = pack_bundle(bundle, tmp_path / "first.zip")
    second = pack_bundle(bundle, tmp_path / "second.zip")
    assert first.read_bytes() == second.read_bytes()
    names = zipfile.ZipFile(first).namelist()
    assert not any("eval/" in name or ".swp" in name for name in names)


def test_pack_refuses_a_folder_without_metadata(tmp_path):
    (tmp_path / "not_a_bundle" / "configs").mkdir(parents=True)
    (tmp_path / "not_a_bundle" / "configs" / "inference.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"not a MONAI bundle: .*configs/metadata\.json does not exist"):
        pack_bundle(tmp_path / "not_a_bundle", tmp_path / "out.zip")
    assert not (tmp_path / "out.zip").exists()


def test_pack_with_weights_needs_the_checkpoint(tmp_path):
    bundle = tmp_path / "cxr_vkd_classification"
    shutil.copytree(VKD, bundle, ignore=shutil.ignore_patterns("models"))
    with pytest.raises(FileNotFoundError, match=r"models/model\.pt does not exist"):
        pack_bundle(bundle, tmp_path / "out.zip", include_weights=True)


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"b/configs/inference.json": "{}", "b/LICENSE": ""}, r"has no b/configs/metadata\.json"),
        ({"a/configs/metadata.json": "{}", "b/configs/metadata.json": "{}"}, r"top folders \['a', 'b'\]"),
        ({"configs/metadata.json": "{}"}, "exactly one bundle folder"),
    ],
    ids=["no-metadata", "two-folders", "no-folder"],
)
def test_archive_that_is_not_one_bundle_fails_clearly(tmp_path, members, message):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for name, text in members.items():
            zipped.writestr(name, text)
    with pytest.raises(ValueError, match=message) as raised:
        check_bundle_archive(archive)
    assert "bad.zip" in str(raised.value)


@pytest.mark.parametrize("bundle", ["cxr_vkd_classification", "cxr_aals_fracture_detection"])
def test_large_files_point_at_no_release_while_none_is_published(bundle):
    """No weights are released: the list is empty, so nothing points at a missing release or lacks a hash."""
    assert yaml.safe_load((BUNDLES / bundle / "large_files.yml").read_text()) == {"large_files": []}


def local_large_files(bundle: Path, weights: Path, hash_val: str) -> None:
    """Lists a local file as the bundle's weights, as a release would list an uploaded asset."""
    entry = {"path": "models/model.pt", "url": weights.as_uri(), "hash_val": hash_val, "hash_type": "sha256"}
    (bundle / "large_files.yml").write_text(yaml.safe_dump({"large_files": [entry]}))


def test_large_files_format_is_what_monai_downloads(tmp_path):
    weights = tmp_path / "release" / "model.pt"
    weights.parent.mkdir()
    weights.write_bytes(b"weights")
    sha256 = hashlib.sha256(b"weights").hexdigest()

    bundle = tmp_path / "cxr_vkd_classification"
    shutil.copytree(VKD, bundle, ignore=shutil.ignore_patterns("models"))
    local_large_files(bundle, weights, hash_val=sha256)
    download_large_files(bundle_path=str(bundle))
    assert (bundle / "models" / "model.pt").read_bytes() == b"weights"

    tampered = tmp_path / "tampered"
    shutil.copytree(VKD, tampered, ignore=shutil.ignore_patterns("models"))
    local_large_files(tampered, weights, hash_val="0" * 64)
    with pytest.raises(HashCheckError):
        download_large_files(bundle_path=str(tampered))
    assert not (tampered / "models" / "model.pt").exists()


@pytest.mark.slow
def test_packed_zip_downloads_from_a_file_url_and_runs_inference(phantom, tmp_path):
    """pack (with weights) -> `monai.bundle download --url file://...` -> inference.json from the unpacked copy."""
    class_names = json.loads((phantom / "datalist_vkd.json").read_text())["class_names"]
    overrides = {"class_names": class_names, "network_def#latent_dim": 8, "network_def#hidden_dim": 16}

    bundle = tmp_path / "work" / "cxr_vkd_classification"
    shutil.copytree(VKD, bundle)
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    for key, value in overrides.items():
        parser[key] = value
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def")
    (bundle / "models").mkdir(exist_ok=True)
    torch.save(network.state_dict(), bundle / "models" / "model.pt")
    archive = pack_bundle(bundle, tmp_path / "dist" / "cxr_vkd_classification_v0.1.0.zip", include_weights=True)

    downloads = tmp_path / "downloads"
    command = [
        sys.executable, "-m", "monai.bundle", "download",
        "--name", "cxr_vkd_classification", "--url", archive.resolve().as_uri(), "--bundle_dir", str(downloads),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    unpacked = downloads / "cxr_vkd_classification"
    assert (unpacked / "models" / "model.pt").read_bytes() == (bundle / "models" / "model.pt").read_bytes()

    workflow = config_workflow(
        unpacked / "configs" / "inference.json",
        "infer",
        dataset_dir=str(phantom),
        output_dir=str(tmp_path / "predictions"),
        image_size=[64, 64],
        inference_mc_samples=2,
        num_workers=0,
        **overrides,
    )
    assert workflow.parser.get_parsed_content("ckpt_path") == str(unpacked) + "/models/model.pt"
    workflow.run()
    workflow.finalize()
    records = json.loads((tmp_path / "predictions" / "predictions.json").read_text())
    assert len(records) == len(json.loads((phantom / "datalist_vkd.json").read_text())["test"])
    for name in class_names:
        assert 0.0 <= records[0][f"prob_{name}"] <= 1.0
