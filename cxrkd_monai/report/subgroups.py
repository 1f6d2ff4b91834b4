"""Figures of merit per subgroup (sex, age band, view, body part) for the datalist fields a run's items carry.

A datalist item may carry ``sex``, ``age`` (years; reported in bands), ``view`` (``PA``, ``AP``, ``LL``...) and
``body_part``. A field enters the report when at least one evaluated item carries it; items without it form the
``(not recorded)`` group, so every table accounts for every image.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from cxrkd_monai.metrics.bootstrap import BootstrapInterval
from cxrkd_monai.report.resampling import NamedStatistic, PatientResampling

__all__ = ["AGE_BANDS", "SUBGROUP_FIELDS", "SubgroupRow", "SubgroupTable", "age_band", "subgroup_tables"]

SUBGROUP_FIELDS = {"sex": "Sex", "age": "Age band", "view": "View", "body_part": "Body part"}
"""Datalist keys that define subgroups, with their table titles."""
AGE_BANDS = ((0, 18, "0–17"), (18, 40, "18–39"), (40, 60, "40–59"), (60, 80, "60–79"), (80, math.inf, "80+"))
"""Age bands in years: ``[low, high)`` and the label."""
NOT_RECORDED = "(not recorded)"


def age_band(age: object) -> str:
    """The :data:`AGE_BANDS` label of an age in years (a number or numeric string); :data:`NOT_RECORDED` otherwise."""
    try:
        years = float(age)
    except (TypeError, ValueError):
        return NOT_RECORDED
    if not math.isfinite(years) or years < 0:
        return NOT_RECORDED
    return next(label for low, high, label in AGE_BANDS if low <= years < high)


def _group_value(item: Mapping, key: str) -> str:
    value = item.get(key)
    if key == "age":
        return age_band(value)
    return NOT_RECORDED if value is None or str(value).strip() == "" else str(value).strip()


def _group_order(key: str, values: set[str]) -> list[str]:
    known = [label for _, _, label in AGE_BANDS] if key == "age" else sorted(values - {NOT_RECORDED})
    return [v for v in known if v in values] + ([NOT_RECORDED] if NOT_RECORDED in values else [])


@dataclass
class SubgroupRow:
    """One subgroup: its size, the per-class estimates and the overall figure with its interval."""

    value: str
    num_images: int
    num_patients: int
    per_class: list[float]
    overall: BootstrapInterval


@dataclass
class SubgroupTable:
    """The rows of one subgroup field."""

    key: str
    title: str
    rows: list[SubgroupRow]


def subgroup_tables(
    items: Sequence[Mapping],
    statistic: NamedStatistic,
    class_names: Sequence[str],
    overall_name: str,
    resampling: PatientResampling,
) -> list[SubgroupTable]:
    """One table per :data:`SUBGROUP_FIELDS` key that some item carries.

    Args:
        items: the run's datalist items, ``(N,)`` in image order.
        statistic: named statistic of image indices holding each of ``class_names`` (per-class AUROC, given as point
            estimates) and ``overall_name`` (the macro or mean AUROC, given with its patient-level interval).
        class_names: the per-class names of ``statistic``.
        overall_name: the name of the headline value.
        resampling: the run's bootstrap settings; each subgroup is resampled over its own patients.
    """
    tables = []
    for key, title in SUBGROUP_FIELDS.items():
        if not any(key in item for item in items):
            continue
        values = np.array([_group_value(item, key) for item in items])
        rows = []
        for value in _group_order(key, set(values.tolist())):
            members = np.flatnonzero(values == value)
            subset = resampling.subset(values == value)
            estimates = statistic(members)
            overall = subset.intervals(lambda local, m=members: {overall_name: statistic(m[local])[overall_name]})
            rows.append(
                SubgroupRow(
                    value=value,
                    num_images=len(members),
                    num_patients=len(set(subset.patient_ids.tolist())),
                    per_class=[float(estimates[name]) for name in class_names],
                    overall=overall[overall_name],
                )
            )
        tables.append(SubgroupTable(key=key, title=title, rows=rows))
    return tables
