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

from cxrkd_monai.engines.mixed_precision import autocast_for, backward_and_step
from cxrkd_monai.engines.prepare_batch import PrepareFractureBatch, hard_target_maps
from cxrkd_monai.losses.aals import LabelSharpening
from cxrkd_monai.losses.masked_map import masked_map_mean
from cxrkd_monai.transforms.image_score import image_scores

__all__ = ["SHARPENING_MODES", "TeacherStudentTrainer", "load_stage1_weights"]

SHARPENING_MODES = ("aals", "symmetric", "none", "mil")
"""``sharpening`` values: the AALS operator, its symmetric baseline, plain teacher maps, image-level MIL."""


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

    Targets are chosen per image and fracture type (per map), from the record label ``image_label`` and the
    ``annotated`` mask of :class:`~cxrkd_monai.transforms.FractureTargetMapd`:

    - a type whose record is 0 gets an all-zero *hard* target, on any image (D_R, D_P or D_N);
    - an annotated, record-positive type gets its rendered blobs as *hard* target;
    - a record-positive type without any region (every positive type of a D_P image, and a positive type
      of a D_R image whose fracture was not drawn) is a *soft* map: the teacher labels it.

    The loss is ``mean_hard(loss_function(pred, hard_target)) + pseudo_label_weight * L_P``, each term a
    mean over the pixels of its own maps (so the balance does not drift with the number of D_P maps in a
    batch; a term without maps in the batch is zero). The choice of targets is
    :func:`~cxrkd_monai.engines.hard_target_maps`, shared with stage 1. ``loss_function`` may weight the blobs'
    support (the hard targets are blobs in ``[0, 1]``, see
    :class:`~cxrkd_monai.losses.SupportWeightedBCEWithLogitsLoss`). ``L_P`` depends on ``sharpening``:

    - ``"aals"``: ``mean_soft(soft_target_loss(pred, max(S(y'), y')))`` with ``y' = sigmoid(teacher(x))``
      and ``S`` the adaptive asymmetric sharpening of :class:`~cxrkd_monai.losses.LabelSharpening`;
    - ``"symmetric"``: the same with ``S(y')`` (no max, so values below ``threshold`` are lowered);
    - ``"none"``: plain distillation against ``y'``;
    - ``"mil"``: image-level multiple-instance learning, the BCE between the soft map's maximum over the image
      area (:func:`~cxrkd_monai.transforms.image_scores`; the whole map when the batch has no ``geometry_key``,
      i.e. was not letterboxed) and the record label 1 (the teacher is not consulted).

    ``soft_target_loss`` must be minimised by its target, so that ``"none"`` reproduces the teacher and the
    other modes differ from it only by their sharpening: plain BCE, never a ``pos_weight``-ed one (whose
    minimum lies at ``w * y / ((w - 1) * y + 1)``, e.g. 0.53 for a target of 0.1 at ``w = 10``).

    ``engine.state.output`` holds ``image``, ``label`` (rendered target maps), ``pred`` (student logits
    ``(B, K, *S)``), ``loss``, ``dp_mask`` (bool ``(B, K)``, which maps are soft), ``dp_teacher`` (the
    teacher's maps, ``(B, K, *S)`` probabilities) and ``dp_target`` (the maps the student is pushed towards);
    in ``"mil"`` mode both are the student's own map. The teacher runs on the items with a soft map only;
    ``dp_teacher`` and ``dp_target`` are zeros for the others. As in MONAI's ``SupervisedTrainer`` the output
    (and the batch) are decollated after each iteration by default, into one dict per image with ``loss``
    repeated in each, so ``monai.handlers.from_engine(["loss"], first=True)`` picks the loss.
    :class:`~cxrkd_monai.handlers.PseudoPositiveRate` reads the ``dp_*`` entries.

    Args:
        device: device to train on.
        max_epochs: number of epochs.
        train_data_loader: batches with ``image`` ``(B, C, *S)``, ``target`` ``(B, K, *S')``,
            ``image_label`` ``(B, K)`` and ``annotated`` ``(B, K)``.
        network: the student, returning logits ``(B, K, *S')``; may be wrapped in DDP.
        optimizer: optimiser of the student's parameters.
        loss_function: per-pixel loss on logits and the hard targets, returning ``(B, K, *S')``, e.g.
            ``cxrkd_monai.losses.SupportWeightedBCEWithLogitsLoss(pos_weight=..., reduction="none")``.
        stage1_checkpoint: path of the stage-1 checkpoint that initialises student and teacher.
        sharpening: one of :data:`SHARPENING_MODES`.
        teacher_decay: EMA decay ``d`` of the teacher, in ``(0, 1)``.
        pseudo_label_weight: the weight λ of the D_P term.
        sharpening_strength: ``a0`` of AALS, the sharpening factor for a teacher peak of 0.
        sharpening_threshold: ``t`` of AALS, the value that sharpening keeps fixed.
        soft_target_loss: per-pixel loss on logits and soft probability targets, returning ``(B, K, *S')``;
            plain ``torch.nn.BCEWithLogitsLoss(reduction="none")`` by default.
        image_label_key: batch key of the record labels.
        annotated_key: batch key of the mask of annotated types.
        geometry_key: batch key of the letterbox geometry ``(B, 4, D)``, which ``"mil"`` reads.
        prepare_batch: returns ``(image, target)``; defaults to :class:`PrepareFractureBatch`.
        other arguments: as :class:`monai.engines.SupervisedTrainer`.

    Raises:
        FileNotFoundError: ``stage1_checkpoint`` does not exist.
        ValueError: unknown ``sharpening``, ``teacher_decay`` outside ``(0, 1)``, or a ``soft_target_loss``
            with a ``pos_weight``.

    Example::

        trainer = TeacherStudentTrainer(
            device="cpu", max_epochs=10, train_data_loader=loader, network=student, optimizer=optimizer,
            loss_function=SupportWeightedBCEWithLogitsLoss(pos_weight=torch.full((2, 1, 1), 10.0), reduction="none"),
            stage1_checkpoint="models/teacher.pt", sharpening="aals", teacher_decay=0.99,
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
        soft_target_loss: Callable | None = None,
        image_label_key: str = "image_label",
        annotated_key: str = "annotated",
        geometry_key: str = "geometry",
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
        decollate: bool = True,
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
        if soft_target_loss is None:
            soft_target_loss = torch.nn.BCEWithLogitsLoss(reduction="none")
        if getattr(soft_target_loss, "pos_weight", None) is not None:
            raise ValueError(
                "soft_target_loss must not weight positives (pos_weight): a weighted BCE is minimised at "
                "w*y/((w-1)*y+1), not at the soft target y; use plain BCEWithLogitsLoss(reduction='none')."
            )
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
        self.soft_target_loss = soft_target_loss
        self.image_label_key = image_label_key
        self.annotated_key = annotated_key
        self.geometry_key = geometry_key
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
        for key in (self.image_label_key, self.annotated_key):
            if key not in batchdata:
                raise KeyError(f"TeacherStudentTrainer: batch has no '{key}' (keys: {sorted(batchdata)}).")
        inputs, targets = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs)
        record = torch.as_tensor(batchdata[self.image_label_key]).to(inputs.device).float()
        annotated = torch.as_tensor(batchdata[self.annotated_key]).to(inputs.device).bool()
        try:
            hard_target, known = hard_target_maps(targets, record, annotated)
        except ValueError as error:
            raise ValueError(
                f"TeacherStudentTrainer: '{self.image_label_key}' and '{self.annotated_key}': {error}"
            ) from error
        engine.state.output = {Keys.IMAGE: inputs, Keys.LABEL: targets}

        engine.network.train()
        engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        with autocast_for(engine):
            self._compute_pred_loss(engine, inputs, hard_target, ~known, batchdata.get(self.geometry_key))
        backward_and_step(engine, engine.state.output[Keys.LOSS])
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output

    def _compute_pred_loss(
        self,
        engine: Engine,
        inputs: torch.Tensor,
        hard_target: torch.Tensor,
        soft: torch.Tensor,
        geometry: torch.Tensor | None,
    ) -> None:
        pred = engine.inferer(inputs, engine.network)
        engine.state.output[Keys.PRED] = pred
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        hard_loss = masked_map_mean(engine.loss_function(pred, hard_target), ~soft, "loss_function")
        items = soft.any(dim=1)
        item_geometry = None if geometry is None else torch.as_tensor(geometry)[items.cpu()]
        pseudo_loss, dp_teacher, dp_target = self._pseudo_label_loss(
            engine, inputs[items], pred[items], soft[items], item_geometry
        )
        engine.state.output[Keys.LOSS] = hard_loss + self.pseudo_label_weight * pseudo_loss
        engine.state.output["dp_mask"] = soft
        engine.state.output["dp_teacher"] = _scatter_items(dp_teacher, items)
        engine.state.output["dp_target"] = _scatter_items(dp_target, items)
        engine.fire_event(IterationEvents.LOSS_COMPLETED)

    def _pseudo_label_loss(
        self,
        engine: Engine,
        inputs: torch.Tensor,
        pred: torch.Tensor,
        soft: torch.Tensor,
        geometry: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The D_P term over the ``soft`` maps ``(N, K)``, the teacher's maps and the maps it pushes towards."""
        if self.sharpening == "mil":
            student_prob = torch.sigmoid(pred.detach().float())
            # max of the logits is the logit of the max probability, and keeps BCE numerically stable
            if geometry is None or len(pred) == 0:
                image_logits = pred.flatten(2).amax(dim=-1).float()
            else:
                image_logits = image_scores(pred, geometry).float()
            per_map = F.binary_cross_entropy_with_logits(image_logits, torch.ones_like(image_logits), reduction="none")
            return masked_map_mean(per_map, soft, "MIL loss"), student_prob, student_prob
        if len(pred) == 0:
            empty = pred.detach().float()
            return masked_map_mean(pred, soft, "soft_target_loss"), empty, empty
        with torch.no_grad():
            teacher_prob = torch.sigmoid(engine.inferer(inputs, self.teacher).float())
            dp_target = self.label_sharpening(teacher_prob)
        pseudo_loss = masked_map_mean(self.soft_target_loss(pred, dp_target), soft, "soft_target_loss")
        return pseudo_loss, teacher_prob, dp_target


def _scatter_items(values: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """``(N, K, *S)`` maps of the ``N`` selected items placed into zeros ``(B, K, *S)``; ``items`` is bool ``(B,)``."""
    full = values.new_zeros((len(items), *values.shape[1:]))
    full[items] = values
    return full
