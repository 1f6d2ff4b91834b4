"""Assembles the report page: one self-contained HTML file, figures inline as base64 PNG, no network access.

The page is rendered from ``templates/report.html.j2`` with Jinja2 (autoescaping on), from a :class:`ReportPage`.
The stylesheet is inline and uses system fonts, so the file opens from disk anywhere, offline.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from cxrkd_monai.report.tables import Table
from cxrkd_monai.utils.atomic_files import write_text_atomically

__all__ = ["Card", "ReportFigure", "ReportPage", "Section", "png_data_uri", "render_report"]


@dataclass
class Card:
    """A headline figure at the top of the page: ``label``, ``value`` (e.g. ``0.812``) and ``detail`` (its CI)."""

    label: str
    value: str
    detail: str = ""


@dataclass
class ReportFigure:
    """A PNG file shown inline, with its caption; ``wide`` figures take a full row."""

    path: Path
    caption: str
    wide: bool = False


@dataclass
class Section:
    """A titled part of the report: paragraphs, then tables, then figures."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[ReportFigure] = field(default_factory=list)
    anchor: str = ""


@dataclass
class ReportPage:
    """Everything the template shows.

    Attributes:
        title, subtitle: page heading.
        cards: headline figures.
        sections: the body, in order.
        provenance: ``(label, value)`` rows on where the figures come from (run folder, datalist, bootstrap).
        notices: short warnings shown above the body (synthetic data, missing maps...).
    """

    title: str
    subtitle: str
    cards: list[Card]
    sections: list[Section]
    provenance: list[tuple[str, str]]
    notices: list[str] = field(default_factory=list)


def png_data_uri(path: str | Path) -> str:
    """``data:image/png;base64,...`` of a PNG file.

    Raises:
        ValueError: the file is not a PNG (named).
    """
    data = Path(path).read_bytes()
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError(f"Figure {str(path)!r} is not a PNG file.")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("cxrkd_monai.report", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["data_uri"] = png_data_uri
    return environment


def render_report(page: ReportPage, output_path: str | Path) -> Path:
    """Render ``page`` to ``output_path`` (written atomically), figures embedded; returns the path."""
    output_path = Path(output_path)
    html = _environment().get_template("report.html.j2").render(page=page)
    write_text_atomically(output_path, html)
    return output_path
