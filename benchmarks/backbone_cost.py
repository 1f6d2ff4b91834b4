"""What the EfficientNet-Lite0 backbone costs against each bundle's default backbone, on the CPU.

Each network is the bundle's own ``network_def`` (``train.json`` for VKD, ``train_teacher.json`` for the fracture
detector) with only ``backbone`` changed, built with random weights (the timing does not depend on them) at the
bundle's inference image size. Per round, each network takes one training step (forward, loss, backward, Adam
step) and one inference forward pass without gradients on the same random batch; the rounds interleave the
backbones, so the ratios pair measurements taken back to back.

The training loss is the bundle's VKD loss for VKD (the text features are random, as a cached text embedding
would be) and a plain BCE on the logit maps for the detector: the same for both backbones of a bundle, and
negligible next to the networks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from monai.bundle import ConfigParser

from benchmarks.bundle_data import FRACTURE_BUNDLE, VKD_BUNDLE
from benchmarks.report import Figure, GroupReport
from benchmarks.settings import BenchmarkSettings
from benchmarks.timing import Summary, interleaved_times, per_repeat_ratios

__all__ = ["run"]

_CANDIDATE = "efficientnet-lite0"
_BUNDLES = (
    # name, label, bundle, training config, default backbone
    ("vkd", "VKD", VKD_BUNDLE, "train.json", "densenet121"),
    ("fracture", "fracture detector", FRACTURE_BUNDLE, "train_teacher.json", "resnet18"),
)


def _parser(bundle: Path, config: str, backbone: str) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / config))
    parser.update({"device": "$torch.device('cpu')", "backbone": backbone, "pretrained": False})
    return parser


def _inference(network: torch.nn.Module, image: torch.Tensor) -> Callable[[], None]:
    """One no-grad forward pass of ``network`` in eval mode on ``image``."""

    def infer() -> None:
        network.eval()
        with torch.no_grad():
            network(image)

    return infer


def _vkd_step(parser: ConfigParser, batch: int, size: int) -> tuple[Callable[[], None], Callable[[], None]]:
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def", lazy=False)
    loss_function = parser.get_parsed_content("loss", lazy=False)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-5)
    image = torch.rand(batch, 1, size, size)
    text = torch.randn(batch, network.text_feature_dim)
    label = torch.randint(0, 2, (batch, network.num_classes)).float()

    def train_step() -> None:
        network.train()
        optimizer.zero_grad()
        loss_function(network.forward_train(image, text, num_samples=1), label)["loss"].backward()
        optimizer.step()

    return train_step, _inference(network, image)


def _fracture_step(parser: ConfigParser, batch: int, size: int) -> tuple[Callable[[], None], Callable[[], None]]:
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def", lazy=False)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-4)
    image = torch.rand(batch, 1, size, size)
    network.eval()
    with torch.no_grad():
        target = torch.rand_like(network(image))

    def train_step() -> None:
        network.train()
        optimizer.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(network(image), target).backward()
        optimizer.step()

    return train_step, _inference(network, image)


def run(settings: BenchmarkSettings, work_dir: Path) -> GroupReport:
    """Measure EfficientNet-Lite0 ÷ default backbone training-step and inference times for both bundles."""
    batch = settings.fracture_inference_batch_size
    sizes = {"vkd": settings.inference_image_size, "fracture": settings.fracture_inference_image_size}
    steps = {"vkd": _vkd_step, "fracture": _fracture_step}
    candidates = {}
    for name, _, bundle, config, default in _BUNDLES:
        for backbone in (default, _CANDIDATE):
            train_step, infer = steps[name](_parser(bundle, config, backbone), batch, sizes[name])
            candidates[f"{name} {backbone} train"] = train_step
            candidates[f"{name} {backbone} infer"] = infer
    times = interleaved_times(candidates, settings.repeats, settings.warmup)
    figures = []
    for name, label, _, _, default in _BUNDLES:
        for phase, title in (("train", "training step"), ("infer", "inference")):
            candidate, baseline = times[f"{name} {_CANDIDATE} {phase}"], times[f"{name} {default} {phase}"]
            figures.append(
                Figure(
                    f"{name}_efficientnet_lite0_{phase}_time_ratio",
                    f"{label}: EfficientNet-Lite0 ÷ {default} {title} time",
                    "ratio",
                    Summary.of(per_repeat_ratios(candidate, baseline)),
                )
            )
            figures.append(
                Figure(
                    f"{name}_{default}_{phase}_ms",
                    f"{label}: {default} {title}",
                    "ms",
                    Summary.of([1000 * seconds for seconds in baseline]),
                )
            )
    return GroupReport(
        name="backbone_cost",
        title="EfficientNet-Lite0 against the default backbones (CPU)",
        setup={
            "VKD input": f"{sizes['vkd']} px, batch {batch}",
            "fracture detector input": f"{sizes['fracture']} px, batch {batch}",
            "warm-up rounds": settings.warmup,
        },
        notes=[
            "Each bundle's network_def with only backbone changed, random weights; one training step (forward, "
            "loss, backward, Adam) and one no-gradient forward per round on the same batch, the backbones "
            "interleaved round by round.",
        ],
        figures=figures,
    )
