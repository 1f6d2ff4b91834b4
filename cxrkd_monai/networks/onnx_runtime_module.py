"""A PyTorch module that runs an ONNX Runtime session in place of the module it was exported from.

``onnx`` (the exporter's protobuf writer) and ``onnxruntime`` come with the extra ``onnx`` and are imported when
an export is asked for, so ``import cxrkd_monai`` and the PyTorch backend work without them.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from cxrkd_monai.utils.optional_imports import import_from_extra

if TYPE_CHECKING:
    import onnxruntime

__all__ = ["OnnxRuntimeModule", "export_to_onnxruntime"]


class OnnxRuntimeModule(nn.Module):
    """Runs an ONNX Runtime session in place of the PyTorch module it was exported from.

    Args:
        session: an ``onnxruntime.InferenceSession`` with one input and one output.
        input_shape: the ``(C, *spatial)`` the session was exported for; the batch axis is free.
        name: how to name the replaced module in error messages and ``repr``.

    Shapes:
        input ``(B, *input_shape)``, any float dtype and device; output the exported module's output,
        ``(B, ...)``, on the input's device and dtype. The session computes in float32 on the CPU.

    Raises:
        ValueError: naming the module, the expected and the given shape, when ``input_shape`` differs.
    """

    def __init__(self, session: onnxruntime.InferenceSession, input_shape: Sequence[int], name: str) -> None:
        super().__init__()
        self.session = session
        self.input_shape = tuple(int(size) for size in input_shape)
        self.name = name
        self.input_name = session.get_inputs()[0].name

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.dim() != len(self.input_shape) + 1 or tuple(image.shape[1:]) != self.input_shape:
            expected = ", ".join(map(str, self.input_shape))
            raise ValueError(
                f"ONNX Runtime backend of {self.name}: exported for input (B, {expected}), got {list(image.shape)}. "
                "Letterbox images to the bundle's image_size, or run with --inference_backend pytorch."
            )
        array = image.detach().as_subclass(torch.Tensor).to(device="cpu", dtype=torch.float32).contiguous().numpy()
        (output,) = self.session.run(None, {self.input_name: array})
        return torch.from_numpy(output).to(device=image.device, dtype=image.dtype)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, input_shape={self.input_shape}"


def export_to_onnxruntime(
    module: nn.Module, input_shape: Sequence[int], name: str, tolerance: float = 1e-4
) -> tuple[OnnxRuntimeModule, float]:
    """Exports ``module`` to ONNX in memory and returns it as an :class:`OnnxRuntimeModule` checked against PyTorch.

    The TorchScript-based ``torch.onnx.export`` (dynamic batch axis, fixed ``input_shape``) of ``module`` in eval
    mode, run by an ``onnxruntime.InferenceSession`` with the ``CPUExecutionProvider``, ``torch.get_num_threads()``
    intra-op threads and one inter-op thread. ``module``'s training mode and the global RNG are left as they were.

    Args:
        module: a PyTorch module with one image input ``(B, *input_shape)`` and one tensor output.
        input_shape: ``(C, *spatial)``.
        name: how to name ``module`` in messages.
        tolerance: ``torch.allclose(rtol=atol=tolerance)`` between ONNX Runtime and PyTorch on a random
            ``(3, *input_shape)`` check input.

    Returns:
        the ONNX Runtime module and its largest ``|ONNX Runtime - PyTorch|`` on the check input.

    Raises:
        ImportError: ``onnx`` or ``onnxruntime`` is not installed, naming the extra ``onnx``.
        ValueError: ``module`` does not return one tensor, or ONNX Runtime differs from PyTorch (in shape, or by more
            than ``tolerance``), naming ``name`` and the difference.
    """
    purpose = f"The ONNX Runtime backend of {name} (inference_backend 'onnxruntime'; 'pytorch' needs no extra)"
    import_from_extra("onnx", "onnx", purpose)
    onnxruntime = import_from_extra("onnxruntime", "onnx", purpose)
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    # A private generator keeps the global RNG, and so the inferer's seeded draws, untouched.
    generator = torch.Generator().manual_seed(0)
    example = torch.rand((2, *input_shape), generator=generator).to(device)
    check = torch.rand((3, *input_shape), generator=generator).to(device)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            reference = module(check)
        if not isinstance(reference, torch.Tensor):
            raise ValueError(f"OnnxRuntimeBackend: {name} must return one tensor, got {type(reference).__name__}.")
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            # The TorchScript-based exporter is deprecated in favour of torch.export, which needs onnxscript
            # and takes far longer on these CNNs; it writes the same graph.
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                module,
                (example,),
                buffer,
                input_names=["input"],
                output_names=["output"],
                dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                dynamo=False,
            )
    finally:
        module.train(was_training)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
    runner = OnnxRuntimeModule(session, input_shape, name)
    with torch.no_grad():
        output = runner(check)
    if output.shape != reference.shape:
        raise ValueError(
            f"OnnxRuntimeBackend: ONNX Runtime output of {name} has shape {list(output.shape)}, PyTorch "
            f"{list(reference.shape)}, for input {list(check.shape)}."
        )
    difference = float((output - reference).abs().max())
    if not torch.allclose(output, reference, rtol=tolerance, atol=tolerance):
        raise ValueError(
            f"OnnxRuntimeBackend: ONNX Runtime output of {name} differs from PyTorch by up to {difference:.2e} "
            f"(tolerance {tolerance}); run it with the PyTorch backend (--inference_backend pytorch)."
        )
    return runner, difference
