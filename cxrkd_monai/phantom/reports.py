"""The report writer: a templated free-text report that states every finding of a study.

Positive sentences never contain a negation word, so that a finding stated and a finding denied can
be told apart by simple keyword rules; subtle findings are always hedged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cxrkd_monai.phantom.model import FRACTURE_CLASS_NAMES, Finding

__all__ = ["write_report"]

_NEGATIVE_SENTENCES = {
    "cardiomegaly": (
        "Heart size is normal.",
        "The cardiac silhouette is within normal limits.",
        "Normal heart size.",
        "The heart is not enlarged.",
    ),
    "pleural_effusion": ("No pleural effusion.", "No effusion.", "The costophrenic angles are sharp."),
    "lung_opacity": ("No focal consolidation.", "No focal airspace opacity.", "No focal airspace disease."),
    "nodule": ("No suspicious pulmonary nodules.", "No nodules or masses are identified."),
    "pneumothorax": ("No pneumothorax.", "There is no pneumothorax.", "No evidence of pneumothorax."),
    "fracture": (
        "No acute osseous abnormality.",
        "No displaced fractures are identified.",
        "The bony structures are intact.",
    ),
    "rib_fracture": ("No displaced rib fracture.", "The ribs are intact."),
    "clavicle_fracture": ("The clavicles are intact.", "No clavicle fracture."),
}
_NORMAL_SENTENCES = (
    "The mediastinal contours are unremarkable.",
    "Trachea is midline.",
    "Normal cardiomediastinal contours.",
    "The hila are unremarkable.",
)
_DEIDENTIFIED_SENTENCES = (
    "Comparison: XXXX.",
    "Comparison is made to the prior radiograph dated XXXX.",
    "XXXX-year-old patient, PA view of the chest.",
)
_DEIDENTIFIED_CLOSINGS = ("Findings were discussed with Dr. XXXX on XXXX.", "Results called to XXXX at XXXX.")
_NORMAL_IMPRESSIONS = (
    "No acute cardiopulmonary abnormality.",
    "No acute cardiopulmonary process.",
    "Normal chest radiograph.",
)


def _ordinal(number: int) -> str:
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def _zone(b: float) -> str:
    return "upper" if b < 0.34 else "mid" if b < 0.52 else "lower"


def _size_word(value: float, small: float, moderate: float) -> str:
    return "small" if value < small else "moderate" if value < moderate else "large"


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def _describe(kind: str, group: Sequence[Finding], rng: np.random.Generator) -> tuple[str, str]:
    """A FINDINGS sentence and an IMPRESSION phrase for one finding (or one side's rib fractures)."""
    finding = group[0]
    subtle = finding.is_subtle
    side = finding.side
    if kind == "cardiomegaly":
        degree = "mildly" if finding.size < 0.56 else "moderately" if finding.size < 0.61 else "markedly"
        if subtle:
            return _pick(rng, (
                "The cardiac silhouette is possibly mildly enlarged.",
                "Possible mild cardiomegaly.",
                "Borderline enlarged cardiac silhouette, likely mild cardiomegaly.",
                "Mild cardiomegaly cannot be excluded.",
            )), "Possible mild cardiomegaly."
        return _pick(rng, (
            f"The cardiac silhouette is {degree} enlarged.",
            f"{_capitalise(degree[:-2])} cardiomegaly.",
            "Enlarged cardiac silhouette.",
            f"The heart is {degree} enlarged.",
        )), "Cardiomegaly."
    if kind == "pleural_effusion":
        noun = "pleural effusions" if side == "bilateral" else "pleural effusion"
        angles = "costophrenic angles" if side == "bilateral" else "costophrenic angle"
        size = _size_word(finding.size, 0.08, 0.16)
        if subtle:
            return _pick(rng, (
                f"Blunting of the {side} {angles}, possibly small {noun}.",
                f"Possible small {side} {noun}.",
                f"Small {side} {noun} cannot be excluded.",
            )), f"Possible small {side} {noun}."
        return _pick(rng, (
            f"{_capitalise(size)} {side} {noun}.",
            f"{_capitalise(size)} {side} {noun} with a meniscus, blunting the {angles}.",
            f"{_capitalise(side)} {noun}, {size} in size.",
        )), f"{_capitalise(size)} {side} {noun}."
    if kind == "lung_opacity":
        zone = _zone(finding.position[1])
        if subtle:
            return _pick(rng, (
                f"Faint hazy opacity in the {side} {zone} lung zone, possibly early consolidation.",
                f"Subtle {side} {zone} zone opacity; pneumonia cannot be excluded.",
                f"Ill-defined opacity in the {side} {zone} lung, likely atelectasis or early infection.",
            )), f"Possible {side} {zone} zone consolidation."
        return _pick(rng, (
            f"Patchy airspace opacity in the {side} {zone} lung zone, consistent with consolidation.",
            f"Consolidation in the {side} {zone} lung.",
            f"Focal airspace consolidation in the {side} {zone} zone.",
        )), f"{_capitalise(side)} {zone} zone consolidation."
    if kind == "nodule":
        zone = _zone(finding.position[1])
        # Taking the image height as 40 cm of film turns the radius into a diameter in millimetres.
        millimetres = max(3, round(2 * finding.size * 400))
        if subtle:
            return _pick(rng, (
                f"Possible {millimetres} mm nodule in the {side} {zone} lung; a nipple shadow cannot be excluded.",
                f"Questionable small nodule in the {side} {zone} zone.",
            )), f"Possible {side} pulmonary nodule; follow-up suggested."
        return _pick(rng, (
            f"{millimetres} mm nodule in the {side} {zone} lung.",
            f"Well-circumscribed {millimetres} mm pulmonary nodule in the {side} {zone} zone.",
        )), f"{_capitalise(side)} {zone} lung nodule; CT recommended."
    if kind == "pneumothorax":
        size = _size_word(finding.size, 0.12, 0.25)
        if subtle:
            return _pick(rng, (
                f"Possible small {side} apical pneumothorax.",
                f"A thin {side} apical pleural line may represent a small pneumothorax.",
                f"Small {side} pneumothorax cannot be excluded.",
            )), f"Possible small {side} pneumothorax."
        return _pick(rng, (
            f"{_capitalise(size)} {side} pneumothorax with a visible pleural line.",
            f"There is a {size} {side} pneumothorax.",
            f"{_capitalise(side)} apical pneumothorax, {size} in size.",
        )), f"{_capitalise(size)} {side} pneumothorax."
    if kind == "rib_fracture":
        numbers = [_ordinal(f.rib) for f in group]
        levels = numbers[0] if len(numbers) == 1 else ", ".join(numbers[:-1]) + " and " + numbers[-1]
        ribs = "rib" if len(numbers) == 1 else "ribs"
        fractures = "fracture" if len(numbers) == 1 else "fractures"
        if subtle:
            return _pick(rng, (
                f"Possible nondisplaced {fractures} of the {side} {levels} posterior {ribs}.",
                f"Cortical irregularity of the {side} {levels} {ribs}; nondisplaced {fractures} cannot be excluded.",
                f"Likely subtle {fractures} of the {side} {levels} {ribs}.",
            )), f"Possible {side} {levels} rib {fractures}."
        return _pick(rng, (
            f"Acute {fractures} of the {side} {levels} posterior {ribs}.",
            f"Displaced {fractures} of the {side} {levels} {ribs}.",
            f"{_capitalise(side)} {levels} rib {fractures} with cortical step-off.",
        )), f"{_capitalise(side)} {levels} rib {fractures}."
    if subtle:
        return _pick(rng, (
            f"Possible nondisplaced fracture of the {side} clavicle.",
            f"Lucency through the {side} mid clavicle; a nondisplaced fracture cannot be excluded.",
        )), f"Possible {side} clavicle fracture."
    return _pick(rng, (
        f"Displaced fracture of the {side} clavicle.",
        f"Fracture of the {side} mid clavicle with displacement.",
        f"Acute {side} midshaft clavicle fracture.",
    )), f"{_capitalise(side)} clavicle fracture."


def write_report(findings: Sequence[Finding], rng: np.random.Generator) -> str:
    """A free-text report ``"FINDINGS: ... IMPRESSION: ..."`` that states every finding in ``findings``.

    Sentences are drawn from varied templates with synonyms. Subtle findings are hedged ("possible",
    "cannot be excluded", "likely"); absent findings are denied or left unmentioned; some reports
    carry de-identification placeholders ``XXXX``. Fractures name the side and the rib level or the
    clavicle.

    Example:
        >>> write_report((Finding("pneumothorax", 0.9, "left", size=0.3),), np.random.default_rng(0))[:9]
        'FINDINGS:'
    """
    groups: dict[str, list[list[Finding]]] = {}
    for finding in findings:
        kind_groups = groups.setdefault(finding.kind, [])
        same_side = [g for g in kind_groups if g[0].side == finding.side]
        if finding.kind == "rib_fracture" and same_side:
            same_side[0].append(finding)
        else:
            kind_groups.append([finding])
    present = set(groups)
    sentences: list[str] = []
    impressions: list[str] = []
    if rng.random() < 0.25:
        sentences.append(_pick(rng, _DEIDENTIFIED_SENTENCES))

    def state(kind: str) -> None:
        for group in groups.get(kind, ()):
            sentence, impression = _describe(kind, group, rng)
            sentences.append(sentence)
            impressions.append(impression)

    if "cardiomegaly" in present:
        state("cardiomegaly")
    elif rng.random() < 0.9:
        sentences.append(_pick(rng, _NEGATIVE_SENTENCES["cardiomegaly"]))
    if rng.random() < 0.5:
        sentences.append(_pick(rng, _NORMAL_SENTENCES))
    for kind in ("lung_opacity", "nodule", "pleural_effusion", "pneumothorax"):
        state(kind)
    chest_negatives = [k for k in ("lung_opacity", "pleural_effusion", "pneumothorax") if k not in present]
    if not {"lung_opacity", "nodule"} & present and rng.random() < 0.4:
        sentences.append("The lungs are clear.")
    if len(chest_negatives) == 3 and rng.random() < 0.3:
        sentences.append("No focal consolidation, pleural effusion, or pneumothorax.")
    elif {"pleural_effusion", "pneumothorax"} <= set(chest_negatives) and rng.random() < 0.4:
        sentences.append("No pleural effusion or pneumothorax.")
        if "lung_opacity" in chest_negatives:
            sentences.append(_pick(rng, _NEGATIVE_SENTENCES["lung_opacity"]))
    else:
        sentences.extend(_pick(rng, _NEGATIVE_SENTENCES[k]) for k in chest_negatives if rng.random() < 0.9)
    if "nodule" not in present and rng.random() < 0.5:
        sentences.append(_pick(rng, _NEGATIVE_SENTENCES["nodule"]))
    for kind in FRACTURE_CLASS_NAMES:
        state(kind)
    fracture_kinds = present & set(FRACTURE_CLASS_NAMES)
    if not fracture_kinds:
        if rng.random() < 0.7:
            sentences.append(_pick(rng, _NEGATIVE_SENTENCES["fracture"]))
    elif len(fracture_kinds) == 1 and rng.random() < 0.5:
        (intact,) = set(FRACTURE_CLASS_NAMES) - fracture_kinds
        sentences.append(_pick(rng, _NEGATIVE_SENTENCES[intact]))

    if not impressions:
        impression = _pick(rng, _NORMAL_IMPRESSIONS)
    elif len(impressions) > 1 and rng.random() < 0.5:
        impression = " ".join(f"{i}. {text}" for i, text in enumerate(impressions, start=1))
    else:
        impression = " ".join(impressions)
    if rng.random() < 0.1:
        impression = f"{impression} {_pick(rng, _DEIDENTIFIED_CLOSINGS)}"
    return f"FINDINGS: {' '.join(sentences)} IMPRESSION: {impression}"
