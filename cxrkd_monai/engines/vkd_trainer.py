"""The VKD training engine: a MONAI ``SupervisedTrainer`` whose iteration also reads the report text."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from ignite.metrics import Metric
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents, default_metric_cmp_fn, default_prepare_batch
from monai.inferers import Inferer
from monai.transforms import Transform
from monai.utils.enums import CommonKeys as Keys
from torch import nn
from torch.optim import Optimizer
from torch.utils.data import DataLoader

from cxrkd_monai.engines.mixed_precision import autocast_for, backward_and_step
from cxrkd_monai.handlers.finite_loss import FiniteLossGuard
from cxrkd_monai.networks.vkd import VKDNet, VKDOutput

__all__ = ["VKD_LOSS_TERMS", "VKDTrainer", "VKDTrainingStep"]

VKD_LOSS_TERMS = ("bce_posterior", "kl", "bce_prior")
"""The terms of :class:`~cxrkd_monai.losses.VKDLoss` besides ``loss``, in the order the finite-loss guard checks."""


class VKDTrainingStep(nn.Module):
    """Exposes :meth:`VKDNet.forward_train` as ``forward``.

    ``DistributedDataParallel`` synchronises gradients only for calls to the wrapped module's
    ``forward``, so multi-GPU training wraps this adapter (``wrap_ddp(VKDTrainingStep(net), device)``)
    rather than the network, whose ``forward`` is the image-only inference path. Parameters are shared
    with ``network``; checkpoints and evaluators keep using ``network`` itself.
    """

    def __init__(self, network: VKDNet) -> None:
        super().__init__()
        self.network = network

    def forward(self, image: torch.Tensor, text_features: torch.Tensor | None, num_samples: int = 1) -> VKDOutput:
        return self.network.forward_train(image, text_features, num_samples=num_samples)


class VKDTrainer(SupervisedTrainer):
    """Trains :class:`~cxrkd_monai.networks.VKDNet` with report text as privileged information.

    Each iteration takes a dictionary batch with ``image`` ``(B, 1, W, H)``, ``label`` ``(B, C)``, the
    report strings under ``report_key`` and, optionally, the observation mask under ``mask_key`` as a ``(B, C)``
    tensor (1 = observed label; :class:`~cxrkd_monai.transforms.EnsureLabelMaskd` makes one per item, so that it
    collates to a tensor). Masked entries contribute nothing to the loss.
    The text features ``(B, T)`` come from ``text_encoder`` (usually a
    :class:`~cxrkd_monai.data.TextEmbeddingCache`, so a frozen encoder runs once per unique report); the
    network's training path gives prior and posterior statistics and logits; ``loss_function`` is a
    :class:`~cxrkd_monai.losses.VKDLoss` returning its terms.

    ``network`` is the :class:`~cxrkd_monai.networks.VKDNet`, or under DDP the
    ``DistributedDataParallel`` wrapping a :class:`VKDTrainingStep` of it.

    With ``text_encoder=None`` the text path is off and the same network and head are trained image-only
    on the prior path: this is the baseline.

    ``engine.state.output`` holds ``image``, ``label``, ``pred`` (prior-path probabilities, ``(B, C)``),
    ``loss`` and each loss term (``bce_posterior``, ``kl``, ``bce_prior``) as floats for the handlers. As in
    MONAI's ``SupervisedTrainer`` the output (and the batch) are decollated after each iteration by default,
    into one dict per image with the loss and its terms repeated in each, so
    ``monai.handlers.from_engine(["loss"], first=True)`` picks the loss.

    Training stops at the first non-finite loss term, before the backward pass: the trainer attaches a
    :class:`~cxrkd_monai.handlers.FiniteLossGuard` over :data:`VKD_LOSS_TERMS` and the loss, whose
    ``FloatingPointError`` names the term, the epoch, the iteration and the batch's image files (from
    ``image_filename``, e.g. copied from ``image`` by ``CopyItemsd`` before loading, or the image's meta data).

    Args:
        device: device to train on.
        max_epochs: number of epochs.
        train_data_loader: batches as above.
        network: the :class:`~cxrkd_monai.networks.VKDNet`, or the ``DistributedDataParallel`` wrapping a
            :class:`VKDTrainingStep` of it.
        optimizer: optimiser of the network's (and a trainable text encoder's) parameters.
        loss_function: a :class:`~cxrkd_monai.losses.VKDLoss`, called as ``loss_function(outputs, label, mask)``.
        text_encoder: maps a list of B report strings to a ``(B, T)`` tensor; ``None`` switches text off.
        report_key: batch key of the report strings.
        mask_key: batch key of the label mask.
        num_train_samples: Monte Carlo samples of z per image in the training loss.
        inferer: kept as ``engine.inferer`` (MONAI's ``train_inferer`` bundle property); the iteration does not use
            it, because the network's training path takes the report features besides the image.
        amp: autocast the forward pass and loss, on GPU and CPU (``amp_kwargs`` may set ``dtype``), with a
            gradient scaler on GPU.
        compile: compile the training step (the network's training path) with ``torch.compile``, with
            ``compile_kwargs``.
        other arguments: as :class:`monai.engines.SupervisedTrainer`.
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable | DataLoader,
        network: nn.Module,
        optimizer: Optimizer,
        loss_function: Callable,
        text_encoder: Callable[[Sequence[str]], torch.Tensor] | None = None,
        report_key: str = "report",
        mask_key: str = "label_mask",
        num_train_samples: int = 1,
        epoch_length: int | None = None,
        non_blocking: bool = False,
        prepare_batch: Callable = default_prepare_batch,
        inferer: Inferer | None = None,
        postprocessing: Transform | None = None,
        key_train_metric: dict[str, Metric] | None = None,
        additional_metrics: dict[str, Metric] | None = None,
        metric_cmp_fn: Callable = default_metric_cmp_fn,
        train_handlers: Sequence | None = None,
        amp: bool = False,
        decollate: bool = True,
        optim_set_to_none: bool = False,
        to_kwargs: dict | None = None,
        amp_kwargs: dict | None = None,
        compile: bool = False,
        compile_kwargs: dict | None = None,
    ) -> None:
        if num_train_samples < 1:
            raise ValueError(f"num_train_samples must be >= 1, got {num_train_samples}.")
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            train_data_loader=train_data_loader,
            network=network,
            optimizer=optimizer,
            loss_function=loss_function,
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            prepare_batch=prepare_batch,
            inferer=inferer,
            postprocessing=postprocessing,
            key_train_metric=key_train_metric,
            additional_metrics=additional_metrics,
            metric_cmp_fn=metric_cmp_fn,
            train_handlers=train_handlers,
            amp=amp,
            decollate=decollate,
            optim_set_to_none=optim_set_to_none,
            to_kwargs=to_kwargs,
            amp_kwargs=amp_kwargs,
            # the iteration calls the training step, not the network: that is what is compiled, below
            compile=False,
        )
        is_step = isinstance(self.network, VKDTrainingStep) or isinstance(
            getattr(self.network, "module", None), VKDTrainingStep
        )
        self.training_step = self.network if is_step else VKDTrainingStep(self.network)
        if compile:
            self.training_step = torch.compile(self.training_step, **(compile_kwargs or {}))
        self.text_encoder = text_encoder
        self.report_key = report_key
        self.mask_key = mask_key
        self.num_train_samples = num_train_samples
        FiniteLossGuard(term_keys=VKD_LOSS_TERMS).attach(self)

    def _text_features(self, batchdata: dict) -> torch.Tensor | None:
        if self.text_encoder is None:
            return None
        if self.report_key not in batchdata:
            raise KeyError(f"VKD training batch has no '{self.report_key}' key (keys: {sorted(batchdata)}).")
        reports = list(batchdata[self.report_key])
        return self.text_encoder(reports).to(self.state.device, non_blocking=self.non_blocking)

    def _label_mask(self, batchdata: dict) -> torch.Tensor | None:
        mask = batchdata.get(self.mask_key)
        if mask is None:
            return None
        if not isinstance(mask, torch.Tensor):
            # PyTorch's default collate turns per-item lists into a list of C per-class tensors.
            raise TypeError(
                f"VKD training batch '{self.mask_key}' is a {type(mask).__name__}, expected a (B, C) tensor; "
                f"add cxrkd_monai.transforms.EnsureLabelMaskd to the preprocessing so that each item's mask is a "
                "tensor (and items without one get ones)."
            )
        return mask.to(self.state.device, non_blocking=self.non_blocking)

    def _iteration(self, engine: VKDTrainer, batchdata: dict) -> dict:
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        inputs, targets = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking)[:2]
        mask = engine._label_mask(batchdata)
        text_features = engine._text_features(batchdata)
        engine.state.output = {Keys.IMAGE: inputs, Keys.LABEL: targets}

        engine.network.train()
        engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        with autocast_for(engine):
            outputs = engine.training_step(inputs, text_features, engine.num_train_samples)
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            terms = engine.loss_function(outputs, targets.float(), mask)
            engine.state.output.update(terms)  # for the FiniteLossGuard at LOSS_COMPLETED
            engine.fire_event(IterationEvents.LOSS_COMPLETED)
        loss = terms["loss"]
        backward_and_step(engine, loss)

        engine.state.output[Keys.PRED] = torch.sigmoid(outputs.prior_logits.detach().float()).mean(dim=0)
        engine.state.output[Keys.LOSS] = loss.detach()
        engine.state.output.update({name: float(value.detach()) for name, value in terms.items() if name != "loss"})
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output
