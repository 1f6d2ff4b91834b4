"""VKD's text branch at dataset scale: one encoder call per unique report, whatever the number of items.

``items`` training items draw their reports from a pool of unique reports (the real IU X-ray reports
where the shared data has them, else phantom reports), each report used by many items, shuffled per epoch
as a data loader would. Each epoch's batches go through the bundle's :class:`TextEmbeddingCache`, the
object ``VKDTrainer`` asks for text features batch by batch, wrapped around a counting encoder: a frozen
stand-in for the text model whose features are a deterministic function of the text, and which counts
every text it is sent. A second cache object on the same folder then plays a second run (another process,
another rank): it should encode nothing. Counting, not timing, so the model's cost plays no part.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from benchmarks.bundle_data import REPO_ROOT
from benchmarks.report import Figure, GroupReport, Target
from benchmarks.scale_items import phantom_sources
from benchmarks.settings import BenchmarkSettings
from benchmarks.timing import Summary
from cxrkd_monai.data import TextEmbeddingCache
from cxrkd_monai.prepare.reports import report_from_sections

__all__ = ["CountingTextEncoder", "report_pool", "run"]

IU_REPORTS_CSV = REPO_ROOT.parent / "shared" / "data" / "iu_xray_reports_text" / "indiana_reports.csv"
"""Real radiology reports (see that folder's ``SOURCE.md``)."""


class CountingTextEncoder(torch.nn.Module):
    """A frozen text encoder that counts the texts it encodes.

    Output: ``(B, output_dim)`` float32, each row drawn from a generator seeded with the text's SHA-256, so
    the same text always gives the same feature. ``texts_encoded`` counts texts, ``calls`` invocations.
    """

    def __init__(self, output_dim: int = 384) -> None:
        super().__init__()
        self._output_dim = output_dim
        self.texts_encoded = 0
        self.calls = 0

    @property
    def output_dim(self) -> int:
        return self._output_dim

    @property
    def is_frozen(self) -> bool:
        return True

    @property
    def identity(self) -> str:
        return f"benchmarks.CountingTextEncoder(output_dim={self._output_dim})"

    def forward(self, texts: Sequence[str]) -> Tensor:
        self.calls += 1
        self.texts_encoded += len(texts)
        rows = []
        for text in texts:
            generator = torch.Generator().manual_seed(int(hashlib.sha256(text.encode()).hexdigest()[:15], 16))
            rows.append(torch.randn(self._output_dim, generator=generator))
        return torch.stack(rows)


def report_pool(work_dir: Path) -> tuple[list[str], str]:
    """Unique non-empty reports and where they come from: IU X-ray if present, else a phantom's."""
    if IU_REPORTS_CSV.is_file():
        with IU_REPORTS_CSV.open(newline="", encoding="utf-8") as handle:
            texts = [report_from_sections(row["findings"], row["impression"]) for row in csv.DictReader(handle)]
        source = "IU X-ray reports (findings and impression)"
    else:
        sources = phantom_sources(work_dir / "phantom_reports", num_patients=64)
        texts = [item["report"] for item in sources.items]
        source = "phantom reports (IU X-ray reports absent)"
    return sorted({text for text in texts if text.strip()}), source


def _epoch_batches(reports: Sequence[str], num_items: int, batch_size: int, epoch: int) -> list[list[str]]:
    """The report batches of one shuffled epoch over ``num_items`` items cycling through ``reports``."""
    item_reports = [reports[index % len(reports)] for index in range(num_items)]
    random.Random(epoch).shuffle(item_reports)
    return [item_reports[start : start + batch_size] for start in range(0, num_items, batch_size)]


def _store_files(cache_dir: Path) -> int:
    return sum(1 for path in cache_dir.rglob("*") if path.is_file())


def run(settings: BenchmarkSettings, work_dir: Path) -> GroupReport:
    """Count encoder calls over two epochs of ``settings.text_items`` items, then over a second run."""
    reports, source = report_pool(work_dir)
    cache_dir = work_dir / "text_cache"
    batch_size = settings.scale_batch_size
    first_encoder = CountingTextEncoder()
    first_run = TextEmbeddingCache(first_encoder, cache_dir=cache_dir)
    epochs = 2
    for epoch in range(epochs):
        for batch in _epoch_batches(reports, settings.text_items, batch_size, epoch):
            first_run(batch)
    second_encoder = CountingTextEncoder()
    second_run = TextEmbeddingCache(second_encoder, cache_dir=cache_dir)
    for batch in _epoch_batches(reports, settings.text_items, batch_size, epochs):
        second_run(batch)
    files = _store_files(cache_dir)
    (work_dir / "counts.json").write_text(
        json.dumps({"first_run": first_encoder.texts_encoded, "second_run": second_encoder.texts_encoded})
    )
    return GroupReport(
        name="text_cache_scale",
        title=f"VKD text encoder calls at {settings.text_items:,} items",
        setup={
            "items": f"{settings.text_items:,}",
            "unique reports": f"{len(reports):,} ({source})",
            "batch": batch_size,
            "epochs": f"{epochs} in the first run, 1 in the second",
        },
        notes=[
            "Counted through TextEmbeddingCache, the object VKDTrainer asks for each batch's text features, "
            "wrapped around a counting encoder; the image side plays no part in the count.",
            f"Files in the text cache folder after both runs: {files:,}.",
        ],
        figures=[
            Figure(
                "text_encoder_calls_per_unique_report_at_scale",
                f"texts encoded ÷ unique reports, {epochs} epochs of {settings.text_items:,} items",
                "ratio",
                Summary.of([first_encoder.texts_encoded / len(reports)]),
                Target("==", 1.0),
            ),
            Figure(
                "text_encoder_calls_per_unique_report_two_runs",
                "texts encoded by both runs ÷ unique reports (the second run reads the first run's store)",
                "ratio",
                Summary.of([(first_encoder.texts_encoded + second_encoder.texts_encoded) / len(reports)]),
                Target("==", 1.0),
            ),
        ],
    )
