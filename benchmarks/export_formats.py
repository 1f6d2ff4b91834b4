"""Inference images/s of the VKD network: eager PyTorch, TorchScript and ONNX Runtime (when installed).

All three run the deterministic image-only forward (``z = mu_p``) of the same weights on the same batch,
with the same number of CPU threads, interleaved round by round. TorchScript is ``torch.jit.script``
(what the bundle's ``ckpt_export`` produces); ONNX is the TorchScript-based ``torch.onnx.export`` run by
``onnxruntime``'s CPU provider. Outputs are checked against eager before timing.

ONNX Runtime was the fastest, so both bundles' ``inference.json`` (and ``evaluate.json``) make it the default on
CPU: ``inference_backend`` selects :class:`~cxrkd_monai.engines.OnnxRuntimeBackend`, which runs VKD's image
encoder (the bulk of the forward timed here) or the whole fracture detector with the same exporter and session
settings as :func:`_onnx_session`.
"""

from __future__ import annotations

import importlib.util
import io
import warnings
from pathlib import Path

import torch
from monai.bundle import ConfigParser

from benchmarks.bundle_data import VKD_BUNDLE
from benchmarks.report import Figure, GroupReport
from benchmarks.settings import BenchmarkSettings
from benchmarks.timing import Summary, interleaved_times, per_repeat_ratios

__all__ = ["run"]

_TOLERANCE = 1e-4


def _network(settings: BenchmarkSettings) -> torch.nn.Module:
    parser = ConfigParser()
    parser.read_config(str(VKD_BUNDLE / "configs" / "inference.json"))
    parser.update({"latent_dim": settings.latent_dim, "device": "$torch.device('cpu')"})
    torch.manual_seed(0)
    return parser.get_parsed_content("network_def", lazy=False).eval()


def _onnx_session(network: torch.nn.Module, images: torch.Tensor):
    import onnxruntime

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated in favour of the torch.export one, which needs more
        # dependencies and takes much longer on this DenseNet; the graph it writes is the same.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            network,
            (images,),
            buffer,
            input_names=["image"],
            output_names=["pred"],
            dynamic_axes={"image": {0: "batch"}, "pred": {0: "batch"}},
            dynamo=False,
        )
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])


def run(settings: BenchmarkSettings, work_dir: Path) -> GroupReport:
    """Measure eager, TorchScript and (if installed) ONNX Runtime inference images/s."""
    network = _network(settings)
    images = torch.rand(settings.batch_size, 1, settings.image_size, settings.image_size)
    scripted = torch.jit.script(network)
    calls = {"eager": lambda: network(images), "torchscript": lambda: scripted(images)}
    report = GroupReport(
        name="export_formats",
        title="Inference images/s: eager vs TorchScript vs ONNX Runtime (CPU)",
        setup={
            "image size": f"{settings.image_size} px",
            "batch": settings.batch_size,
            "latent_dim": settings.latent_dim,
            "torch threads": torch.get_num_threads(),
        },
    )
    with torch.no_grad():
        reference = network(images)
        outputs = {"torchscript": scripted(images)}
        onnx_installed = importlib.util.find_spec("onnxruntime") is not None
        if onnx_installed:
            session = _onnx_session(network, images)
            inputs = {"image": images.numpy()}
            calls["onnxruntime"] = lambda: session.run(None, inputs)
            outputs["onnxruntime"] = torch.from_numpy(session.run(None, inputs)[0])
        for name, output in outputs.items():
            difference = float((output - reference).abs().max())
            if difference > _TOLERANCE:
                raise AssertionError(
                    f"{name} output differs from eager by {difference:.2e} (> {_TOLERANCE})."
                )
            report.notes.append(f"{name} output matches eager within {difference:.1e}.")
        times = interleaved_times(calls, settings.repeats, settings.warmup)
    for name, label in (("torchscript", "TorchScript"), ("onnxruntime", "ONNX Runtime")):
        key, title = f"{name}_inference_speedup", f"{label} inference images/s ÷ eager"
        if name in times:
            report.figures.append(
                Figure(key, title, "ratio", Summary.of(per_repeat_ratios(times["eager"], times[name])))
            )
        else:
            report.figures.append(Figure.not_measured(key, title, "ratio", "onnxruntime is not installed"))
    for name, seconds in times.items():
        report.figures.append(
            Figure(
                f"{name}_inference_images_per_second",
                f"{name} inference images/s",
                "images/s",
                Summary.of([settings.batch_size / value for value in seconds]),
            )
        )
    fastest = max(times, key=lambda name: settings.batch_size / Summary.of(times[name]).median)
    report.notes.append(f"Fastest on this machine: {fastest}.")
    return report
