import math

import pytest

from cxrkd_monai.errors import InvalidItemError
from cxrkd_monai.transforms import ValidateVKDItemd


def test_valid_item_passes_unchanged():
    item = {"image": "a.png", "label": [0, 1, 0], "report": "FINDINGS: clear."}
    assert ValidateVKDItemd(3)(item) is item


def test_wrong_label_length_names_file_and_key():
    with pytest.raises(InvalidItemError, match=r"a\.png: 'label' has 2 values, expected 3"):
        ValidateVKDItemd(3)({"image": "a.png", "label": [0, 1], "report": "x"})


def test_non_binary_label_rejected_unless_masked():
    with pytest.raises(InvalidItemError, match="0/1"):
        ValidateVKDItemd(2)({"image": "a.png", "label": [0, -1], "report": "x"})
    ValidateVKDItemd(2)({"image": "a.png", "label": [0, math.nan], "label_mask": [1, 0], "report": "x"})


@pytest.mark.parametrize("report", ["", "   ", None])
def test_empty_report_names_file(report):
    with pytest.raises(ValueError, match=r"b\.png: 'report' is missing or empty"):
        ValidateVKDItemd(1)({"image": "b.png", "label": [1], "report": report})


def test_report_not_required_without_text():
    ValidateVKDItemd(1, report_key=None)({"image": "b.png", "label": [1]})


def test_report_with_a_lone_surrogate_names_file_key_and_position():
    # json.loads('"No \\ud800 effusion"') gives such a string; hashing or tokenising it fails mid-epoch.
    report = "FINDINGS: No \ud800 effusion."
    with pytest.raises(InvalidItemError, match=r"c\.png: 'report': text cannot be encoded as UTF-8.*position 13"):
        ValidateVKDItemd(1)({"image": "c.png", "label": [1], "report": report})
    ValidateVKDItemd(1, report_key=None)({"image": "c.png", "label": [1], "report": report})
