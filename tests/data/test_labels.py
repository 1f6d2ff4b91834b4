import math

import pytest

from cxrkd_monai.data.labels import CHEXPERT_CLASSES, FRACTURE_CLASSES, LabelHarmoniser

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


def test_defaults_follow_the_authors_and_mask_blanks():
    harmonise = LabelHarmoniser()
    assert harmonise.class_names == CHEXPERT_CLASSES
    label, mask = harmonise({"Edema": -1, "Fracture": 1.0, "No Finding": math.nan, "Pneumonia": None})
    edema, fracture = CHEXPERT_CLASSES.index("Edema"), CHEXPERT_CLASSES.index("Fracture")
    assert (label[edema], mask[edema]) == (0.0, 1.0)
    assert (label[fracture], mask[fracture]) == (1.0, 1.0)
    assert sum(mask) == 2


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
