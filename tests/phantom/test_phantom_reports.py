"""write_report: every positive class stated, negatives denied or left out, subtle findings hedged."""

from __future__ import annotations

import re

import numpy as np

from cxrkd_monai.phantom import (
    FINDING_KINDS,
    VKD_CLASS_NAMES,
    sample_anatomy,
    sample_findings,
    write_report,
)
from cxrkd_monai.prepare.reports import extract_findings_impression
from tests.phantom.conftest import load

# Keyword rules a reader would use to label a report, one per VKD class.
CLASS_KEYWORDS = {
    "Cardiomegaly": r"cardiomegaly|cardiac silhouette|\bheart\b",
    "Pleural Effusion": r"effusion|costophrenic",
    "Lung Opacity": r"opacit|consolidation|airspace",
    "Lung Lesion": r"nodul|\bmass",
    "Pneumothorax": r"pneumothora",
    "Fracture": r"fracture",
}
NEGATION = re.compile(r"\b(no|not|without|normal|unremarkable|intact|clear|sharp)\b", re.IGNORECASE)
HEDGE = re.compile(r"possible|possibly|cannot be excluded|likely|questionable|may represent", re.IGNORECASE)
KIND_KEYWORDS = {
    "cardiomegaly": CLASS_KEYWORDS["Cardiomegaly"],
    "pleural_effusion": CLASS_KEYWORDS["Pleural Effusion"],
    "lung_opacity": CLASS_KEYWORDS["Lung Opacity"],
    "nodule": CLASS_KEYWORDS["Lung Lesion"],
    "pneumothorax": CLASS_KEYWORDS["Pneumothorax"],
    "rib_fracture": r"\bribs?\b.*fracture|fracture.*\bribs?\b",
    "clavicle_fracture": r"clavicle",
}


def sentences(report: str) -> list[str]:
    return [s.strip() for s in re.split(r"\.\s", report.replace("FINDINGS:", "").replace("IMPRESSION:", ". "))]


def stated(report: str, pattern: str) -> bool:
    """The report affirms (or hedges) something matching ``pattern``."""
    return any(re.search(pattern, s, re.IGNORECASE) and not NEGATION.search(s) for s in sentences(report))


def denied_or_silent(report: str, pattern: str) -> bool:
    """Every sentence matching ``pattern`` is negated."""
    return all(NEGATION.search(s) for s in sentences(report) if re.search(pattern, s, re.IGNORECASE))


def test_reports_state_every_positive_class_and_never_affirm_a_negative_one(dataset):
    items = [item for split in ("training", "validation", "test") for item in load(dataset["datalist_vkd"])[split]]
    rng = np.random.default_rng(0)
    anatomy = sample_anatomy(rng)
    for _ in range(300):
        findings = sample_findings(rng, anatomy)
        kinds = {f.kind for f in findings}
        label = [int(any(k in kinds for k in group)) for group in (
            ("cardiomegaly",), ("pleural_effusion",), ("lung_opacity",), ("nodule",), ("pneumothorax",),
            ("rib_fracture", "clavicle_fracture"),
        )]
        items.append({"report": write_report(findings, rng), "label": label})
    for item in items:
        for name, flag in zip(VKD_CLASS_NAMES, item["label"]):
            if flag:
                assert stated(item["report"], CLASS_KEYWORDS[name]), (name, item["report"])
            else:
                assert denied_or_silent(item["report"], CLASS_KEYWORDS[name]), (name, item["report"])
    reports = [item["report"] for item in items]
    placeholders = [report for report in reports if "XXXX" in report]
    assert placeholders
    # The report reader of the VKD bundle keeps both sections and strips the placeholders.
    for report in placeholders:
        cleaned = extract_findings_impression(report)
        assert cleaned.startswith("FINDINGS: ") and " IMPRESSION: " in cleaned and "XXXX" not in cleaned
    assert any(HEDGE.search(report) for report in reports)


def test_subtle_findings_are_hedged_and_fractures_name_the_bone():
    rng = np.random.default_rng(1)
    anatomy = sample_anatomy(rng)
    seen_subtle = set()
    for _ in range(200):
        findings = sample_findings(rng, anatomy, {kind: 0.5 for kind in FINDING_KINDS})
        report = write_report(findings, rng)
        for finding in findings:
            pattern = KIND_KEYWORDS[finding.kind]
            matching = [s for s in sentences(report) if re.search(pattern, s, re.IGNORECASE)]
            assert matching, (finding.kind, report)
            if finding.is_subtle:
                seen_subtle.add(finding.kind)
                assert any(HEDGE.search(s) for s in matching), (finding.kind, report)
            if finding.kind == "rib_fracture":
                ordinal = {1: "st", 2: "nd", 3: "rd"}.get(finding.rib, "th")
                assert re.search(rf"{finding.side} [^.]*\b{finding.rib}{ordinal}\b", report, re.IGNORECASE), report
            if finding.kind == "clavicle_fracture":
                assert f"{finding.side} " in " ".join(s for s in matching if "clavicle" in s), report
    assert seen_subtle == set(FINDING_KINDS)


def test_report_of_a_normal_study_denies_everything():
    rng = np.random.default_rng(2)
    for _ in range(50):
        report = write_report((), rng)
        assert report.startswith("FINDINGS: ")
        for pattern in CLASS_KEYWORDS.values():
            assert denied_or_silent(report, pattern), report
        assert not HEDGE.search(report)
