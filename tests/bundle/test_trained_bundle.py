"""Exporting a trained run as a bundle folder: overrides merged where defined, metadata derived, checks enforced."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import load_net_with_metadata
from packaging.version import Version

from cxrkd_monai.bundle.trained_bundle import (
    check_exported_bundle,
    export_trained_bundle,
    exported_version,
    merge_config_overrides,
)
from tests.conftest import TINY_INFERENCE

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"
VKD = BUNDLES / "cxr_vkd_classification"
FRACTURE = BUNDLES / "cxr_aals_fracture_detection"
CLASSES = ["Cardiomegaly", "Pleural Effusion", "Fracture"]
TINY_ENCODER = {
    key: value for key, value in TINY_INFERENCE["cxr_vkd_classification"].items() if key.startswith("network_def")
}
VKD_RUN = {"class_names": CLASSES, "image_size": [32, 32], "latent_dim": 8, "pretrained": False, **TINY_ENCODER}
FRACTURE_RUN = {"image_size": [64, 64], "layers": [1, 1, 1, 1], "block_inplanes": [8, 16, 32, 64], "fpn_channels": 8}


def trained_checkpoint(bundle: Path, overrides: dict, path: Path) -> dict:
    """A seeded network_def of the source inference config with ``overrides``, saved as a run's best model."""
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser.update(overrides)
    torch.manual_seed(0)
    state = parser.get_parsed_content("network_def").state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def load_config(bundle: Path, name: str) -> dict:
    return json.loads((bundle / "configs" / name).read_text())


def test_overrides_go_into_every_config_that_defines_them_and_nowhere_else(tmp_path):
    shutil.copytree(VKD / "configs", tmp_path / "configs")
    placed = merge_config_overrides(tmp_path / "configs", VKD_RUN)
    assert placed["latent_dim"] == ["inference.json", "train.json"]
    assert placed["network_def#image_encoder"] == ["inference.json", "train.json"]
    assert placed["pretrained"] == ["evaluate.json", "train.json"]
    assert "latent_dim" not in load_config(tmp_path, "evaluate.json")
    for name in ("train.json", "inference.json"):
        config = load_config(tmp_path, name)
        assert config["class_names"] == CLASSES and config["image_size"] == [32, 32]
        assert config["network_def"]["image_encoder"]["block_config"] == [2, 2]
        assert config["network_def"]["_target_"] == "cxrkd_monai.networks.VKDNet"
    # evaluate.json merged on train.json (the bundle's own command) sees the overridden values
    parser = ConfigParser()
    parser.read_config([str(tmp_path / "configs" / name) for name in ("train.json", "evaluate.json")])
    assert parser.get_parsed_content("latent_dim") == 8 and parser.get_parsed_content("num_classes") == 3
    assert load_config(tmp_path, "metadata.json") == load_config(VKD, "metadata.json")


def test_an_override_no_config_defines_is_named(tmp_path):
    shutil.copytree(VKD / "configs", tmp_path / "configs")
    with pytest.raises(KeyError, match=r"\['latnet_dim', 'network_def#nothing#here'\] are defined in no config"):
        merge_config_overrides(tmp_path / "configs", {"latnet_dim": 8, "network_def#nothing#here": 1, "epochs": 1})


def test_vkd_export_loads_its_weights_and_describes_them(tmp_path):
    state = trained_checkpoint(VKD, VKD_RUN, tmp_path / "run" / "model.pt")
    updates = {"eval_metrics": {"synthetic_demo_test_macro_auroc": 0.75}, "data_source": "synthetic radiographs"}
    bundle = export_trained_bundle(VKD, tmp_path / "out" / VKD.name, tmp_path / "run" / "model.pt", VKD_RUN, updates)

    assert sorted(path.name for path in bundle.iterdir()) == ["LICENSE", "configs", "docs", "models"]
    metadata = load_config(bundle, "metadata.json")
    prediction = metadata["network_data_format"]["outputs"]["pred"]
    assert prediction["num_channels"] == 3
    assert prediction["channel_def"] == {"0": "Cardiomegaly", "1": "Pleural Effusion", "2": "Fracture"}
    assert metadata["network_data_format"]["inputs"]["image"]["spatial_shape"] == [32, 32]
    assert metadata["eval_metrics"] == {"synthetic_demo_test_macro_auroc": 0.75}
    assert metadata["data_source"] == "synthetic radiographs"
    source_version = load_config(VKD, "metadata.json")["version"]
    assert metadata["version"] == f"{source_version}+trained.3c32px"
    assert list(metadata["changelog"])[:2] == [metadata["version"], source_version]
    card = (bundle / "docs" / "README.md").read_text()
    assert card.startswith(f"# CXR VKD classification: exported bundle {source_version}+trained.3c32px\n")
    assert "| classes | 3: `Cardiomegaly`, `Pleural Effusion`, `Fracture` |" in card
    assert "| input | 32 x 32 px (`image_size`), one channel |" in card
    assert "| eval_metrics | synthetic_demo_test_macro_auroc 0.750 |" in card
    assert card.endswith((VKD / "docs" / "README.md").read_text())  # the source card follows, unchanged

    saved = torch.load(bundle / "models" / "model.pt", weights_only=True)
    assert saved.keys() == state.keys() and all(torch.equal(saved[key], state[key]) for key in state)
    scripted, embedded_metadata, _ = load_net_with_metadata(str(bundle / "models" / "model.ts"), map_location="cpu")
    assert embedded_metadata["network_data_format"] == metadata["network_data_format"]
    with torch.no_grad():
        assert scripted(torch.rand(1, 1, 32, 32)).shape == (1, 3)


def test_exported_version_is_a_local_version_naming_classes_and_size():
    assert exported_version("0.2.0", "demo", ["a"] * 6, [96, 96]) == "0.2.0+demo.6c96px"
    assert exported_version("0.2.0", "run7", ["a", "b"], [96, 128]) == "0.2.0+run7.2c96x128px"
    assert Version("0.2.0+demo.6c96px").local == "demo.6c96px"  # PEP 440, as pip and MONAI compare versions
    with pytest.raises(ValueError, match="letters and digits only, got 'demo run'"):
        exported_version("0.2.0", "demo run", ["a"], [96, 96])


def test_fracture_export_keeps_the_map_shape_expression(tmp_path):
    trained_checkpoint(FRACTURE, FRACTURE_RUN, tmp_path / "student_aals.pt")
    bundle = export_trained_bundle(
        FRACTURE, tmp_path / FRACTURE.name, tmp_path / "student_aals.pt", FRACTURE_RUN, version_label="demo"
    )
    metadata = load_config(bundle, "metadata.json")
    assert metadata["version"] == load_config(FRACTURE, "metadata.json")["version"] + "+demo.2c64px"
    assert "| input | 64 x 64 px (`image_size`), one channel |" in (bundle / "docs" / "README.md").read_text()
    assert metadata["network_data_format"]["inputs"]["image"]["spatial_shape"] == ["32*n", "32*n"]
    assert metadata["network_data_format"]["outputs"]["pred"]["channel_def"] == {
        "0": "rib_fracture",
        "1": "clavicle_fracture",
    }
    for name in ("train_teacher.json", "inference.json"):
        assert load_config(bundle, name)["fpn_channels"] == 8
    assert "fpn_channels" not in load_config(bundle, "train_student.json")
    scripted = torch.jit.load(str(bundle / "models" / "model.ts"))
    with torch.no_grad():
        assert scripted(torch.rand(1, 1, 64, 64)).shape == (1, 2, 16, 16)


def test_a_checkpoint_of_another_network_size_is_refused(tmp_path):
    trained_checkpoint(VKD, {**VKD_RUN, "latent_dim": 16}, tmp_path / "model.pt")
    with pytest.raises(ValueError, match=r"model\.pt does not fit the network_def of .*inference\.json"):
        export_trained_bundle(VKD, tmp_path / "out", tmp_path / "model.pt", VKD_RUN)


def test_a_torchscript_that_differs_from_the_checkpoint_is_refused(tmp_path):
    trained_checkpoint(VKD, VKD_RUN, tmp_path / "model.pt")
    bundle = export_trained_bundle(VKD, tmp_path / "out", tmp_path / "model.pt", VKD_RUN)
    state = torch.load(bundle / "models" / "model.pt", weights_only=True)
    bias = [key for key in state if key.startswith("classifier.") and key.endswith(".bias")][-1]
    state[bias] = state[bias] + 0.5
    torch.save(state, bundle / "models" / "model.pt")
    with pytest.raises(ValueError, match=r"model\.ts differs from network_def with .*model\.pt"):
        check_exported_bundle(bundle)


def test_destination_other_than_an_earlier_export_and_missing_checkpoint_are_refused(tmp_path):
    (tmp_path / "notes").mkdir()
    trained_checkpoint(VKD, VKD_RUN, tmp_path / "model.pt")
    with pytest.raises(FileExistsError, match="notes exists and is not a bundle folder"):
        export_trained_bundle(VKD, tmp_path / "notes", tmp_path / "model.pt", VKD_RUN)
    with pytest.raises(ValueError, match="is the source bundle"):
        export_trained_bundle(VKD, VKD / "configs" / "..", tmp_path / "model.pt", VKD_RUN)
    assert (VKD / "configs" / "train.json").is_file()
    with pytest.raises(FileNotFoundError, match=r"missing\.pt does not exist"):
        export_trained_bundle(VKD, tmp_path / "out", tmp_path / "missing.pt", VKD_RUN)
    export_trained_bundle(VKD, tmp_path / "out", tmp_path / "model.pt", VKD_RUN)
    (tmp_path / "out" / "models" / "stale.pt").write_bytes(b"")
    export_trained_bundle(VKD, tmp_path / "out", tmp_path / "model.pt", VKD_RUN)  # an earlier export is replaced
    assert not (tmp_path / "out" / "models" / "stale.pt").exists()
