import csv
import math
from pathlib import Path

import pytest

from cxrkd_monai.errors import InvalidItemError
from cxrkd_monai.prepare.reports import clean_report, extract_findings_impression, report_from_sections, split_sections

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
IU_REPORTS = SHARED_DATA / "iu_xray_reports_text" / "indiana_reports.csv"

MIMIC_REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with new onset ascites  // eval for infection

 TECHNIQUE:  Chest PA and lateral

 COMPARISON:  None.

 FINDINGS:

 There is no focal consolidation, pleural effusion or pneumothorax.  Bilateral
 nodular opacities that most likely represent nipple shadows.

 IMPRESSION:

 No acute cardiopulmonary process.
"""


def test_mimic_report_keeps_findings_and_impression_only():
    assert extract_findings_impression(MIMIC_REPORT) == (
        "FINDINGS: There is no focal consolidation, pleural effusion or pneumothorax. Bilateral nodular "
        "opacities that most likely represent nipple shadows. IMPRESSION: No acute cardiopulmonary process."
    )


@pytest.mark.parametrize(
    "text",
    [
        "findings : Lungs are clear.\nimpression: Normal chest.",
        "Findings:Lungs are clear.\n  Impression :   Normal chest.",
        "INDICATION: cough. FINDINGS: Lungs are clear. IMPRESSION: Normal chest.",
        "FINDINGS:\n\n   Lungs   are\n clear.\n\nCONCLUSION:\nNormal chest.",
    ],
)
def test_header_case_spacing_and_inline_variants(text):
    assert extract_findings_impression(text) == "FINDINGS: Lungs are clear. IMPRESSION: Normal chest."


def test_impression_only_and_free_text_fallback():
    assert extract_findings_impression("HISTORY: fall.\nIMPRESSION: Left rib fracture.") == (
        "IMPRESSION: Left rib fracture."
    )
    free_text = "FINAL REPORT\nINDICATION: ___ dyspnea.\nPA and lateral views show a small left effusion."
    # No FINDINGS/IMPRESSION: administrative sections and the banner are dropped, the body is kept.
    assert extract_findings_impression(free_text) == ""
    assert extract_findings_impression("FINAL REPORT\nSmall left effusion, XXXX otherwise clear.") == (
        "Small left effusion, otherwise clear."
    )


def test_sentence_headers_in_lower_case_mid_line_are_not_sections():
    sections = split_sections("FINDINGS: Heart size: normal. Note: no effusion.")
    assert sections == [("findings", " Heart size: normal. Note: no effusion.")]


def test_placeholders_and_whitespace():
    assert clean_report("___F with\n\n cough ,  XXXX XXXX  seen.\tNormal chest x-XXXX.") == (
        "F with cough, seen. Normal chest x-."
    )
    # Real words with X are untouched; runs of four or more capital X and a stand-alone XXX are placeholders.
    assert clean_report("XR chest, Xray AP, BOX XXXXX. Seen at XXXXPM, XXX.") == "XR chest, Xray AP, BOX. Seen at PM,."


@pytest.mark.parametrize("empty", [None, math.nan, "", "   \n ", "XXXX", "___"])
def test_empty_or_missing_reports_give_empty_text(empty):
    assert extract_findings_impression(empty) == ""
    assert report_from_sections(empty, empty) == ""


def test_report_from_sections_leaves_out_empty_sections():
    assert report_from_sections("", "No acute disease.") == "IMPRESSION: No acute disease."
    assert report_from_sections("Clear lungs.", None) == "FINDINGS: Clear lungs."


def test_real_iu_reports_are_cleaned_of_every_placeholder():
    if not IU_REPORTS.is_file():
        pytest.skip(f"IU report CSV not found at {IU_REPORTS}")
    with open(IU_REPORTS, newline="") as handle:
        rows = list(csv.DictReader(handle))
    texts = [report_from_sections(row["findings"], row["impression"]) for row in rows]
    with_placeholders = sum("XXXX" in row["findings"] + row["impression"] for row in rows)
    assert with_placeholders > 1000
    assert not any("XXXX" in text or "  " in text for text in texts)
    both_empty = sum(not row["findings"].strip() and not row["impression"].strip() for row in rows)
    assert sum(text == "" for text in texts) >= both_empty == 25


def test_lone_surrogates_become_the_replacement_character_so_the_output_is_utf8():
    report = extract_findings_impression("FINDINGS: No \ud800 effusion.\nIMPRESSION: Normal\udcff.")
    assert report == "FINDINGS: No \ufffd effusion. IMPRESSION: Normal\ufffd."
    report.encode("utf-8")
    assert clean_report("a\udc80b") == "a\ufffdb"


@pytest.mark.parametrize("value", [3, b"FINDINGS: bytes", ["FINDINGS: x"]])
def test_report_that_is_not_text_is_an_invalid_item(value):
    with pytest.raises(InvalidItemError, match="Report text must be a string"):
        extract_findings_impression(value)
    with pytest.raises(InvalidItemError, match="Report text must be a string"):
        report_from_sections(value, None)
