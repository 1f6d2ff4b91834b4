"""Resumable training checkpoints: atomic saving, the state a resumed run needs, and the best-model guard.

A bundle's training config gathers everything a run's future depends on in one ``save_dict`` (network,
optimiser, scheduler, trainer, AMP loss scale, EMA teacher, best-model bookkeeping, random generators),
writes it after every epoch with :class:`AtomicCheckpointSaver` and, with ``--resume True``, reads the
newest such file back with MONAI's :class:`~monai.handlers.CheckpointLoader` (:func:`find_last_checkpoint`).
A run that was not asked to resume refuses to start over an earlier run's files (:func:`refuse_to_overwrite`),
so a better model is never replaced silently.

Why the random generators matter: the per-epoch shuffling, the data augmentation and the network's own
sampling all draw from them, so a resumed run only repeats the interrupted one when they continue from
where they were.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.handlers import DiskSaver
from monai.engines import Workflow
from monai.handlers import CheckpointSaver
from monai.transforms import Randomizable, Transform

__all__ = [
    "AtomicCheckpointSaver",
    "BestMetricState",
    "GradScalerState",
    "RandomStates",
    "ReplacingDiskSaver",
    "find_last_checkpoint",
    "refuse_to_overwrite",
]


class ReplacingDiskSaver(DiskSaver):
    """Ignite disk saver that writes atomically and deletes superseded files only after the new file exists.

    Ignite's :class:`~ignite.handlers.Checkpoint` asks its save handler to remove the file it supersedes
    *before* it saves the new one. A process killed in between would leave no checkpoint at all (and, for a
    fixed file name such as ``model.pt``, no best model). Here removals are deferred: the new file is written
    to a temporary file and moved into place, then the superseded files are deleted (never the one just
    written, which matters when every save uses the same fixed ``filename``).

    Args:
        dirname: folder of the checkpoint files; created if missing.
        filename: a fixed file name used for every save instead of Ignite's generated one, or ``None``.
    """

    def __init__(self, dirname: str | Path, filename: str | None = None) -> None:
        super().__init__(dirname=dirname, atomic=True, require_empty=False)
        self.filename = filename
        self._superseded: list[str] = []

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        filename = self.filename or filename
        super().__call__(checkpoint, filename, metadata)
        for old in self._superseded:
            if old != filename and (self.dirname / old).exists():
                super().remove(old)
        self._superseded.clear()

    def remove(self, filename: str) -> None:
        self._superseded.append(self.filename or filename)


class AtomicCheckpointSaver(CheckpointSaver):
    """MONAI's :class:`~monai.handlers.CheckpointSaver` whose files are written atomically, never lost.

    Every file (key-metric, interval and final checkpoints) goes through a :class:`ReplacingDiskSaver`: it
    is serialised to a temporary file in ``save_dir`` and moved into place, and the file it supersedes is
    deleted only afterwards. A run killed while saving leaves the previous file intact. (MONAI builds its
    savers with ``atomic=False`` because older Ignite left atomic files readable by their owner only; Ignite
    0.5 restores group and other read permission after the move.)

    The saver is also checkpointable itself: :meth:`state_dict` / :meth:`load_state_dict` hold the key-metric
    tracking list (scores and file names of the best checkpoints kept), so that a resumed run compares new
    scores with the best one of the interrupted run instead of overwriting it with the next epoch's model.

    Args: as :class:`monai.handlers.CheckpointSaver`.

    Example::

        best_model = AtomicCheckpointSaver(
            save_dir="models", save_dict={"model": net}, save_key_metric=True, key_metric_filename="model.pt"
        )
        best_model.attach(evaluator)
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for checkpoint in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if checkpoint is not None:
                fixed_name = checkpoint.save_handler.filename
                checkpoint.save_handler = ReplacingDiskSaver(self.save_dir, filename=fixed_name)

    def state_dict(self) -> dict[str, list[tuple[float, str]]]:
        """The key-metric tracking list, ``{"_saved": [(score, filename), ...]}``, lowest score first.

        Raises:
            ValueError: the saver was built without ``save_key_metric``, so it tracks nothing.
        """
        if self._key_metric_checkpoint is None:
            raise ValueError("AtomicCheckpointSaver.state_dict: save_key_metric is False, no key metric is tracked.")
        saved = self._key_metric_checkpoint.state_dict()["_saved"]
        # plain floats keep the checkpoint loadable with torch.load(weights_only=True)
        return {"_saved": [(float(score), str(filename)) for score, filename in saved]}

    def adopt_interval_checkpoint(self, path: str | Path) -> None:
        """Track the end-of-epoch checkpoint ``path`` (``..._epoch=N.pt``) of an interrupted run as this saver's own.

        A resumed run's saver starts with an empty list of interval checkpoints; adopting the file the run
        resumed from lets ``n_saved`` count it, so it is deleted once newer checkpoints replace it.

        Raises:
            ValueError: the saver has no interval checkpoints, or ``path`` is not named ``..._epoch=N.pt``.
        """
        if self._interval_checkpoint is None:
            raise ValueError("AtomicCheckpointSaver.adopt_interval_checkpoint: save_interval is 0.")
        match = re.search(r"_(?:epoch|iteration)=(\d+)\.pt$", Path(path).name)
        if match is None:
            raise ValueError(f"adopt_interval_checkpoint: {path} is not named like an interval checkpoint.")
        self._interval_checkpoint.load_state_dict({"_saved": [(int(match.group(1)), Path(path).name)]})


class BestMetricState:
    """The best key-metric value and its epoch of a MONAI workflow (``state.best_metric``, ``best_metric_epoch``).

    An Ignite-checkpointable view, so that a resumed run's validator reports the best value of the whole
    run rather than of the resumed part.

    Args:
        workflow: a MONAI :class:`~monai.engines.Workflow`, usually the validation evaluator.
    """

    def __init__(self, workflow: Workflow) -> None:
        self.workflow = workflow

    def state_dict(self) -> dict[str, float | int]:
        return {
            "best_metric": float(self.workflow.state.best_metric),
            "best_metric_epoch": int(self.workflow.state.best_metric_epoch),
        }

    def load_state_dict(self, state_dict: Mapping[str, float | int]) -> None:
        self.workflow.state.best_metric = float(state_dict["best_metric"])
        self.workflow.state.best_metric_epoch = int(state_dict["best_metric_epoch"])


class GradScalerState:
    """The mixed-precision loss scale of a MONAI trainer (``trainer.scaler``), as a checkpointable object.

    MONAI creates the trainer's :class:`torch.amp.GradScaler` when the run starts, so this view looks it up at
    save and load time (both happen during the run). Without AMP there is no scaler and the state is empty.

    Args:
        trainer: a MONAI :class:`~monai.engines.Trainer`.
    """

    def __init__(self, trainer: Workflow) -> None:
        self.trainer = trainer

    def _scaler(self) -> torch.amp.GradScaler | None:
        scaler = getattr(self.trainer, "scaler", None)
        return scaler if scaler is not None and scaler.is_enabled() else None

    def state_dict(self) -> dict[str, Any]:
        scaler = self._scaler()
        return {} if scaler is None else scaler.state_dict()

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        scaler = self._scaler()
        if scaler is not None and state_dict:
            scaler.load_state_dict(dict(state_dict))


class RandomStates:
    """The random generators a training run draws from, as one Ignite-checkpointable object.

    :meth:`state_dict` captures the global generators of PyTorch (CPU, and every CUDA device when there is
    one), NumPy and Python's :mod:`random`, and the private :class:`numpy.random.RandomState` of every
    :class:`~monai.transforms.Randomizable` reachable from ``transforms`` (for instance the
    :class:`~monai.transforms.Compose` of a training dataset, including the generators nested inside
    dictionary transforms such as ``RandAffined``). :meth:`load_state_dict` puts them all back.

    With ``num_workers=0`` the data are augmented in this process, so restoring these states makes a resumed
    run draw exactly what the interrupted run would have drawn. With worker processes, each worker's
    transforms are reseeded from the (restored) PyTorch generator when the workers start; persistent workers
    then follow a different, equally random, augmentation stream than the interrupted run.

    Everything is stored as tensors, numbers and strings, so checkpoints load with
    ``torch.load(weights_only=True)``.

    Args:
        transforms: an object holding the run's random transforms (a transform, ``Compose`` or a list of
            them), or ``None`` for the global generators only.

    Example::

        states = RandomStates(train_dataset.transform)
        saved = states.state_dict()
        ...
        states.load_state_dict(saved)  # the same draws follow again
    """

    def __init__(self, transforms: Any = None) -> None:
        self.transforms = transforms

    def transform_generators(self) -> list[np.random.RandomState]:
        """The private generators of the random transforms in ``transforms``, in a fixed traversal order."""
        found: dict[int, np.random.RandomState] = {}
        _collect_generators(self.transforms, found, visited=set())
        return list(found.values())

    def state_dict(self) -> dict[str, Any]:
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
        version, internal_state, gauss_next = random.getstate()
        return {
            "torch": torch.get_rng_state(),
            "cuda": cuda,
            "numpy": _numpy_state(np.random.get_state()),
            "python": {"version": version, "state": torch.tensor(internal_state), "gauss_next": gauss_next},
            "transforms": [_numpy_state(generator.get_state()) for generator in self.transform_generators()],
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        generators = self.transform_generators()
        if len(generators) != len(state_dict["transforms"]):
            raise ValueError(
                f"RandomStates: the checkpoint holds {len(state_dict['transforms'])} transform generators but the "
                f"training transforms have {len(generators)}; the transform chain changed since it was saved."
            )
        # a map_location onto a GPU moves these tensors too; the setters want CPU byte tensors
        torch.set_rng_state(state_dict["torch"].cpu())
        if torch.cuda.is_available() and len(state_dict["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([state.cpu() for state in state_dict["cuda"]])
        np.random.set_state(_numpy_tuple(state_dict["numpy"]))
        python = state_dict["python"]
        random.setstate((python["version"], tuple(python["state"].tolist()), python["gauss_next"]))
        for generator, state in zip(generators, state_dict["transforms"]):
            generator.set_state(_numpy_tuple(state))


def _collect_generators(obj: Any, found: dict[int, np.random.RandomState], visited: set[int]) -> None:
    """Depth-first walk through transforms and their transform-valued attributes, collecting ``.R``."""
    if id(obj) in visited:
        return
    visited.add(id(obj))
    if isinstance(obj, (list, tuple)):
        for item in obj:
            _collect_generators(item, found, visited)
    elif isinstance(obj, Mapping):
        for item in obj.values():
            _collect_generators(item, found, visited)
    elif isinstance(obj, (Transform, Randomizable)):
        if isinstance(obj, Randomizable):
            found.setdefault(id(obj.R), obj.R)
        for value in vars(obj).values():
            if isinstance(value, (Transform, Randomizable, list, tuple, Mapping)):
                _collect_generators(value, found, visited)


def _numpy_state(state: tuple) -> dict[str, Any]:
    """A legacy NumPy MT19937 state tuple as tensors and numbers."""
    name, keys, position, has_gauss, cached_gaussian = state
    return {
        "name": str(name),
        "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "position": int(position),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached_gaussian),
    }


def _numpy_tuple(state: Mapping[str, Any]) -> tuple:
    """The inverse of :func:`_numpy_state`."""
    keys = state["keys"].cpu().numpy().astype(np.uint32)
    return (state["name"], keys, state["position"], state["has_gauss"], state["cached_gaussian"])


def _last_checkpoint_pattern(prefix: str) -> re.Pattern:
    """File names of :class:`AtomicCheckpointSaver` interval checkpoints, ``{prefix}_checkpoint_epoch=N.pt``."""
    return re.compile(rf"{re.escape(prefix)}_checkpoint_epoch=(\d+)\.pt")


def find_last_checkpoint(ckpt_dir: str | Path, prefix: str) -> Path:
    """The newest end-of-epoch checkpoint ``{prefix}_checkpoint_epoch=N.pt`` in ``ckpt_dir`` (largest ``N``).

    Raises:
        FileNotFoundError: there is none, so there is nothing to resume.
    """
    pattern = _last_checkpoint_pattern(prefix)
    epochs = {}
    for path in Path(ckpt_dir).glob(f"{prefix}_checkpoint_epoch=*.pt"):
        match = pattern.fullmatch(path.name)
        if match:
            epochs[int(match.group(1))] = path
    if not epochs:
        raise FileNotFoundError(
            f"resume: no checkpoint '{prefix}_checkpoint_epoch=N.pt' in {ckpt_dir}; there is no run to resume "
            "there (start without --resume True, or point --ckpt_dir at the interrupted run's folder)."
        )
    return epochs[max(epochs)]


def refuse_to_overwrite(ckpt_dir: str | Path, best_model_filename: str, prefix: str) -> None:
    """Refuse to start a fresh run in a ``ckpt_dir`` that holds an earlier run's best model or checkpoints.

    A fresh run would replace the best model after its first validation, whatever the score, and would mix
    its end-of-epoch checkpoints with the earlier run's. Called when ``resume`` is false.

    Args:
        ckpt_dir: the run's checkpoint folder.
        best_model_filename: the best-model file name of this training stage, e.g. ``"model.pt"``.
        prefix: the prefix of this stage's end-of-epoch checkpoints.

    Raises:
        FileExistsError: naming the files found and the ways forward.
    """
    ckpt_dir = Path(ckpt_dir)
    pattern = _last_checkpoint_pattern(prefix)
    earlier = [ckpt_dir / best_model_filename] if (ckpt_dir / best_model_filename).is_file() else []
    earlier += sorted(path for path in ckpt_dir.glob(f"{prefix}_checkpoint_*.pt") if pattern.fullmatch(path.name))
    if earlier:
        names = ", ".join(path.name for path in earlier)
        raise FileExistsError(
            f"{ckpt_dir} already holds an earlier training run ({names}); a new run would replace its best "
            "model. Continue that run with --resume True, or train into another --ckpt_dir (or move those "
            "files away) to start afresh."
        )
