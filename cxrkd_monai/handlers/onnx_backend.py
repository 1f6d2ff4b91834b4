"""ONNX Runtime as the CPU inference backend of a bundle network, or of its expensive submodule: an Ignite handler
that swaps :class:`~cxrkd_monai.networks.OnnxRuntimeModule` in for a run and puts the PyTorch module back after it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from ignite.engine import Engine, Events
from torch import nn

from cxrkd_monai.networks.onnx_runtime_module import export_to_onnxruntime

__all__ = ["BACKENDS", "OnnxRuntimeBackend"]

logger = logging.getLogger(__name__)

BACKENDS = ("onnxruntime", "pytorch")
"""Values of :class:`OnnxRuntimeBackend`'s ``backend`` (a bundle's ``inference_backend``)."""


class OnnxRuntimeBackend:
    """Ignite handler that runs ``engine.network`` (or one of its submodules) with ONNX Runtime on the CPU.

    At ``Events.STARTED`` it exports the (sub)module in eval mode to ONNX in memory (the TorchScript-based
    ``torch.onnx.export``, dynamic batch axis, fixed ``input_shape``), opens an ``onnxruntime.InferenceSession``
    with the ``CPUExecutionProvider`` and ``torch.get_num_threads()`` intra-op threads, checks its output against
    PyTorch on a random ``(3, *input_shape)`` input and swaps in an :class:`~cxrkd_monai.networks.OnnxRuntimeModule`. At
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
