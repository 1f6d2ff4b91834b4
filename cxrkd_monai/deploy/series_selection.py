"""Which series of a DICOM study a chest radiograph bundle reads, with the attributes as PACS store them.

Each series is judged on its first instance's attributes (a pydicom ``Dataset`` or any mapping from DICOM keyword
to value). Required, or the series is not selected:

- ``Modality`` CR or DX;
- not raw detector data: neither ``PresentationIntentType`` ``FOR PROCESSING`` nor the Digital X-Ray Image
  Storage - For Processing SOP class (a DX series ``FOR PRESENTATION``, or without the attribute, qualifies);
- not a lateral view (``ViewPosition`` LL, RL, LAT or LATERAL): both bundles read frontal radiographs.

Preferred, each one breaking the ties the ones before it leave:

1. ``BodyPartExamined`` that names the chest, CHEST or THORAX anywhere in the value in any case (``PORT CHEST``,
   ``THORAX PA``, ``chest``), over no ``BodyPartExamined``, over another body part: the attribute is optional and
   free-worded, so it never rules a series out;
2. a frontal view (``ViewPosition`` PA or AP), over no ``ViewPosition``, over another view (oblique, decubitus);
3. ``ImageType`` ORIGINAL\\PRIMARY, over no ``ImageType``, over a derived or secondary image;
4. the lowest ``SeriesNumber`` (none last), then ``SeriesInstanceUID``, so the choice does not depend on the order in
   which the files were read.

Messages name a series by its position, ``SeriesNumber`` and ``SeriesDescription``, never by a DICOM UID. Importing
this module does not need the MONAI Deploy App SDK.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from pydicom import Dataset

if TYPE_CHECKING:
    from monai.deploy.core.domain.dicom_series_selection import StudySelectedSeries

__all__ = [
    "CHEST_RADIOGRAPH_RULES",
    "DX_FOR_PROCESSING_STORAGE",
    "ChestRadiographRules",
    "NoMatchingSeriesError",
    "Preference",
    "SeriesAssessment",
    "first_selected_series",
    "no_matching_series_message",
    "selection_messages",
]

SeriesAttributes = Dataset | Mapping[str, Any]
"""The attributes of a series' first instance, by DICOM keyword."""

DX_FOR_PROCESSING_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1.1"
"""SOP Class UID of Digital X-Ray Image Storage - For Processing."""


class NoMatchingSeriesError(ValueError):
    """The input holds no series that the selection rules accept."""


class Preference(IntEnum):
    """How well one attribute of a series meets a preference; lower ranks first."""

    MET = 0
    ABSENT = 1
    NOT_MET = 2


@dataclass(frozen=True)
class SeriesAssessment:
    """How one series of a study fares under :class:`ChestRadiographRules`.

    Attributes:
        index: position of the series in the sequence that was ranked.
        label: ``series <position> of <count> (SeriesNumber <n>, '<SeriesDescription>')``, without DICOM UIDs.
        rejections: why the series cannot be selected; empty when it can.
        notes: what each preference found, in the order they rank.
        rank_key: the sort key among the selectable series, lower first (holds the SeriesInstanceUID, so it is left
            out of the representation).
    """

    index: int
    label: str
    rejections: tuple[str, ...]
    notes: tuple[str, ...]
    rank_key: tuple = field(repr=False)

    @property
    def selectable(self) -> bool:
        """Whether the series meets every requirement."""
        return not self.rejections


@dataclass(frozen=True)
class ChestRadiographRules:
    """The requirements and preferences of the module docstring, with the values they match.

    Args:
        modalities: accepted ``Modality`` values.
        chest_body_parts: words that, found anywhere in ``BodyPartExamined`` in any case, name the chest.
        frontal_views: ``ViewPosition`` words of a frontal view.
        lateral_views: ``ViewPosition`` words of a lateral view, which is not selected.

    Example::

        ranking = CHEST_RADIOGRAPH_RULES.rank([lateral_dataset, pa_dataset])
        ranking[0].index, ranking[0].selectable   # (1, True): the PA series
    """

    modalities: tuple[str, ...] = ("CR", "DX")
    chest_body_parts: tuple[str, ...] = ("CHEST", "THORAX")
    frontal_views: tuple[str, ...] = ("PA", "AP")
    lateral_views: tuple[str, ...] = ("LL", "RL", "LAT", "LATERAL")

    def assess(self, attributes: SeriesAttributes, index: int = 0, count: int = 1) -> SeriesAssessment:
        """The assessment of one series from its first instance's ``attributes``, the ``index``-th of ``count``."""
        modality = _text(attributes.get("Modality"))
        body_part = _text(attributes.get("BodyPartExamined"))
        view = _text(attributes.get("ViewPosition"))
        view_words = set(re.findall(r"[A-Z]+", view.upper()))
        image_type = _values(attributes.get("ImageType"))
        intent = _text(attributes.get("PresentationIntentType")).upper()

        rejections = []
        if modality.upper() not in self.modalities:
            found = f"Modality {modality!r}" if modality else "no Modality"
            rejections.append(f"{found}, not {' or '.join(self.modalities)}")
        if intent == "FOR PROCESSING":
            rejections.append("PresentationIntentType 'FOR PROCESSING' (raw detector data)")
        elif _text(attributes.get("SOPClassUID")) == DX_FOR_PROCESSING_STORAGE:
            rejections.append("SOP class Digital X-Ray Image Storage - For Processing (raw detector data)")
        if view_words & set(self.lateral_views):
            rejections.append(f"lateral view (ViewPosition {view!r}), not frontal")

        if not body_part:
            body_preference, body_note = Preference.ABSENT, "no BodyPartExamined"
        elif any(word in body_part.upper() for word in self.chest_body_parts):
            body_preference, body_note = Preference.MET, f"BodyPartExamined {body_part!r} names the chest"
        else:
            body_preference, body_note = Preference.NOT_MET, f"BodyPartExamined {body_part!r} is not the chest"
        if not view:
            view_preference, view_note = Preference.ABSENT, "no ViewPosition"
        elif view_words & set(self.frontal_views):
            view_preference, view_note = Preference.MET, f"frontal view (ViewPosition {view!r})"
        else:
            view_preference, view_note = Preference.NOT_MET, f"ViewPosition {view!r} is not frontal"
        shown_type = "\\".join(image_type)
        if not image_type:
            type_preference, type_note = Preference.ABSENT, "no ImageType"
        elif [value.upper() for value in image_type[:2]] == ["ORIGINAL", "PRIMARY"]:
            type_preference, type_note = Preference.MET, f"ImageType {shown_type} (original primary)"
        else:
            type_preference, type_note = Preference.NOT_MET, f"ImageType {shown_type} (not original primary)"

        number = _integer(attributes.get("SeriesNumber"))
        description = _text(attributes.get("SeriesDescription"))
        names = [f"SeriesNumber {number}" if number is not None else "no SeriesNumber"]
        if description:
            names.append(repr(description))
        return SeriesAssessment(
            index=index,
            label=f"series {index + 1} of {count} ({', '.join(names)})",
            rejections=tuple(rejections),
            notes=(body_note, view_note, type_note),
            rank_key=(
                body_preference,
                view_preference,
                type_preference,
                number is None,
                number or 0,
                _text(attributes.get("SeriesInstanceUID")),
            ),
        )

    def rank(self, series: Sequence[SeriesAttributes]) -> list[SeriesAssessment]:
        """Every series' assessment: the selectable ones best first, then the others in their input order.

        Args:
            series: the first instance's attributes of each series of one study.
        """
        assessments = [self.assess(attributes, index, len(series)) for index, attributes in enumerate(series)]
        selectable = sorted((a for a in assessments if a.selectable), key=lambda a: a.rank_key)
        return selectable + [a for a in assessments if not a.selectable]


CHEST_RADIOGRAPH_RULES = ChestRadiographRules()
"""The default rules: CR or DX, not for processing, not lateral; chest, frontal, original primary preferred."""


def selection_messages(ranking: Sequence[SeriesAssessment]) -> list[str]:
    """One line per series of a :meth:`ChestRadiographRules.rank` result: selected, ranked lower, or why not.

    Example lines::

        series 2 of 2 (SeriesNumber 1, 'CHEST PA'): selected, ranked 1 of 1 selectable: no BodyPartExamined; ...
        series 1 of 2 (SeriesNumber 2, 'CHEST LAT'): not selectable: lateral view (ViewPosition 'LL'); ...
    """
    selectable = [assessment for assessment in ranking if assessment.selectable]
    lines = []
    for position, assessment in enumerate(selectable):
        verdict = "selected" if position == 0 else "not selected"
        lines.append(
            f"{assessment.label}: {verdict}, ranked {position + 1} of {len(selectable)} selectable: "
            + "; ".join(assessment.notes)
        )
    for assessment in ranking[len(selectable) :]:
        lines.append(f"{assessment.label}: not selectable: " + "; ".join(assessment.rejections))
    return lines


def no_matching_series_message(assessments: Sequence[SeriesAssessment]) -> str:
    """The :class:`NoMatchingSeriesError` message for series none of which is selectable, one line per series."""
    found = "".join(f"\n  {a.label}: {'; '.join(a.rejections)}" for a in assessments) or " no series"
    return f"No matching series: the bundles read a frontal CR or DX radiograph for presentation; found:{found}"


def first_selected_series(study_selected_series: Sequence[StudySelectedSeries]):
    """The first selected ``DICOMSeries`` of a series selector's output.

    Raises:
        NoMatchingSeriesError: nothing was selected.
    """
    for study in study_selected_series or []:
        for selected in study.selected_series:
            return selected.series
    raise NoMatchingSeriesError("No matching series: the series selector selected nothing.")


def _text(value: Any) -> str:
    """A single-valued attribute as stripped text, ``""`` when absent or empty."""
    return "" if value is None else str(value).strip()


def _values(value: Any) -> list[str]:
    """A multi-valued attribute (``["ORIGINAL", "PRIMARY"]``, ``"ORIGINAL\\PRIMARY"``) as its stripped values."""
    if value is None:
        return []
    items = value.split("\\") if isinstance(value, str) else list(value)
    return [text for text in (str(item).strip() for item in items) if text]


def _integer(value: Any) -> int | None:
    """An IS attribute such as ``SeriesNumber`` as an integer, ``None`` when absent or not a number."""
    try:
        return int(str(value).strip())
    except ValueError:
        return None
