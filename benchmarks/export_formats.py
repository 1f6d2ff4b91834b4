"""Inference images/s of both bundles' networks: eager PyTorch, TorchScript and ONNX Runtime (CPU).

Each network is built from its bundle's ``inference.json`` and run at the bundle's own image size (full mode):
the VKD network's deterministic image-only forward (``z = mu_p``) and the fracture detector's probability maps.
The three formats run the same weights on the same batch, with the same number of CPU threads, interleaved round
by round. TorchScript is ``torch.jit.script`` (what the bundle's ``ckpt_export`` produces); ONNX Runtime is
:func:`~cxrkd_monai.networks.export_to_onnxruntime`, the exporter and session of the bundles'
``OnnxRuntimeBackend``, which checks its output against eager before timing.

ONNX Runtime was the fastest, so both bundles' ``inference.json`` and ``evaluate.json`` make it the default on
CPU (``inference_backend``): for VKD it runs the image encoder, the bulk of the forward timed here, and the prior
sampling and classifier stay in PyTorch; for the fracture detector it runs the whole network.
"""

from __future__ import annotations

from pathlib import Path

import torch
from monai.bundle import ConfigParser

from benchmarks.bundle_data import FRACTURE_BUNDLE, VKD_BUNDLE
from benchmarks.report import Figure, GroupReport
from benchmarks.settings import BenchmarkSettings
from benchmarks.timing import Summary, interleaved_times, per_repeat_ratios
from cxrkd_monai.networks import export_to_onnxruntime

__all__ = ["run"]

_TOLERANCE = 1e-4
_FORMATS = (("torchscript", "TorchScript"), ("onnxruntime", "ONNX Runtime"))


def _network(bundle: Path, overrides: dict) -> torch.nn.Module:
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser.update({"device": "$torch.device('cpu')", **overrides})
    torch.manual_seed(0)
    return parser.get_parsed_content("network_def", lazy=False).eval()


def _measure(
    name: str, label: str, network: torch.nn.Module, images: torch.Tensor, settings: BenchmarkSettings
) -> tuple[list[Figure], list[str]]:
    """Figures and notes of one network: each format's images/s and its speed-up over eager."""
    scripted = torch.jit.script(network)
    onnx_runtime, difference = export_to_onnxruntime(network, images.shape[1:], label, _TOLERANCE)
    calls = {"eager": network, "torchscript": scripted, "onnxruntime": onnx_runtime}
    with torch.no_grad():
        reference = network(images)
        script_difference = float((scripted(images) - reference).abs().max())
        if script_difference > _TOLERANCE:
            raise AssertionError(f"{label}: TorchScript output differs from eager by {script_difference:.2e}.")
        times = interleaved_times(
            {key: (lambda call=call: call(images)) for key, call in calls.items()}, settings.repeats, settings.warmup
        )
    batch = images.shape[0]
    figures = [
        Figure(
            f"{name}_{key}_inference_speedup",
            f"{label}: {title} inference images/s ÷ eager",
            "ratio",
            Summary.of(per_repeat_ratios(times["eager"], times[key])),
        )
        for key, title in _FORMATS
    ]
    figures += [
        Figure(
            f"{name}_{key}_inference_images_per_second",
            f"{label}: {key} inference images/s",
            "images/s",
            Summary.of([batch / seconds for seconds in times[key]]),
        )
        for key in calls
    ]
    fastest = min(times, key=lambda key: Summary.of(times[key]).median)
    notes = [
        f"{label}, {list(images.shape)}: outputs match eager within {script_difference:.1e} (TorchScript) and "
        f"{difference:.1e} (ONNX Runtime, on its check input); fastest on this machine: {fastest}."
    ]
    return figures, notes


def run(settings: BenchmarkSettings, work_dir: Path) -> GroupReport:
    """Measure eager, TorchScript and ONNX Runtime inference images/s of both bundles' networks."""
    vkd_size, fracture_size = settings.inference_image_size, settings.fracture_inference_image_size
    cases = [
        (
            "vkd",
            "VKD (z = mu_p)",
            _network(VKD_BUNDLE, {"latent_dim": settings.latent_dim}),
            torch.rand(settings.batch_size, 1, vkd_size, vkd_size),
        ),
        (
            "fracture",
            "fracture detector",
            _network(FRACTURE_BUNDLE, {}),
            torch.rand(settings.fracture_inference_batch_size, 1, fracture_size, fracture_size),
        ),
    ]
    report = GroupReport(
        name="export_formats",
        title="Inference images/s: eager vs TorchScript vs ONNX Runtime (CPU)",
        setup={
            "VKD": f"{vkd_size} px, batch {settings.batch_size}, latent_dim {settings.latent_dim}",
            "fracture detector": f"{fracture_size} px, batch {settings.fracture_inference_batch_size}",
            "torch threads": torch.get_num_threads(),
        },
    )
    for name, label, network, images in cases:
        figures, notes = _measure(name, label, network, images, settings)
        report.figures += figures
        report.notes += notes
    return report
