"""Shared plumbing of the dataset adapters: skip accounting, view filtering, splitting and datalist writing.

An adapter only turns its dataset's files into :class:`Record` objects (one per image) and counts what it
leaves out with :meth:`PrepareSummary.skip`. :meth:`DatasetAdapter.prepare` then drops duplicate images and
missing image files (counted), splits per patient, writes the MONAI datalist with image paths relative to
it, and writes ``<name>.summary.json`` next to it: items written, skips counted per reason, label prevalence
per split. Nothing leaves the pipeline uncounted: every skip reason counts images, except
``study_without_images``, which counts studies (they have no image to count).
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import os
from abc import ABC, abstractmethod
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from cxrkd_monai.prepare.labels import CHEXPERT_CLASSES, FRACTURE_CLASSES, LabelHarmoniser
from cxrkd_monai.prepare.reports import EMPTY_REPORT_POLICIES
from cxrkd_monai.prepare.splits import SPLIT_NAMES, assign_splits
from cxrkd_monai.utils.fracture_subsets import FRACTURE_SUBSETS, RECORD_POSITIVE

__all__ = [
    "ClassificationAdapter",
    "DatasetAdapter",
    "DatasetFormatError",
    "PrepareSummary",
    "Record",
    "read_csv",
]

logger = logging.getLogger(__name__)

FRONTAL_VIEWS = ("PA", "AP")
LATERAL_VIEWS = ("LL", "RL", "LATERAL", "LAT")
MAX_SKIP_EXAMPLES = 5


class DatasetFormatError(ValueError):
    """A dataset file that is missing or lacks required columns/fields; the message names the file."""


@dataclass
class Record:
    """One image bound for the datalist.

    Attributes:
        item: the datalist item; ``image`` is an absolute path here, made relative to the datalist on writing.
        official_split: the dataset's own split for this image, if it has one: a split name, or the splits it
            may go to (an official training file split further into training and validation).
    """

    item: dict
    official_split: str | tuple[str, ...] | None = None


class PrepareSummary:
    """Counts of what an adapter left out, per reason, with a few examples of each."""

    def __init__(self) -> None:
        self.skipped: Counter[str] = Counter()
        self.examples: defaultdict[str, list[str]] = defaultdict(list)

    def skip(self, reason: str, what: str, count: int = 1) -> None:
        """Count ``count`` units (images, studies) left out for ``reason``; ``what`` names one of them."""
        self.skipped[reason] += count
        if len(self.examples[reason]) < MAX_SKIP_EXAMPLES:
            self.examples[reason].append(str(what))


def read_csv(path: Path, required_columns: Iterable[str]) -> list[dict[str, str]]:
    """Rows of a ``.csv`` or ``.csv.gz`` file; raises :class:`DatasetFormatError` naming the file and columns."""
    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(f"CSV file {str(path)!r} does not exist.")
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in required_columns if c not in (reader.fieldnames or [])]
        if missing:
            raise DatasetFormatError(f"CSV file {str(path)!r} lacks column(s) {missing} (has {reader.fieldnames}).")
        return list(reader)


def find_table(root: Path, name: str) -> Path:
    """``root/name`` or its gzipped copy ``root/name.gz``, as the datasets ship either."""
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise DatasetFormatError(f"Neither {str(root / name)!r} nor its .gz copy exists.")


def _parse_views(views: str | Sequence[str] | None) -> tuple[str, ...] | None:
    if views is None or (isinstance(views, str) and views.strip().lower() in ("", "all", "none")):
        return None
    names = views.split(",") if isinstance(views, str) else list(views)
    return tuple(str(v).strip().upper() for v in names if str(v).strip())


class DatasetAdapter(ABC):
    """Base of the adapters that turn a dataset on disk into a bundle datalist.

    Args:
        root: the dataset folder, laid out as the dataset ships.
        views: view positions kept (``("PA", "AP")`` by default); ``None`` or ``"all"`` keeps every view. A
            comma-separated string is accepted (``"PA,AP,LL"``).
        fractions: training, validation and test fractions of patients.
        seed: split seed.
        official_split: follow the dataset's own split where it has one (see :mod:`cxrkd_monai.prepare.splits`).
        check_images: count an item whose image file is missing as a skip; ``False`` writes it anyway (for
            preparing a datalist before the images are downloaded).
    """

    name: ClassVar[str]
    task: ClassVar[str]

    def __init__(
        self,
        root: str | Path,
        views: str | Sequence[str] | None = FRONTAL_VIEWS,
        fractions: Sequence[float] = (0.8, 0.1, 0.1),
        seed: int = 0,
        official_split: bool = False,
        check_images: bool = True,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetFormatError(f"Dataset root {str(self.root)!r} is not a folder.")
        self.views = _parse_views(views)
        self.fractions = tuple(float(f) for f in fractions)
        self.seed = int(seed)
        self.official_split = bool(official_split)
        self.check_images = bool(check_images)
        self.summary = PrepareSummary()

    @property
    def class_names(self) -> tuple[str, ...]:
        return FRACTURE_CLASSES

    @abstractmethod
    def records(self) -> Iterator[Record]:
        """Yield one :class:`Record` per image kept, calling ``self.summary.skip`` for everything left out."""

    def view_accepted(self, view: str) -> bool:
        """Whether a DICOM-style view position (``PA``, ``AP``, ``LL``, ...) passes the view filter."""
        return self.views is None or view.strip().upper() in self.views

    def projection_accepted(self, projection: str) -> bool:
        """Whether a ``Frontal``/``Lateral`` projection passes: frontal when PA or AP is wanted, and so on."""
        if self.views is None:
            return True
        wanted = {"FRONTAL": FRONTAL_VIEWS, "LATERAL": LATERAL_VIEWS}.get(projection.strip().upper(), ())
        return any(view in self.views for view in (*wanted, projection.strip().upper()))

    def datalist_header(self) -> dict:
        """The top-level entries written before the splits: ``class_names``, the order of the label vectors."""
        return {"class_names": list(self.class_names)}

    def options(self) -> dict:
        """The options that shaped the datalist, recorded in the summary."""
        return {
            "views": list(self.views) if self.views else None,
            "fractions": list(self.fractions),
            "seed": self.seed,
            "official_split": self.official_split,
            "check_images": self.check_images,
        }

    def prepare(self, out: str | Path) -> dict:
        """Write the datalist to ``out`` and its summary next to it; return the summary."""
        out = Path(out)
        self.summary = PrepareSummary()
        kept: list[Record] = []
        seen: set[str] = set()
        for record in self.records():
            image = str(record.item["image"])
            if image in seen:
                self.summary.skip("duplicate_image_id", image)
                continue
            seen.add(image)
            if self.check_images and not Path(image).is_file():
                self.summary.skip("image_file_missing", image)
                continue
            kept.append(record)

        # FROC needs regions for every fracture in validation and test, so patients with a record-positive
        # image without regions are trained on only.
        forced = {r.item["patient_id"]: "training" for r in kept if r.item.get("subset") == RECORD_POSITIVE}
        splits = assign_splits(
            [r.item["patient_id"] for r in kept],
            [r.official_split for r in kept] if self.official_split else None,
            self.fractions,
            self.seed,
            forced,
        )
        datalist: dict = {**self.datalist_header(), **{name: [] for name in SPLIT_NAMES}}
        for record, split in zip(kept, splits):
            if split is None:
                self.summary.skip("patient_in_other_official_split", record.item["image"])
                continue
            item = dict(record.item)
            item["image"] = os.path.relpath(item["image"], out.resolve().parent)
            datalist[split].append(item)

        summary = self._summarise(datalist, out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w") as handle:
            json.dump(datalist, handle, indent=1)
        with open(summary_path(out), "w") as handle:
            json.dump(summary, handle, indent=1)
        logger.info(
            "%s: wrote %d items to %s (%s); skipped %s",
            self.name,
            summary["items_written"],
            out,
            summary["items_per_split"],
            summary["skipped"] or "nothing",
        )
        return summary

    def _summarise(self, datalist: dict, out: Path) -> dict:
        prevalence, subsets = {}, {}
        for split in SPLIT_NAMES:
            items = datalist[split]
            label_key = "image_label" if self.task == "fracture" else "label"
            per_class = {}
            for index, name in enumerate(self.class_names):
                labelled = [it for it in items if it.get("label_mask", [1.0] * len(self.class_names))[index]]
                positive = sum(1 for it in labelled if it[label_key][index] >= 0.5)
                per_class[name] = {
                    "positive": positive,
                    "labelled": len(labelled),
                    "prevalence": positive / len(labelled) if labelled else None,
                }
            prevalence[split] = per_class
            if self.task == "fracture":
                subsets[split] = {s: sum(1 for it in items if it["subset"] == s) for s in FRACTURE_SUBSETS}
        summary = {
            "dataset": self.name,
            "task": self.task,
            "datalist": str(out),
            "items_written": sum(len(datalist[s]) for s in SPLIT_NAMES),
            "items_per_split": {s: len(datalist[s]) for s in SPLIT_NAMES},
            "patients_per_split": {s: len({it["patient_id"] for it in datalist[s]}) for s in SPLIT_NAMES},
            "skipped": dict(sorted(self.summary.skipped.items())),
            "skip_examples": dict(sorted(self.summary.examples.items())),
            "label_prevalence": prevalence,
            "options": self.options(),
        }
        if self.task == "fracture":
            summary["subsets"] = subsets
        return summary


class ClassificationAdapter(DatasetAdapter):
    """An adapter that writes VKD items (``image``, ``report``, ``label``, ``label_mask``, ``patient_id``).

    The datalist records ``"blank_policy"`` next to ``"class_names"``. The bundles honour ``label_mask`` in the
    loss and in every metric, so this one policy governs training and evaluation alike.

    Args:
        class_names: the bundle's class list (default the 14 CheXpert labels).
        uncertain_policy, blank_policy: see :mod:`cxrkd_monai.prepare.labels`; ``blank_policy=None`` takes the
            adapter's :attr:`default_blank_policy`.
        empty_report: ``"skip"`` (default) or ``"keep"``, see :mod:`cxrkd_monai.prepare.reports`.
        **kwargs: the :class:`DatasetAdapter` options.
    """

    task = "classification"
    default_blank_policy: ClassVar[str] = "zeros"
    """What a blank label means in this dataset when the user does not say."""
    derives_no_finding: ClassVar[bool] = False
    """Whether "No Finding" is derived from the other classes (datasets labelled by the CheXpert labeler)."""

    def __init__(
        self,
        root: str | Path,
        class_names: Sequence[str] = CHEXPERT_CLASSES,
        uncertain_policy: str = "zeros",
        blank_policy: str | None = None,
        empty_report: str = "skip",
        **kwargs,
    ) -> None:
        super().__init__(root, **kwargs)
        if empty_report not in EMPTY_REPORT_POLICIES:
            raise ValueError(f"empty_report must be one of {EMPTY_REPORT_POLICIES}, got {empty_report!r}.")
        self.harmoniser = LabelHarmoniser(
            class_names,
            uncertain_policy,
            self.default_blank_policy if blank_policy is None else blank_policy,
            derive_no_finding=self.derives_no_finding,
        )
        self.empty_report = empty_report

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.harmoniser.class_names

    def datalist_header(self) -> dict:
        return {**super().datalist_header(), "blank_policy": self.harmoniser.blank_policy}

    def options(self) -> dict:
        return {
            **super().options(),
            "uncertain_policy": self.harmoniser.uncertain_policy,
            "blank_policy": self.harmoniser.blank_policy,
            "no_finding_derived": self.harmoniser.derive_no_finding,
            "empty_report": self.empty_report,
        }

    def report_kept(self, report: str, what: str, images: int = 1, reason: str = "report_empty") -> bool:
        """Apply the empty-report policy: ``False`` (and ``images`` counted skips) for an empty report under
        ``"skip"``."""
        if report or self.empty_report == "keep":
            return True
        self.summary.skip(reason, what, images)
        return False


def summary_path(datalist_path: str | Path) -> Path:
    """Where the summary of a datalist is written: ``<name>.summary.json`` next to it."""
    datalist_path = Path(datalist_path)
    return datalist_path.with_name(f"{datalist_path.stem}.summary.json")
