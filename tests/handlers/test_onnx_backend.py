"""OnnxRuntimeBackend: ONNX Runtime in place of VKD's image encoder and of the fracture detector, inside evaluators."""

import json
import logging
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from ignite.engine import Events
from monai.bundle import ConfigParser
from monai.data import DataLoader
from monai.engines import SupervisedEvaluator
from monai.inferers import SimpleInferer
from monai.networks.nets import Classifier
from torch import nn

from cxrkd_monai.handlers import OnnxRuntimeBackend
from cxrkd_monai.inferers import MonteCarloPriorInferer
from cxrkd_monai.networks import OnnxRuntimeModule, VKDNet
from cxrkd_monai.networks.fracture_fpn import FractureFPN
from tests.conftest import TINY_INFERENCE, config_workflow

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"
TOLERANCE = 1e-5


def small_vkd() -> VKDNet:
    torch.manual_seed(0)
    encoder = Classifier(in_shape=(1, 32, 32), classes=16, channels=(4, 8), strides=(2, 2))
    return VKDNet(3, image_encoder=encoder, image_feature_dim=16, text_feature_dim=6, latent_dim=8, hidden_dim=12)


def small_fracture_fpn() -> FractureFPN:
    torch.manual_seed(0)
    return FractureFPN(num_classes=2, block_inplanes=(8, 16, 32, 64), fpn_channels=8, layers=(1, 1, 1, 1))


def evaluate(network: nn.Module, inferer, images: torch.Tensor, handlers: list) -> tuple[torch.Tensor, list]:
    """Runs a SupervisedEvaluator over ``images`` (B, 1, H, W) in one batch, seeded as a bundle's ``initialize``.

    Returns the prediction and, for every iteration, the module the evaluator ran: ``engine.network`` (the
    fracture detector) or its ``image_encoder`` (VKD).
    """
    loader = DataLoader([{"image": image} for image in images], batch_size=len(images))
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=loader,
        network=network,
        inferer=inferer,
        val_handlers=handlers,
        decollate=False,
    )
    modules = []

    @evaluator.on(Events.ITERATION_COMPLETED)
    def _record(engine):
        modules.append(getattr(engine.network, "image_encoder", engine.network))

    torch.manual_seed(7)
    evaluator.run()
    return evaluator.state.output["pred"], modules


def test_vkd_monte_carlo_prediction_matches_eager_with_the_encoder_in_onnx_runtime():
    network = small_vkd()
    encoder = network.image_encoder
    images = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    inferer = MonteCarloPriorInferer(num_samples=6)
    backend = OnnxRuntimeBackend(input_shape=[1, 32, 32], submodule="image_encoder")

    eager, eager_modules = evaluate(network, inferer, images, [])
    # twice: the second run exports again after the first put the PyTorch encoder back
    for _ in range(2):
        onnx, onnx_modules = evaluate(network, inferer, images, [backend])
        assert isinstance(onnx_modules[0], OnnxRuntimeModule)
        assert onnx_modules[0].session.get_session_options().intra_op_num_threads == torch.get_num_threads()
        assert network.image_encoder is encoder
        # (B, 2, C): mean probability and spread over the same seeded prior draws
        assert onnx.shape == eager.shape == (4, 2, 3)
        torch.testing.assert_close(onnx, eager, rtol=0, atol=TOLERANCE)
    assert eager_modules[0] is encoder
    assert eager[:, 1].max() > 0


def test_fracture_maps_match_eager_with_the_whole_network_in_onnx_runtime():
    network = small_fracture_fpn()
    images = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    backend = OnnxRuntimeBackend(input_shape=[1, 64, 64], submodule=None)

    eager, eager_modules = evaluate(network, SimpleInferer(), images, [])
    onnx, onnx_modules = evaluate(network, SimpleInferer(), images, [backend])
    assert eager_modules[0] is network
    assert isinstance(onnx_modules[0], OnnxRuntimeModule) and onnx_modules[0].name == "FractureFPN"
    assert onnx.shape == eager.shape == (2, 2, 16, 16)
    torch.testing.assert_close(onnx, eager, rtol=TOLERANCE, atol=TOLERANCE)


def test_pytorch_backend_leaves_the_network_untouched():
    network = small_vkd()
    encoder = network.image_encoder
    images = torch.rand(2, 1, 32, 32)
    backend = OnnxRuntimeBackend(input_shape=[1, 32, 32], submodule="image_encoder", backend="pytorch")
    _, modules = evaluate(network, MonteCarloPriorInferer(2), images, [backend])
    assert modules[0] is encoder


@pytest.mark.parametrize("missing", ["onnxruntime", "onnx"])
def test_without_the_onnx_extra_the_backend_names_it_and_pytorch_still_runs(monkeypatch, missing):
    monkeypatch.setitem(sys.modules, missing, None)  # an entry of None makes `import` fail as for a missing module
    engine = SimpleNamespace(network=small_fracture_fpn())
    with pytest.raises(ImportError, match=re.escape(f"needs the module {missing!r}")) as raised:
        OnnxRuntimeBackend(input_shape=[1, 64, 64])(engine)
    assert "ONNX Runtime backend of FractureFPN" in str(raised.value)
    assert 'pip install "cxrkd-monai[onnx]"' in str(raised.value)
    network = small_vkd()
    backend = OnnxRuntimeBackend(input_shape=[1, 32, 32], submodule="image_encoder", backend="pytorch")
    _, modules = evaluate(network, MonteCarloPriorInferer(2), torch.rand(2, 1, 32, 32), [backend])
    assert modules[0] is network.image_encoder


def test_wrong_spatial_size_names_module_and_shapes():
    engine = SimpleNamespace(network=small_fracture_fpn())
    OnnxRuntimeBackend(input_shape=[1, 64, 64])(engine)
    message = "ONNX Runtime backend of FractureFPN: exported for input (B, 1, 64, 64), got [2, 1, 96, 64]"
    with pytest.raises(ValueError, match=re.escape(message)):
        engine.network(torch.rand(2, 1, 96, 64))


def test_output_differing_from_pytorch_is_refused():
    class CountsCalls(nn.Module):
        """Adds the number of calls so far: the traced graph freezes a different count than the check saw."""

        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            return image.flatten(1) + self.calls

    engine = SimpleNamespace(network=CountsCalls())
    with pytest.raises(ValueError, match="ONNX Runtime output of CountsCalls differs from PyTorch by up to 1"):
        OnnxRuntimeBackend(input_shape=[1, 4, 4])(engine)
    assert isinstance(engine.network, CountsCalls)


def test_torchscript_network_and_unknown_submodule_are_refused():
    scripted = SimpleNamespace(network=torch.jit.script(small_fracture_fpn()))
    with pytest.raises(TypeError, match="FractureFPN is a TorchScript network"):
        OnnxRuntimeBackend(input_shape=[1, 64, 64])(scripted)
    with pytest.raises(AttributeError, match="submodule='encoder' is not a submodule of VKDNet"):
        OnnxRuntimeBackend(input_shape=[1, 32, 32], submodule="encoder")(SimpleNamespace(network=small_vkd()))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"input_shape": [1, 32, 32], "backend": "onnx"}, "backend='onnx'"),
        ({"input_shape": [32, 32, 0]}, r"input_shape=\[32, 32, 0\]"),
        ({"input_shape": [224]}, r"input_shape=\[224\]"),
        ({"input_shape": [1, 32, 32], "tolerance": 0.0}, "tolerance=0.0"),
    ],
)
def test_invalid_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        OnnxRuntimeBackend(**kwargs)


@pytest.mark.parametrize(
    "bundle, configs",
    [
        ("cxr_vkd_classification", ["inference.json"]),
        ("cxr_vkd_classification", ["train.json", "evaluate.json"]),
        ("cxr_aals_fracture_detection", ["inference.json"]),
        ("cxr_aals_fracture_detection", ["train_teacher.json", "evaluate.json"]),
    ],
)
def test_bundle_configs_use_onnx_runtime_on_cpu_after_the_checkpoint_loader(bundle, configs):
    parser = ConfigParser()
    parser.read_config([str(BUNDLES / bundle / "configs" / name) for name in configs])
    expected = "pytorch" if torch.cuda.is_available() else "onnxruntime"
    assert parser.get_parsed_content("inference_backend") == expected
    key = "handlers" if configs == ["inference.json"] else "validate#handlers"
    # a handler may be a reference such as "@failed_items"; only the position of the two named ones matters
    targets = [
        handler["_target_"].rsplit(".", 1)[-1] if isinstance(handler, dict) else handler for handler in parser.get(key)
    ]
    assert targets.index("OnnxRuntimeBackend") == targets.index("CheckpointLoader") + 1
    backend = parser.get_parsed_content(f"{key}#{targets.index('OnnxRuntimeBackend')}")
    assert backend.input_shape == (1, *parser.get_parsed_content("image_size"))
    assert backend.backend == expected


@pytest.mark.slow
@pytest.mark.parametrize("bundle", sorted(TINY_INFERENCE))
def test_bundle_inference_records_agree_between_backends(bundle, phantom, tmp_path, caplog):
    """The bundle's own inference.json: the same records (within float tolerance) from both backends."""
    torch.manual_seed(0)
    parser = ConfigParser()
    parser.read_config(str(BUNDLES / bundle / "configs" / "inference.json"))
    parser.update(TINY_INFERENCE[bundle])
    checkpoint = tmp_path / "model.pt"
    torch.save(parser.get_parsed_content("network_def").state_dict(), checkpoint)

    records = {}
    for backend in ("onnxruntime", "pytorch"):
        workflow = config_workflow(
            BUNDLES / bundle / "configs" / "inference.json",
            "infer",
            logging_file=False,
            **TINY_INFERENCE[bundle],
            dataset_dir=str(phantom),
            ckpt_path=str(checkpoint),
            output_dir=str(tmp_path / backend),
            image_size=[64, 64],
            num_workers=0,
            inference_backend=backend,
        )
        with caplog.at_level(logging.INFO, logger="cxrkd_monai.handlers.onnx_backend"):
            workflow.run()
        workflow.finalize()
        assert f"Inference backend: {'ONNX Runtime' if backend == 'onnxruntime' else 'PyTorch'}" in caplog.text
        caplog.clear()
        records[backend] = json.loads((tmp_path / backend / "predictions.json").read_text())

    assert len(records["onnxruntime"]) == len(records["pytorch"]) > 0
    for onnx, eager in zip(records["onnxruntime"], records["pytorch"]):
        assert onnx.keys() == eager.keys()
        for key, value in eager.items():
            if isinstance(value, float):
                assert onnx[key] == pytest.approx(value, abs=TOLERANCE), key
            else:
                assert onnx[key] == value, key
