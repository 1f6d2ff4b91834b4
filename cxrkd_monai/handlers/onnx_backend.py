"""ONNX Runtime as the CPU inference backend of a bundle network, or of its expensive submodule.

``onnx`` (the exporter's protobuf writer) and ``onnxruntime`` come with the extra ``onnx`` and are imported when
the backend is used, so ``import cxrkd_monai`` and the PyTorch backend work without them.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from ignite.engine import Engine, Events
from torch import nn

from cxrkd_monai.utils.optional_imports import import_from_extra

if TYPE_CHECKING:
    import onnxruntime

__all__ = ["BACKENDS", "OnnxRuntimeBackend", "OnnxRuntimeModule", "export_to_onnxruntime"]

logger = logging.getLogger(__name__)

BACKENDS = ("onnxruntime", "pytorch")
"""Values of :class:`OnnxRuntimeBackend`'s ``backend`` (a bundle's ``inference_backend``)."""


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


class OnnxRuntimeBackend:
    """Ignite handler that runs ``engine.network`` (or one of its submodules) with ONNX Runtime on the CPU.

    At ``Events.STARTED`` it exports the (sub)module in eval mode to ONNX in memory (the TorchScript-based
    ``torch.onnx.export``, dynamic batch axis, fixed ``input_shape``), opens an ``onnxruntime.InferenceSession``
    with the ``CPUExecutionProvider`` and ``torch.get_num_threads()`` intra-op threads, checks its output against
    PyTorch on a random ``(3, *input_shape)`` input and swaps in an :class:`OnnxRuntimeModule`. At
    ``Events.COMPLETED`` the PyTorch module is put back, so the next run exports the weights it then has and
    ``CheckpointLoader`` always loads into the PyTorch module. Attach it after ``CheckpointLoader`` (both run
    at ``STARTED``, in the order they were attached).

    Exporting only a submodule keeps the rest in PyTorch: for :class:`~cxrkd_monai.networks.VKDNet`,
    ``submodule="image_encoder"`` moves the DenseNet ``h_x = image_encoder(image)`` to ONNX Runtime while the
    prior sampling and the classifier of :class:`~cxrkd_monai.inferers.MonteCarloPriorInferer` stay in torch
    (the same per-image seeded draws). The whole network (``submodule=""``) suits a single-tensor
    forward such as :class:`~cxrkd_monai.networks.FractureFPN`.

    Args:
        input_shape: ``(C, *spatial)`` of the images the network receives, e.g. ``[1, 224, 224]``. The bundles
            letterbox to a fixed ``image_size``; any other size is refused with a :class:`ValueError`.
        submodule: dotted name of the submodule to run with ONNX Runtime; ``""`` or ``None`` for the whole
            network. A DDP wrapper (``.module``) is looked through.
        backend: ``"onnxruntime"``, or ``"pytorch"`` to leave the network as it is (the handler only logs that).
        tolerance: largest ``|ONNX Runtime - PyTorch|`` allowed on the check input, also relative to the
            magnitude of the PyTorch output (``torch.allclose(rtol=atol=tolerance)``).

    Raises:
        ValueError: at construction, naming an invalid ``input_shape``, ``backend`` or ``tolerance``.
        AttributeError: at ``STARTED``, ``submodule`` is not a submodule of the network.
        ImportError: at ``STARTED`` with ``backend="onnxruntime"``, ``onnx`` or ``onnxruntime`` is not installed
            (extra ``onnx``).
        TypeError: at ``STARTED``, the network is TorchScript (``torch.jit.load`` of a ``model.ts``): the exporter
            cannot lower its graph, and its compiled code would not call a replaced submodule.
        ValueError: at ``STARTED``, the (sub)module does not return one tensor, or ONNX Runtime differs from
            PyTorch by more than ``tolerance`` (naming the module and the difference).

    Example (bundle config, after the ``CheckpointLoader`` in ``handlers``)::

        {"_target_": "cxrkd_monai.handlers.OnnxRuntimeBackend", "input_shape": "$[1, *@image_size]",
         "submodule": "image_encoder", "backend": "@inference_backend"}
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        submodule: str | None = "",
        backend: str = "onnxruntime",
        tolerance: float = 1e-4,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got backend={backend!r}.")
        shape = tuple(input_shape)
        if len(shape) < 2 or not all(isinstance(size, int) and size > 0 for size in shape):
            raise ValueError(
                f"input_shape must be (C, *spatial) with positive integer sizes, got input_shape={list(shape)}."
            )
        if tolerance <= 0:
            raise ValueError(f"tolerance must be positive, got tolerance={tolerance}.")
        self.input_shape = shape
        self.submodule = submodule or ""
        self.backend = backend
        self.tolerance = tolerance
        self._original: nn.Module | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)
        engine.add_event_handler(Events.COMPLETED, self.restore)

    def __call__(self, engine: Engine) -> None:
        # A run that ended in an exception did not reach COMPLETED.
        self.restore(engine)
        network = getattr(engine.network, "module", engine.network)
        network_name = getattr(network, "original_name", type(network).__name__)
        name = f"{network_name}.{self.submodule}" if self.submodule else network_name
        if self.backend == "pytorch":
            logger.info("Inference backend: PyTorch for %s.", name)
            return
        if isinstance(network, torch.jit.ScriptModule):
            raise TypeError(
                f"OnnxRuntimeBackend: {network_name} is a TorchScript network, which the ONNX exporter cannot lower "
                "and whose compiled code cannot call a replaced submodule; run it with the PyTorch backend "
                "(--inference_backend pytorch)."
            )
        module = self._find(network)
        runner, difference = export_to_onnxruntime(module, self.input_shape, name, self.tolerance)
        self._original = module if self.submodule else engine.network
        self._install(engine, network, runner)
        logger.info(
            "Inference backend: ONNX Runtime (CPUExecutionProvider, %d intra-op threads) for %s; max |ONNX Runtime "
            "- PyTorch| = %.1e on a (3, %s) check input.",
            runner.session.get_session_options().intra_op_num_threads,
            name,
            difference,
            ", ".join(map(str, self.input_shape)),
        )

    def restore(self, engine: Engine) -> None:
        """Puts the PyTorch module back in place of the ONNX Runtime one (at ``Events.COMPLETED``)."""
        if self._original is None:
            return
        network = getattr(engine.network, "module", engine.network)
        self._install(engine, network, self._original)
        self._original = None

    def _find(self, network: nn.Module) -> nn.Module:
        if not self.submodule:
            return network
        try:
            return network.get_submodule(self.submodule)
        except AttributeError as error:
            raise AttributeError(
                f"OnnxRuntimeBackend: submodule={self.submodule!r} is not a submodule of {type(network).__name__}."
            ) from error

    def _install(self, engine: Engine, network: nn.Module, module: nn.Module) -> None:
        if not self.submodule:
            engine.network = module
            return
        parent_name, _, attribute = self.submodule.rpartition(".")
        setattr(network.get_submodule(parent_name), attribute, module)


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
