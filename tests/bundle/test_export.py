"""verify_net_in_out, ckpt_export / onnx_export of both networks, output parity and the model.ts/metadata check."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ckpt_export, onnx_export, verify_net_in_out
from monai.data import load_net_with_metadata

from cxrkd_monai.bundle import (
    check_network_matches_metadata,
    check_torchscript_matches_metadata,
    evaluate_spatial_shape,
)
from tests.conftest import TINY_INFERENCE

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"
VKD = BUNDLES / "cxr_vkd_classification"
FRACTURE = BUNDLES / "cxr_aals_fracture_detection"
# Small widths keep the networks fast; they change no channel count that metadata.json promises. VKD's image
# encoder is the small MONAI DenseNet of the inference tests: the same layer types as DenseNet-121, in seconds.
VKD_OVERRIDES = {
    "network_def#latent_dim": 8,
    "network_def#hidden_dim": 16,
    **{key: value for key, value in TINY_INFERENCE["cxr_vkd_classification"].items() if key.startswith("network_def#")},
}
FRACTURE_OVERRIDES = {"network_def#block_inplanes": [8, 16, 32, 64], "network_def#fpn_channels": 16}


def require_bundle(bundle: Path) -> None:
    for name in ("metadata.json", "inference.json"):
        if not (bundle / "configs" / name).is_file():
            pytest.skip(f"{bundle.name} has no configs/{name} yet")


def bundle_files(bundle: Path) -> dict:
    return {
        "meta_file": str(bundle / "configs" / "metadata.json"),
        "config_file": str(bundle / "configs" / "inference.json"),
    }


def build_network(bundle: Path, overrides: dict) -> torch.nn.Module:
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    for key, value in overrides.items():
        parser[key] = value
    return parser.get_parsed_content("network_def").eval()


def save_checkpoint(bundle: Path, overrides: dict, path: Path) -> torch.nn.Module:
    """An initialised network_def's state_dict, saved the way CheckpointSaver saves the bundles' model.pt."""
    torch.manual_seed(0)
    network = build_network(bundle, overrides)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), path)
    return network


@pytest.fixture(scope="module")
def vkd_export(tmp_path_factory):
    require_bundle(VKD)
    models = tmp_path_factory.mktemp("vkd") / "models"
    network = save_checkpoint(VKD, VKD_OVERRIDES, models / "model.pt")
    ckpt_export(
        net_id="network_def",
        filepath=str(models / "model.ts"),
        ckpt_file=str(models / "model.pt"),
        **bundle_files(VKD),
        **VKD_OVERRIDES,
    )
    return network, models


@pytest.fixture(scope="module")
def fracture_export(tmp_path_factory):
    require_bundle(FRACTURE)
    models = tmp_path_factory.mktemp("fracture") / "models"
    network = save_checkpoint(FRACTURE, FRACTURE_OVERRIDES, models / "model.pt")
    ckpt_export(
        net_id="network_def",
        filepath=str(models / "model.ts"),
        ckpt_file=str(models / "model.pt"),
        **bundle_files(FRACTURE),
        **FRACTURE_OVERRIDES,
    )
    return network, models


def test_verify_net_in_out_vkd():
    require_bundle(VKD)
    verify_net_in_out(
        net_id="network_def",
        device="cpu",
        **bundle_files(VKD),
        **VKD_OVERRIDES,
        **{"_meta_#network_data_format#inputs#image#spatial_shape": [64, 64]},
    )


def test_verify_net_in_out_fracture_with_output_map_shape():
    """MONAI's check covers channels and dtype; the adapted check adds the output map size ("8*n" for "32*n")."""
    require_bundle(FRACTURE)
    verify_net_in_out(net_id="network_def", device="cpu", n=2, **bundle_files(FRACTURE), **FRACTURE_OVERRIDES)
    metadata = json.loads((FRACTURE / "configs" / "metadata.json").read_text())
    shape = check_network_matches_metadata(build_network(FRACTURE, FRACTURE_OVERRIDES), metadata, n=3)
    assert tuple(shape) == (1, 2, 24, 24)


def test_output_map_size_mismatch_passes_verify_net_in_out_but_not_the_adapted_check():
    require_bundle(FRACTURE)
    stride_8 = {**FRACTURE_OVERRIDES, "network_def#output_stride": 8}
    verify_net_in_out(net_id="network_def", device="cpu", n=2, **bundle_files(FRACTURE), **stride_8)
    metadata = json.loads((FRACTURE / "configs" / "metadata.json").read_text())
    with pytest.raises(ValueError, match=r"output spatial shape \[8, 8\] .* differs from metadata .* \[16, 16\]"):
        check_network_matches_metadata(build_network(FRACTURE, stride_8), metadata, n=2, source="stride-8 FPN")


def test_vkd_torchscript_is_the_image_only_path(vkd_export):
    network, models = vkd_export
    scripted, metadata, extra = load_net_with_metadata(
        str(models / "model.ts"), map_location="cpu", more_extra_files=("inference.json",)
    )
    assert metadata["version"] == json.loads((VKD / "configs" / "metadata.json").read_text())["version"]
    assert json.loads(extra["inference.json"])["network_def"]["_target_"] == "cxrkd_monai.networks.VKDNet"
    assert not hasattr(scripted, "forward_train")
    image = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(scripted(image), network(image), atol=1e-5, rtol=1e-4)
    assert tuple(check_torchscript_matches_metadata(models / "model.ts", VKD / "configs" / "metadata.json")) == (1, 14)


def test_fracture_torchscript_matches_eager_and_metadata(fracture_export):
    network, models = fracture_export
    scripted = torch.jit.load(str(models / "model.ts"), map_location="cpu")
    image = torch.rand(2, 1, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(scripted(image), network(image), atol=1e-5, rtol=1e-4)
    shape = check_torchscript_matches_metadata(models / "model.ts", FRACTURE / "configs" / "metadata.json", n=2)
    assert tuple(shape) == (1, 2, 16, 16)


def test_torchscript_with_other_class_count_than_metadata_is_detected(tmp_path):
    require_bundle(VKD)
    three_classes = {**VKD_OVERRIDES, "network_def#num_classes": 3}
    save_checkpoint(VKD, three_classes, tmp_path / "model.pt")
    ckpt_export(
        net_id="network_def",
        filepath=str(tmp_path / "model.ts"),
        ckpt_file=str(tmp_path / "model.pt"),
        **bundle_files(VKD),
        **three_classes,
    )
    with pytest.raises(ValueError, match=r"model\.ts .*output shape \[1, 3\].*'outputs.pred.num_channels' = 14"):
        check_torchscript_matches_metadata(tmp_path / "model.ts", VKD / "configs" / "metadata.json")
    with pytest.raises(ValueError, match="its embedded metadata"):
        check_torchscript_matches_metadata(tmp_path / "model.ts")


def test_missing_torchscript_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.ts does not exist"):
        check_torchscript_matches_metadata(tmp_path / "missing.ts", VKD / "configs" / "metadata.json")


@pytest.mark.slow
def test_ckpt_export_command_line(tmp_path):
    require_bundle(VKD)
    save_checkpoint(VKD, VKD_OVERRIDES, tmp_path / "models" / "model.pt")
    command = [
        sys.executable, "-m", "monai.bundle", "ckpt_export", "network_def",
        "--filepath", str(tmp_path / "models" / "model.ts"),
        "--ckpt_file", str(tmp_path / "models" / "model.pt"),
        "--meta_file", str(VKD / "configs" / "metadata.json"),
        "--config_file", str(VKD / "configs" / "inference.json"),
    ]  # fmt: skip
    for key, value in VKD_OVERRIDES.items():
        command += [f"--{key}", str(value)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    check_torchscript_matches_metadata(tmp_path / "models" / "model.ts", VKD / "configs" / "metadata.json")


def onnx_runtime_output(onnx_path: Path, image: torch.Tensor) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: image.numpy()})[0]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("bundle_export", "bundle", "overrides", "input_shape"),
    [
        ("vkd_export", VKD, VKD_OVERRIDES, [1, 1, 64, 64]),
        ("fracture_export", FRACTURE, FRACTURE_OVERRIDES, [1, 1, 64, 96]),
    ],
    ids=["vkd", "fracture"],
)
def test_eager_torchscript_and_onnx_runtime_agree(bundle_export, bundle, overrides, input_shape, request):
    pytest.importorskip("onnxruntime")
    network, models = request.getfixturevalue(bundle_export)
    onnx_export(
        net_id="network_def",
        filepath=str(models / "model.onnx"),
        ckpt_file=str(models / "model.pt"),
        input_shape=input_shape,
        **bundle_files(bundle),
        **overrides,
    )
    scripted = torch.jit.load(str(models / "model.ts"), map_location="cpu")
    image = torch.rand(*input_shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        eager, traced = network(image).numpy(), scripted(image).numpy()
    runtime = onnx_runtime_output(models / "model.onnx", image)
    assert runtime.shape == eager.shape
    np.testing.assert_allclose(traced, eager, atol=1e-4, rtol=0)
    np.testing.assert_allclose(runtime, eager, atol=1e-4, rtol=0)


@pytest.mark.parametrize("shape", [[224, 224], ["32*n", "32*n"], ["2**p", "16*2**p"], ["*", 7], ["8 * n + 4"]])
def test_spatial_shape_reads_as_monai_verify_net_in_out_does(shape):
    from monai.bundle.scripts import _get_fake_spatial_shape  # the reference: MONAI's own reading, test-only

    for n, p, any_size in [(1, 1, 1), (3, 2, 5)]:
        expected = _get_fake_spatial_shape(shape, p=p, n=n, any=any_size)
        assert evaluate_spatial_shape(shape, n=n, p=p, any_size=any_size) == expected


@pytest.mark.parametrize("entry", ["32*m", "__import__('os')", "n/2", 2.5])
def test_spatial_shape_refuses_other_names_and_operators(entry):
    with pytest.raises(ValueError, match="spatial_shape entr"):
        evaluate_spatial_shape([entry], n=2)
