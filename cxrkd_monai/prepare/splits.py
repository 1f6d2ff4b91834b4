"""Per-patient, seeded, reproducible training/validation/test splits.

Splits are always made over patients, never over images, so no patient's images appear in two splits (the
VKD authors' per-image split leaked patients across splits). The assignment depends only on the set of patient
ids, the fractions and the seed, not on item order.

Official splits (MIMIC-CXR's split CSV, CheXpert's ``valid.csv``, VinDr-CXR's and ChestX-Det10's test files)
are honoured when given:

- a patient with items officially in one split goes to the split of highest evaluation priority among them
  (test, then validation, then training); that patient's items officially elsewhere are dropped, and
  reported so the caller can count them (the official evaluation sets stay intact and leak-free);
- an item may be officially open to several splits (an official training file split further into training
  and validation); the other patients are split by ``fractions`` over the splits open to them (renormalised);
  an item with no official split is open to the splits the release does not define, or to all three when it
  defines all of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["SPLIT_NAMES", "assign_splits", "split_patients"]

SPLIT_NAMES = ("training", "validation", "test")
_PRIORITY = ("test", "validation", "training")


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise ValueError(
            f"fractions must be three non-negative numbers (training, validation, test) summing to 1, "
            f"got {tuple(fractions)}."
        )
    return float(fractions[0]), float(fractions[1]), float(fractions[2])


def split_patients(
    patient_ids: Sequence[str], fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> dict[str, str]:
    """Assign each distinct patient id to ``training``, ``validation`` or ``test``.

    The sorted ids are shuffled with ``numpy.random.default_rng(seed)``; the first ``round(f_train * n)`` go to
    training, the next ``round(f_val * n)`` to validation and the rest to test.

    Example::

        split_patients(["p1", "p2", "p3", "p1"], fractions=(0.5, 0.5, 0.0), seed=1)
        # {'p1': ..., 'p2': ..., 'p3': ...}
    """
    fractions = _check_fractions(fractions)
    patients = sorted(set(patient_ids))
    order = np.random.default_rng(seed).permutation(len(patients))
    n_training = int(round(fractions[0] * len(patients)))
    n_validation = min(int(round(fractions[1] * len(patients))), len(patients) - n_training)
    if fractions[2] == 0.0:
        n_validation = len(patients) - n_training
    assignment = {}
    for rank, index in enumerate(order):
        split = "training" if rank < n_training else "validation" if rank < n_training + n_validation else "test"
        assignment[patients[index]] = split
    return assignment


def assign_splits(
    patient_ids: Sequence[str],
    official: Sequence[str | Sequence[str] | None] | None = None,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    forced: Mapping[str, str] | None = None,
) -> list[str | None]:
    """Split items by patient, honouring official splits and forced patient placements.

    Args:
        patient_ids: one patient id per item.
        official: per item, its official split name, a sequence of the splits it may go to (e.g. an official
            training file that is split further into ``("training", "validation")``), or ``None`` for the
            splits the release does not define (all three when it defines all of them).
        fractions: training, validation and test fractions of the patients without a definite official split,
            renormalised over the splits open to them.
        seed: shuffle seed.
        forced: patient id -> split for patients that must land in a given split (e.g. fracture patients
            without regions, which cannot be evaluated by FROC, go to training); official splits take
            precedence.

    Returns:
        one split name per item, or ``None`` for an item dropped because its patient is officially in a split
        the item may not go to.
    """
    fractions = _check_fractions(fractions)
    official = list(official) if official is not None else [None] * len(patient_ids)
    if len(official) != len(patient_ids):
        raise ValueError(f"official has {len(official)} entries for {len(patient_ids)} patient_ids.")
    allowed = [_allowed(entry) for entry in official]
    forced = dict(forced or {})
    for patient, split in forced.items():
        if split not in SPLIT_NAMES:
            raise ValueError(f"forced split {split!r} for patient {patient!r} is not one of {SPLIT_NAMES}.")

    definite = {next(iter(a)) for a in allowed if a is not None and len(a) == 1}
    open_splits = frozenset(SPLIT_NAMES) - definite or frozenset(SPLIT_NAMES)
    allowed = [a if a is not None else open_splits for a in allowed]

    patient_split: dict[str, str] = {}
    open_to: dict[str, frozenset[str]] = {}
    for patient, splits in zip(patient_ids, allowed):
        if len(splits) == 1:
            split = next(iter(splits))
            current = patient_split.get(patient)
            if current is None or _PRIORITY.index(split) < _PRIORITY.index(current):
                patient_split[patient] = split
        else:
            open_to[patient] = open_to.get(patient, splits) & splits
    patient_split.update({p: s for p, s in forced.items() if p not in patient_split})

    groups: dict[frozenset[str], list[str]] = {}
    for patient, splits in open_to.items():
        if patient not in patient_split:
            groups.setdefault(splits, []).append(patient)
    for splits, patients in groups.items():
        pool_fractions = [f if name in splits else 0.0 for name, f in zip(SPLIT_NAMES, fractions)]
        if sum(pool_fractions) == 0:
            pool_fractions = [1.0 / len(splits) if name in splits else 0.0 for name in SPLIT_NAMES]
        pool_fractions = [f / sum(pool_fractions) for f in pool_fractions]
        patient_split.update(split_patients(patients, pool_fractions, seed))

    return [
        patient_split[patient] if patient_split[patient] in splits else None
        for patient, splits in zip(patient_ids, allowed)
    ]


def _allowed(entry: str | Sequence[str] | None) -> frozenset[str] | None:
    if entry is None:
        return None
    splits = frozenset([entry] if isinstance(entry, str) else entry)
    unknown = sorted(splits - set(SPLIT_NAMES))
    if not splits or unknown:
        raise ValueError(f"official split {entry!r} is not one of {SPLIT_NAMES} (or a sequence of them).")
    return splits
