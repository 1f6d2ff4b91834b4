"""The optional subgroup fields of a datalist item (``sex``, ``age``, ``view``, ``body_part``) in one vocabulary.

Adapters write these fields where the source records them, so that an evaluation report can break its figures
down by them (:mod:`cxrkd_monai.report.subgroups`). The vocabulary:

- ``sex``: ``"F"``, ``"M"`` or ``"O"`` (other), the DICOM ``PatientSex`` codes;
- ``age``: age in years at the study, a number (an ``int`` when whole);
- ``view``: upper case; a DICOM ``ViewPosition`` (``"PA"``, ``"AP"``, ``"LL"``, ``"RL"``, ``"LATERAL"``, ...)
  where the source gives one, else the projection the source names (``"FRONTAL"``, ``"LATERAL"``,
  ``"OBLIQUE"``); several projections of one image are joined with ``+`` (``"FRONTAL+LATERAL"``);
- ``body_part``: lower case, as the source names it (``"hand"``, ``"leg+hip"``).

A value the source leaves blank or marks unknown is left out of the item, never written as an empty string.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from cxrkd_monai.data.datalist import SUBGROUP_KEYS

__all__ = ["SUBGROUP_KEYS", "age_in_years", "joined_names", "sex_code", "subgroup_fields", "view_code"]

"""The item keys of the subgroup fields, in the order they are written."""

_SEX_CODES = {"f": "F", "female": "F", "m": "M", "male": "M", "o": "O", "other": "O"}
_UNKNOWN = {"", "u", "unknown", "unk", "nan", "none", "null", "not recorded"}
_DICOM_AGE = re.compile(r"^(\d{1,3})\s*([DWMY])$", re.IGNORECASE)
_DAYS_PER_UNIT = {"D": 1.0, "W": 7.0, "M": 365.25 / 12, "Y": 365.25}


def sex_code(value: object) -> str | None:
    """``"F"``, ``"M"`` or ``"O"`` for a sex written as a code or word (any case); ``None`` when unknown/blank.

    Raises:
        ValueError: a value that is neither a known sex nor a way of saying unknown.
    """
    text = "" if value is None else str(value).strip().lower()
    if text in _UNKNOWN:
        return None
    if text not in _SEX_CODES:
        raise ValueError(f"sex {value!r} is not one of F/Female, M/Male, O/Other or Unknown/blank")
    return _SEX_CODES[text]


def age_in_years(value: object) -> int | float | None:
    """Age in years from a number (``"63"``, ``"63.5"``) or a DICOM age string (``"063Y"``, ``"006M"``,
    ``"003W"``, ``"010D"``); ``None`` when blank or unknown. Whole years are returned as ``int``; a DICOM age in
    days, weeks or months is converted to years (rounded to 0.01).

    Raises:
        ValueError: anything else, or a negative or non-finite age.
    """
    text = "" if value is None else str(value).strip()
    if text.lower() in _UNKNOWN:
        return None
    dicom = _DICOM_AGE.match(text)
    if dicom:
        years = int(dicom.group(1)) * _DAYS_PER_UNIT[dicom.group(2).upper()] / _DAYS_PER_UNIT["Y"]
        return int(dicom.group(1)) if dicom.group(2).upper() == "Y" else round(years, 2)
    try:
        years = float(text)
    except ValueError:
        raise ValueError(f"age {value!r} is neither a number of years nor a DICOM age such as '063Y'") from None
    if not math.isfinite(years) or years < 0:
        raise ValueError(f"age {value!r} is not a non-negative number of years")
    return int(years) if years.is_integer() else years


def view_code(value: object) -> str | None:
    """A view position or projection in upper case with single spaces (``"ap axial"`` -> ``"AP AXIAL"``);
    ``None`` when blank or unknown."""
    text = " ".join(("" if value is None else str(value)).split())
    return None if text.lower() in _UNKNOWN else text.upper()


def joined_names(names: Iterable[str]) -> str | None:
    """Several names of one image joined with ``+`` in the order given; ``None`` for none."""
    names = [name for name in names if name]
    return "+".join(names) if names else None


def subgroup_fields(
    sex: object = None, age: object = None, view: object = None, body_part: object = None
) -> dict[str, str | int | float]:
    """The subgroup fields of one item from raw source values, each normalised and left out when unknown.

    Example::

        subgroup_fields(sex="Female", age="63", view="ap")  # {"sex": "F", "age": 63, "view": "AP"}

    Raises:
        ValueError: a sex or age outside the vocabulary (see :func:`sex_code`, :func:`age_in_years`); callers
            add the file and row to the message.
    """
    part = " ".join(str(body_part).split()).lower() if body_part is not None else ""
    values = {
        "sex": sex_code(sex),
        "age": age_in_years(age),
        "view": view_code(view),
        "body_part": None if part in _UNKNOWN else part,
    }
    return {key: value for key, value in values.items() if value is not None}
