import pytest

from cxrkd_monai.prepare.splits import SPLIT_NAMES, assign_splits, split_patients

PATIENTS = [f"p{i:03d}" for i in range(200)]
# Three images per patient, interleaved, as a dataset lists them.
ITEM_PATIENTS = [PATIENTS[i % 200] for i in range(600)]


def splits_of(items, assignment):
    by_patient = {}
    for patient, split in zip(items, assignment):
        by_patient.setdefault(patient, set()).add(split)
    return by_patient


def test_no_patient_crosses_splits_and_fractions_hold():
    assignment = assign_splits(ITEM_PATIENTS, fractions=(0.7, 0.2, 0.1), seed=3)
    by_patient = splits_of(ITEM_PATIENTS, assignment)
    assert all(len(s) == 1 for s in by_patient.values())
    counts = {name: sum(s == {name} for s in by_patient.values()) for name in SPLIT_NAMES}
    assert counts == {"training": 140, "validation": 40, "test": 20}


def test_seeded_reproducible_and_independent_of_item_order():
    first = split_patients(ITEM_PATIENTS, seed=7)
    assert first == split_patients(list(reversed(ITEM_PATIENTS)), seed=7)
    assert first != split_patients(ITEM_PATIENTS, seed=8)


def test_zero_fractions_leave_splits_empty():
    assert set(split_patients(PATIENTS, (0.5, 0.5, 0.0)).values()) == {"training", "validation"}
    assert set(split_patients(PATIENTS, (1.0, 0.0, 0.0)).values()) == {"training"}


def test_official_split_wins_and_a_leaking_patient_is_dropped_from_training():
    patients = ["a", "a", "b", "c", "d", "e", "f"]
    official = ["training", "test", "training", None, None, None, "validation"]
    assignment = assign_splits(patients, official, fractions=(0.5, 0.3, 0.2), seed=0)
    # Patient a is officially in test too: its training image is dropped (None), its test image kept.
    assert assignment[:3] == [None, "test", "training"]
    assert assignment[6] == "validation"
    # Every split is defined officially, so the others are split by the original fractions.
    assert set(assignment[3:6]) <= set(SPLIT_NAMES)


def test_partial_official_split_fills_only_the_missing_splits():
    official = ["validation" if p < "p050" else None for p in ITEM_PATIENTS]
    assignment = assign_splits(ITEM_PATIENTS, official, fractions=(0.8, 0.1, 0.1), seed=1)
    by_patient = splits_of(ITEM_PATIENTS, assignment)
    assert all(by_patient[p] == {"validation"} for p in PATIENTS[:50])
    rest = [next(iter(by_patient[p])) for p in PATIENTS[50:]]
    # 150 patients over training and test only, in the renormalised 8:1 ratio.
    assert rest.count("validation") == 0 and rest.count("training") == round(150 * 8 / 9)


def test_forced_patients_land_in_their_split():
    forced = {p: "training" for p in PATIENTS[:30]}
    assignment = assign_splits(ITEM_PATIENTS, fractions=(0.0, 0.5, 0.5), forced=forced)
    by_patient = splits_of(ITEM_PATIENTS, assignment)
    assert all(by_patient[p] == {"training"} for p in PATIENTS[:30])
    assert all(by_patient[p] != {"training"} for p in PATIENTS[30:])


def test_invalid_arguments_are_named():
    with pytest.raises(ValueError, match="fractions .* got \\(0.5, 0.5, 0.5\\)"):
        split_patients(PATIENTS, (0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="official split .train."):
        assign_splits(["a"], ["train"])
    with pytest.raises(ValueError, match="forced split 'holdout' for patient 'a'"):
        assign_splits(["a"], forced={"a": "holdout"})


def test_items_open_to_several_splits_and_a_shared_patient():
    # An official training file split further into training/validation, and an official test file.
    patients = ["a", "a", "b", "c", "d", "e"]
    official = [("training", "validation"), "test", ("training", "validation"), ("training", "validation"),
                ("training", "validation"), "test"]
    assignment = assign_splits(patients, official, fractions=(0.5, 0.5, 0.0), seed=0)
    assert assignment[:2] == [None, "test"] and assignment[5] == "test"
    # b, c and d are open to training and validation only: round(0.5 * 3) = 2 train, 1 validates.
    assert sorted(assignment[2:5]) == ["training", "training", "validation"]
