"""Stage 2 of AALS: a mean-teacher trainer whose teacher labels the record-positive images without regions."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, EMAHandler
from ignite.metrics import Metric
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents, default_metric_cmp_fn
from monai.inferers import Inferer
from monai.transforms import Transform
from monai.utils import CommonKeys as Keys
from torch.optim import Optimizer
from torch.utils.data import DataLoader

from cxrkd_monai.engines.fracture_batch import PrepareFractureBatch
from cxrkd_monai.engines.mixed_precision import autocast_for, backward_and_step
from cxrkd_monai.losses.aals import LabelSharpening

__all__ = ["SHARPENING_MODES", "TeacherStudentTrainer", "load_stage1_weights"]

SHARPENING_MODES = ("aals", "symmetric", "none", "mil")
"""``sharpening`` values: the AALS operator, its symmetric baseline, plain teacher maps, image-level MIL."""

SUBSET_D_P = 1
"""``subset_index`` of record-positive images without regions (0 = D_R, 1 = D_P, 2 = D_N)."""


def load_stage1_weights(network: torch.nn.Module, checkpoint_path: str | Path) -> None:
    """Load the stage-1 checkpoint ``checkpoint_path`` (saved with ``{"model": network}``) into ``network``.

    ``DataParallel``/``DistributedDataParallel`` wrappers are handled by Ignite's loader.

    Raises:
        FileNotFoundError: the checkpoint does not exist; stage 1 has to run first.
    """
    path = Path(checkpoint_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Stage-1 checkpoint not found: {path}. Run stage 1 (configs/train_teacher.json) first, "
            "or point 'stage1_checkpoint' at an existing teacher checkpoint."
        )
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    Checkpoint.load_objects(to_load={"model": network}, checkpoint=checkpoint)


class TeacherStudentTrainer(SupervisedTrainer):
    """Mean-teacher training of the fracture detector with label sharpening on D_P (AALS, Wang et al. 2021).

    Student and teacher both start from the stage-1 checkpoint. After every iteration the teacher becomes an
    exponential moving average of the student, ``teacher = decay * teacher + (1 - decay) * student``
    (Ignite's :class:`~ignite.handlers.EMAHandler` with ``momentum = 1 - decay``; buffers are averaged too).

    Every batch item carries ``subset_index`` (0 = D_R, 1 = D_P, 2 = D_N) and ``image_label``. The loss is

    ``loss_function(student(x_RN), target_RN) + pseudo_label_weight * L_P``

    where D_R and D_N items use their rendered target maps (blobs, or all zero for D_N) and ``L_P`` depends
    on ``sharpening``:

    - ``"aals"``: ``loss_function(student(x_P), max(S(y'), y'))`` with ``y' = sigmoid(teacher(x_P))`` and
      ``S`` the adaptive asymmetric sharpening of :class:`~cxrkd_monai.losses.aals.LabelSharpening`;
    - ``"symmetric"``: the same with ``S(y')`` (no max, so values below ``threshold`` are lowered);
    - ``"none"``: plain distillation against ``y'``;
    - ``"mil"``: image-level multiple-instance learning, the BCE between the student's per-type map maximum
      and the record label ``image_label`` (the teacher is not consulted).

    Each term is a mean over its own items, so the balance between them does not drift with the number of
    D_P items in a batch; a term whose items are absent from the batch is zero.

    ``engine.state.output`` holds ``image``, ``label`` (target maps), ``pred`` (student logits
    ``(B, K, *S)``), ``loss``, ``dp_target`` (the D_P maps the student is pushed towards, ``(N_P, K, *S)``
    probabilities; in ``"mil"`` mode the student's own map) and ``dp_label`` (``(N_P, K)`` record labels),
    which :class:`~cxrkd_monai.engines.fracture_handlers.PseudoPositiveRate` reads.

    Args:
        device: device to train on.
        max_epochs: number of epochs.
        train_data_loader: batches with ``image`` ``(B, C, *S)``, ``target`` ``(B, K, *S')``,
            ``subset_index`` ``(B,)`` and ``image_label`` ``(B, K)``.
        network: the student, returning logits ``(B, K, *S')``; may be wrapped in DDP.
        optimizer: optimiser of the student's parameters.
        loss_function: pixel-wise loss on logits and probability targets, e.g.
            ``torch.nn.BCEWithLogitsLoss(pos_weight=...)``.
        stage1_checkpoint: path of the stage-1 checkpoint that initialises student and teacher.
        sharpening: one of :data:`SHARPENING_MODES`.
        teacher_decay: EMA decay ``d`` of the teacher, in ``(0, 1)``.
        pseudo_label_weight: the weight λ of the D_P term.
        sharpening_strength: ``a0`` of AALS, the sharpening factor for a teacher peak of 0.
        sharpening_threshold: ``t`` of AALS, the value that sharpening keeps fixed.
        subset_key: batch key of the subset index.
        image_label_key: batch key of the record labels.
        prepare_batch: returns ``(image, target)``; defaults to :class:`PrepareFractureBatch`.
        other arguments: as :class:`monai.engines.SupervisedTrainer`.

    Raises:
        FileNotFoundError: ``stage1_checkpoint`` does not exist.
        ValueError: unknown ``sharpening`` or ``teacher_decay`` outside ``(0, 1)``.

    Example::

        trainer = TeacherStudentTrainer(
            device="cpu", max_epochs=10, train_data_loader=loader, network=student, optimizer=optimizer,
            loss_function=torch.nn.BCEWithLogitsLoss(), stage1_checkpoint="models/teacher.pt",
            sharpening="aals", teacher_decay=0.99, pseudo_label_weight=1.0,
        )
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable | DataLoader,
        network: torch.nn.Module,
        optimizer: Optimizer,
        loss_function: Callable,
        stage1_checkpoint: str | Path,
        sharpening: str = "aals",
        teacher_decay: float = 0.99,
        pseudo_label_weight: float = 1.0,
        sharpening_strength: float = 4.0,
        sharpening_threshold: float = 0.4,
        subset_key: str = "subset_index",
        image_label_key: str = "image_label",
        epoch_length: int | None = None,
        non_blocking: bool = False,
        prepare_batch: Callable | None = None,
        inferer: Inferer | None = None,
        postprocessing: Transform | None = None,
        key_train_metric: dict[str, Metric] | None = None,
        additional_metrics: dict[str, Metric] | None = None,
        metric_cmp_fn: Callable = default_metric_cmp_fn,
        train_handlers: Sequence | None = None,
        amp: bool = False,
        decollate: bool = False,
        optim_set_to_none: bool = False,
        to_kwargs: dict | None = None,
        amp_kwargs: dict | None = None,
        compile: bool = False,
        compile_kwargs: dict | None = None,
    ) -> None:
        if sharpening not in SHARPENING_MODES:
            raise ValueError(f"sharpening must be one of {SHARPENING_MODES}, got {sharpening!r}.")
        if not 0.0 < teacher_decay < 1.0:
            raise ValueError(f"teacher_decay must lie in (0, 1), got {teacher_decay}.")
        load_stage1_weights(network, stage1_checkpoint)
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            train_data_loader=train_data_loader,
            network=network,
            optimizer=optimizer,
            loss_function=loss_function,
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            prepare_batch=PrepareFractureBatch() if prepare_batch is None else prepare_batch,
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
            compile=compile,
            compile_kwargs=compile_kwargs,
        )
        self.sharpening = sharpening
        self.teacher_decay = teacher_decay
        self.pseudo_label_weight = pseudo_label_weight
        self.subset_key = subset_key
        self.image_label_key = image_label_key
        self.label_sharpening = (
            None
            if sharpening == "mil"
            else LabelSharpening(mode=sharpening, a0=sharpening_strength, threshold=sharpening_threshold)
        )
        # The copy is taken after the stage-1 weights are loaded, so the teacher starts from them too.
        self.ema = EMAHandler(network, momentum=1.0 - teacher_decay, handle_buffers="update")
        self.ema.attach(self, name="teacher_ema_momentum", event=Events.ITERATION_COMPLETED)

    @property
    def teacher(self) -> torch.nn.Module:
        """The EMA teacher (always in eval mode)."""
        return self.ema.ema_model

    def _iteration(self, engine: Engine, batchdata: dict[str, torch.Tensor]) -> dict:
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        for key in (self.subset_key, self.image_label_key):
            if key not in batchdata:
                raise KeyError(f"TeacherStudentTrainer: batch has no '{key}' (keys: {sorted(batchdata)}).")
        inputs, targets = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs)
        subset = torch.as_tensor(batchdata[self.subset_key]).to(inputs.device).long().view(-1)
        record = torch.as_tensor(batchdata[self.image_label_key]).to(inputs.device).float()
        engine.state.output = {Keys.IMAGE: inputs, Keys.LABEL: targets}

        engine.network.train()
        engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        with autocast_for(engine):
            self._compute_pred_loss(engine, inputs, targets, subset, record)
        backward_and_step(engine, engine.state.output[Keys.LOSS])
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output

    def _compute_pred_loss(
        self, engine: Engine, inputs: torch.Tensor, targets: torch.Tensor, subset: torch.Tensor, record: torch.Tensor
    ) -> None:
        pred = engine.inferer(inputs, engine.network)
        engine.state.output[Keys.PRED] = pred
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        pseudo = subset == SUBSET_D_P
        supervised = ~pseudo
        zero = pred.sum() * 0.0
        supervised_loss = engine.loss_function(pred[supervised], targets[supervised]) if supervised.any() else zero
        pseudo_loss, dp_target = self._pseudo_label_loss(engine, inputs[pseudo], pred[pseudo], record[pseudo], zero)
        engine.state.output[Keys.LOSS] = supervised_loss + self.pseudo_label_weight * pseudo_loss
        engine.state.output["dp_target"] = dp_target
        engine.state.output["dp_label"] = record[pseudo]
        engine.fire_event(IterationEvents.LOSS_COMPLETED)

    def _pseudo_label_loss(
        self, engine: Engine, inputs: torch.Tensor, pred: torch.Tensor, record: torch.Tensor, zero: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The D_P term and the D_P maps it pushes the student towards."""
        if self.sharpening == "mil":
            dp_target = torch.sigmoid(pred.detach().float())
            if len(pred) == 0:
                return zero, dp_target
            # max of the logits is the logit of the max probability, and keeps BCE numerically stable
            image_logits = pred.flatten(2).amax(dim=-1)
            return F.binary_cross_entropy_with_logits(image_logits.float(), record), dp_target
        if len(pred) == 0:
            return zero, pred.detach().float()
        with torch.no_grad():
            teacher_prob = torch.sigmoid(engine.inferer(inputs, self.teacher).float())
            dp_target = self.label_sharpening(teacher_prob)
        return engine.loss_function(pred, dp_target), dp_target
