"""Encode each report once: an in-memory and on-disk cache of frozen text-encoder features.

A frozen encoder maps a text to the same feature in every epoch and every run, so training pays for
the text encoder once per unique report. Files live under ``cache_dir/<sha256(encoder.identity)>/``, so a
different model, checkpoint or ``max_length`` never reads another encoder's features.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from cxrkd_monai.errors import require_utf8

if TYPE_CHECKING:
    from cxrkd_monai.networks.text_encoder import MeanPoolingTextEncoder

__all__ = ["TextEmbeddingCache"]

logger = logging.getLogger(__name__)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class TextEmbeddingCache:
    """Text features ``(B, D)`` computed by ``encoder`` at most once per unique text and encoder identity.

    Only texts missing from memory and disk are sent to the encoder, ``batch_size`` at a time. Files are
    written atomically (a temporary file renamed into place), so concurrent workers or ranks sharing
    ``cache_dir`` never read a half-written feature; a file that cannot be read is re-encoded with a
    warning naming it. An encoder that is being fine-tuned bypasses the cache: its features change every
    step and must carry gradients.

    Args:
        encoder: the text encoder; its ``identity`` keys the cache.
        cache_dir: folder for the ``.npy`` files; ``None`` keeps the cache in memory only.
        batch_size: maximum number of texts per encoder call.

    Input: ``B`` strings, each encodable as UTF-8 (a lone surrogate raises
    :class:`~cxrkd_monai.errors.InvalidItemError` naming its position in the batch; ``ValidateVKDItemd`` and
    ``load_datalist`` reject such a report earlier, naming its item).
    Output: ``(B, encoder.output_dim)`` float32 on the CPU (for a frozen encoder), row ``i`` for ``texts[i]``.

    Attributes:
        encoder_calls: number of texts sent to the encoder so far.
        hits: number of requested texts answered without encoding them; ``encoder_calls + hits`` is the
            number of texts requested from a frozen encoder.

    Example::

        cache = TextEmbeddingCache(MeanPoolingTextEncoder(), cache_dir="cache/text")
        features = cache(["No acute findings.", "Right pleural effusion."])  # (2, 384)
    """

    def __init__(
        self,
        encoder: MeanPoolingTextEncoder,
        cache_dir: str | os.PathLike | None = None,
        batch_size: int = 64,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}.")
        self.encoder = encoder
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.batch_size = batch_size
        self.encoder_calls = 0
        self.hits = 0
        self._memory: dict[tuple[str, str], Tensor] = {}

    def __call__(self, texts: Sequence[str]) -> Tensor:
        if isinstance(texts, str) or len(texts) == 0:
            raise ValueError(f"texts must be a non-empty sequence of strings, got {texts!r}.")
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise ValueError(f"texts must be strings, got {type(text).__name__} at position {index}.")
            require_utf8(text, f"TextEmbeddingCache text {index} of {len(texts)} in the batch")
        if not self.encoder.is_frozen:
            self.encoder_calls += len(texts)
            return self.encoder(texts)
        encoder_key = _sha256(self.encoder.identity)
        missing = [text for text in dict.fromkeys(texts) if not self._recall(encoder_key, text)]
        for start in range(0, len(missing), self.batch_size):
            self._encode_and_store(encoder_key, missing[start : start + self.batch_size])
        self.hits += len(texts) - len(missing)
        return torch.stack([self._memory[(encoder_key, text)] for text in texts])

    def _recall(self, encoder_key: str, text: str) -> bool:
        """Whether ``text`` is available, loading it from disk into memory when needed."""
        if (encoder_key, text) in self._memory:
            return True
        if self.cache_dir is None:
            return False
        path = self._path(encoder_key, text)
        if not path.exists():
            return False
        try:
            feature = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as error:
            logger.warning(
                "Text embedding cache file %s is unreadable (%s); encoding the text again.", path, error
            )
            return False
        if (
            feature.shape != (self.encoder.output_dim,)
            or feature.dtype != np.float32
            or not np.isfinite(feature).all()
        ):
            logger.warning(
                "Text embedding cache file %s holds %s %s, expected finite float32 (%d,); encoding it again.",
                path,
                feature.dtype,
                feature.shape,
                self.encoder.output_dim,
            )
            return False
        self._memory[(encoder_key, text)] = torch.from_numpy(feature)
        return True

    def _encode_and_store(self, encoder_key: str, texts: list[str]) -> None:
        with torch.no_grad():
            features = self.encoder(texts).detach().to(device="cpu", dtype=torch.float32)
        self.encoder_calls += len(texts)
        if self.cache_dir is not None:
            self._write_identity(encoder_key)
        for text, feature in zip(texts, features):
            self._memory[(encoder_key, text)] = feature.clone()
            if self.cache_dir is not None:
                self._write_atomic(self._path(encoder_key, text), feature.numpy())

    def _path(self, encoder_key: str, text: str) -> Path:
        return self.cache_dir / encoder_key / f"{_sha256(text)}.npy"

    def _write_identity(self, encoder_key: str) -> None:
        """Record the readable encoder identity next to its features, for whoever inspects the folder."""
        path = self.cache_dir / encoder_key / "identity.txt"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(self.encoder.identity + "\n")

    @staticmethod
    def _write_atomic(path: Path, array: np.ndarray) -> None:
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                np.save(file, array, allow_pickle=False)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
