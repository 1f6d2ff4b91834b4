"""Radiology report text: section extraction and de-identification clean-up.

The VKD text path reads the FINDINGS and IMPRESSION sections of a report, as the paper does. Reports come as
MIMIC-CXR free text with ``FINDINGS:`` / ``IMPRESSION:`` headers (in any case and spacing), or as separate
fields (OpenI ``AbstractText Label="FINDINGS"``, the ``findings``/``impression`` CSV columns), which
:func:`report_from_sections` joins into the same form.

Policy:

- Output form: ``"FINDINGS: <text> IMPRESSION: <text>"``; a section that is absent or empty after cleaning is
  left out.
- No FINDINGS or IMPRESSION header: the report body minus its administrative sections (examination,
  indication, history, technique, comparison, ...) and the ``FINAL REPORT`` banner is used instead, so that a
  free-text report still says what was seen.
- De-identification placeholders (``___`` and longer underscore runs, ``XXXX`` and longer runs of capital X
  even inside a word, as in ``XXXXPM``, and ``XXX`` standing alone) are removed, then whitespace is collapsed
  to single spaces.
- Input: a ``str``; ``None`` and a float NaN (an empty cell as pandas reads it) are a missing report; anything
  else raises :class:`~cxrkd_monai.errors.InvalidItemError`. Lone surrogates (``"\ud800"``, which no UTF-8
  file can hold) are replaced by U+FFFD, so the output can always be written as UTF-8.
- Empty or missing report: what happens to the item is the adapter's ``empty_report`` option,
  ``"skip"`` (default: the item is left out and counted) or ``"keep"`` (written with ``report: ""`` for
  image-only use); see :data:`EMPTY_REPORT_POLICIES`.
"""

from __future__ import annotations

import math
import re

from cxrkd_monai.errors import InvalidItemError

__all__ = [
    "EMPTY_REPORT_POLICIES",
    "clean_report",
    "extract_findings_impression",
    "report_from_sections",
    "split_sections",
]

EMPTY_REPORT_POLICIES = ("skip", "keep")

FINDINGS_HEADERS = ("findings", "finding", "findings and impression", "findings/impression")
IMPRESSION_HEADERS = ("impression", "impressions", "conclusion", "conclusions")
ADMINISTRATIVE_HEADERS = (
    "examination",
    "exam",
    "indication",
    "indications",
    "history",
    "clinical history",
    "clinical information",
    "reason for exam",
    "reason for examination",
    "technique",
    "comparison",
    "comparisons",
    "procedure",
    "type of examination",
    "wet read",
    "notification",
    "addendum",
)
KNOWN_HEADERS = FINDINGS_HEADERS + IMPRESSION_HEADERS + ADMINISTRATIVE_HEADERS

_HEADER_AT_LINE_START = re.compile(r"^[ \t]*([A-Za-z][A-Za-z /&]{1,40}?)[ \t]*:", re.MULTILINE)
_KNOWN_UPPER_INLINE = re.compile(
    r"(?<![A-Za-z])(" + "|".join(re.escape(h.upper()) for h in sorted(KNOWN_HEADERS, key=len, reverse=True)) + r")\s*:"
)
_UNDERSCORE_RUN = re.compile(r"_{2,}")
_X_RUN = re.compile(r"X{4,}|(?<![A-Za-z])XXX(?![A-Za-z])")
_BANNER = re.compile(r"^\s*FINAL REPORT\s*$", re.MULTILINE | re.IGNORECASE)
_SPACE_BEFORE_PUNCTUATION = re.compile(r"\s+([.,;:])")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _report_text(text: object) -> str:
    """``text`` as a string ("" when missing), lone surrogates replaced by U+FFFD."""
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return ""
    if not isinstance(text, str):
        raise InvalidItemError(f"Report text must be a string, got {type(text).__name__}.")
    return _LONE_SURROGATE.sub("\ufffd", text)


def clean_report(text: str | float | None) -> str:
    """Remove de-identification placeholders and collapse whitespace.

    Example::

        clean_report("___F with  cough.\\nNo XXXX effusion.")   # 'F with cough. No effusion.'
    """
    text = _report_text(text)
    if not text:
        return ""
    text = _UNDERSCORE_RUN.sub(" ", text)
    text = _X_RUN.sub(" ", text)
    text = " ".join(text.split())
    return _SPACE_BEFORE_PUNCTUATION.sub(r"\1", text).strip()


def split_sections(text: str | float | None) -> list[tuple[str, str]]:
    """Split a report into ``(header, body)`` pairs in reading order; the header is lower case.

    Headers are recognised at the start of a line when they are known section names (any case) or written in
    capitals, and anywhere when they are known names written in capitals. Text before the first header comes
    back with header ``""``.
    """
    text = _report_text(text)
    starts: dict[int, tuple[int, str]] = {}
    for match in _HEADER_AT_LINE_START.finditer(text):
        name = " ".join(match.group(1).split())
        if name.lower() in KNOWN_HEADERS or name.isupper():
            starts[match.start()] = (match.end(), name.lower())
    for match in _KNOWN_UPPER_INLINE.finditer(text):
        if not any(begin <= match.start() < end for begin, (end, _) in starts.items()):
            starts[match.start()] = (match.end(), " ".join(match.group(1).split()).lower())
    sections = []
    positions = sorted(starts)
    preamble = text[: positions[0]] if positions else text
    if preamble.strip():
        sections.append(("", preamble))
    for index, begin in enumerate(positions):
        end, name = starts[begin]
        stop = positions[index + 1] if index + 1 < len(positions) else len(text)
        sections.append((name, text[end:stop]))
    return sections


def extract_findings_impression(text: str | float | None) -> str:
    """The cleaned FINDINGS and IMPRESSION sections of a report, as ``"FINDINGS: ... IMPRESSION: ..."``.

    Without either section, the cleaned report minus administrative sections is returned (see the module
    policy); an empty or missing report gives ``""``.

    Example::

        extract_findings_impression("INDICATION: ___ cough\\n findings : Clear lungs.\\nIMPRESSION: Normal.")
        # 'FINDINGS: Clear lungs. IMPRESSION: Normal.'
    """
    text = _report_text(text)
    if not text.strip():
        return ""
    sections = split_sections(text)
    findings = " ".join(body for name, body in sections if name in FINDINGS_HEADERS)
    impression = " ".join(body for name, body in sections if name in IMPRESSION_HEADERS)
    if findings.strip() or impression.strip():
        return report_from_sections(findings, impression)
    body = " ".join(body for name, body in sections if name not in ADMINISTRATIVE_HEADERS)
    return clean_report(_BANNER.sub(" ", body))


def report_from_sections(findings: str | float | None = None, impression: str | float | None = None) -> str:
    """Join separately stored sections into ``"FINDINGS: ... IMPRESSION: ..."``, cleaning each.

    Example::

        report_from_sections("Heart size normal.", "XXXX normal chest.")
        # 'FINDINGS: Heart size normal. IMPRESSION: normal chest.'
    """
    parts = []
    for header, body in (("FINDINGS", findings), ("IMPRESSION", impression)):
        cleaned = clean_report(body)
        if cleaned:
            parts.append(f"{header}: {cleaned}")
    return " ".join(parts)
