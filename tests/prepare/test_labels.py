import math

import pytest

from cxrkd_monai.prepare.labels import CHEXPERT_CLASSES, FRACTURE_CLASSES, LabelHarmoniser

CLASSES = ["Edema", "Fracture", "Cardiomegaly", "Pneumonia"]
ROW = {"Edema": "-1.0", "Fracture": "", "Cardiomegaly": "1.0", "Pneumonia": "0.0"}


def test_class_lists_match_the_design():
    assert len(CHEXPERT_CLASSES) == 14 and CHEXPERT_CLASSES[0] == "No Finding"
    assert CHEXPERT_CLASSES[-2:] == ("Fracture", "Support Devices")
    assert FRACTURE_CLASSES == ("rib_fracture", "clavicle_fracture")


@pytest.mark.parametrize(
    "uncertain, blank, label, mask",
    [
        ("zeros", "mask", [0, 0, 1, 0], [1, 0, 1, 1]),
        ("ones", "mask", [1, 0, 1, 0], [1, 0, 1, 1]),
        ("ignore", "mask", [0, 0, 1, 0], [0, 0, 1, 1]),
        ("zeros", "zeros", [0, 0, 1, 0], [1, 1, 1, 1]),
    ],
)
def test_uncertain_and_blank_policies(uncertain, blank, label, mask):
    assert LabelHarmoniser(CLASSES, uncertain, blank)(ROW) == (label, mask)


def test_defaults_follow_the_authors_blank_and_uncertain_are_zero():
    harmonise = LabelHarmoniser()
    assert harmonise.class_names == CHEXPERT_CLASSES
    label, mask = harmonise({"Edema": -1, "Fracture": 1.0, "No Finding": math.nan, "Pneumonia": None})
    edema, fracture, pneumonia = (CHEXPERT_CLASSES.index(c) for c in ("Edema", "Fracture", "Pneumonia"))
    assert (label[edema], mask[edema]) == (0.0, 1.0)
    assert (label[fracture], mask[fracture]) == (1.0, 1.0)
    assert (label[pneumonia], mask[pneumonia]) == (0.0, 1.0)
    assert sum(label) == 1 and sum(mask) == 4  # the 10 classes absent from the record stay masked


NO_FINDING_CASES = [
    # raw record, blank policy, uncertain policy -> (No Finding value, observed)
    ({"No Finding": "", "Edema": "", "Pneumonia": "", "Support Devices": ""}, "zeros", "zeros", (1.0, 1.0)),
    ({"No Finding": "", "Edema": "1", "Pneumonia": "", "Support Devices": ""}, "zeros", "zeros", (0.0, 1.0)),
    ({"No Finding": "", "Edema": "-1", "Pneumonia": "", "Support Devices": ""}, "zeros", "zeros", (1.0, 1.0)),
    ({"No Finding": "", "Edema": "-1", "Pneumonia": "", "Support Devices": ""}, "zeros", "ones", (0.0, 1.0)),
    ({"No Finding": "1", "Edema": "", "Pneumonia": "", "Support Devices": "1"}, "zeros", "zeros", (1.0, 1.0)),
    ({"No Finding": "1", "Edema": "1", "Pneumonia": "0", "Support Devices": ""}, "zeros", "zeros", (0.0, 1.0)),
    ({"No Finding": "1", "Edema": "", "Pneumonia": "", "Support Devices": ""}, "mask", "zeros", (1.0, 1.0)),
    ({"No Finding": "", "Edema": "0", "Pneumonia": "", "Support Devices": ""}, "mask", "zeros", (0.0, 0.0)),
    ({"No Finding": "", "Edema": "0", "Pneumonia": "1", "Support Devices": ""}, "mask", "zeros", (0.0, 1.0)),
    ({"No Finding": "", "Edema": "0", "Pneumonia": "0", "Support Devices": ""}, "mask", "zeros", (1.0, 1.0)),
]


@pytest.mark.parametrize("raw, blank, uncertain, expected", NO_FINDING_CASES)
def test_no_finding_is_derived_from_the_findings(raw, blank, uncertain, expected):
    classes = ["No Finding", "Edema", "Pneumonia", "Support Devices"]
    label, mask = LabelHarmoniser(classes, uncertain, blank, derive_no_finding=True)(raw)
    assert (label[0], mask[0]) == expected
    plain_label, plain_mask = LabelHarmoniser(classes, uncertain, blank)(raw)
    assert (label[1:], mask[1:]) == (plain_label[1:], plain_mask[1:])  # the findings themselves are unchanged


def test_without_derivation_no_finding_is_read_as_it_stands():
    # What the CheXpert labeler writes: "No Finding" 1 or blank, never 0. Read as is under "mask", every observed
    # value is positive; derived, it is 0 beside a positive finding.
    rows = [{"No Finding": "1", "Edema": ""}, {"No Finding": "", "Edema": "1"}, {"No Finding": "", "Edema": "0"}]
    as_read = [LabelHarmoniser(["No Finding", "Edema"], blank_policy="mask")(row) for row in rows]
    assert [label[0] for label, mask in as_read if mask[0]] == [1.0]
    derived = [LabelHarmoniser(["No Finding", "Edema"], blank_policy="mask", derive_no_finding=True)(r) for r in rows]
    assert [(label[0], mask[0]) for label, mask in derived] == [(1.0, 1.0), (0.0, 1.0), (1.0, 1.0)]


def test_a_class_the_dataset_lacks_is_masked_not_negative():
    label, mask = LabelHarmoniser(CLASSES, blank_policy="zeros")({"Edema": "1"})
    assert label == [1, 0, 0, 0] and mask == [1, 0, 0, 0]


def test_invalid_values_and_options_name_the_culprit():
    with pytest.raises(ValueError, match=r"'Pneumonia' has value '2'"):
        LabelHarmoniser(CLASSES)({"Pneumonia": "2"})
    with pytest.raises(ValueError, match=r"'Edema' has value 'yes'"):
        LabelHarmoniser(CLASSES)({"Edema": "yes"})
    with pytest.raises(ValueError, match="uncertain_policy .* 'half'"):
        LabelHarmoniser(CLASSES, uncertain_policy="half")
    with pytest.raises(ValueError, match="blank_policy .* 'ones'"):
        LabelHarmoniser(CLASSES, blank_policy="ones")
    with pytest.raises(ValueError, match="distinct"):
        LabelHarmoniser(["Edema", "Edema"])
