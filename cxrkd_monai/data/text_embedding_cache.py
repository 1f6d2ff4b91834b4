"""Encode each report once: an in-memory or memory-mapped on-disk cache of frozen text-encoder features.

A frozen encoder maps a text to the same feature in every epoch and every run, so training pays for
the text encoder once per unique report. On disk, the features of one encoder live in a single
:class:`~cxrkd_monai.data.embedding_store.EmbeddingStore` file,
``cache_dir/<sha256(encoder.identity)>/embeddings.bin``, keyed by the SHA-256 of the text, so a different
model, checkpoint or ``max_length`` never reads another encoder's features, and a datalist with hundreds of
thousands of reports costs one file, paged in on demand.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from cxrkd_monai.data.embedding_store import EmbeddingStore
from cxrkd_monai.errors import require_utf8
from cxrkd_monai.utils.atomic_files import write_text_atomically

if TYPE_CHECKING:
    from cxrkd_monai.networks.text_encoder import MeanPoolingTextEncoder

__all__ = ["TextEmbeddingCache"]

STORE_NAME = "embeddings.bin"


class TextEmbeddingCache:
    """Text features ``(B, D)`` computed by ``encoder`` at most once per unique text and encoder identity.

    Only texts missing from the cache are sent to the encoder, ``batch_size`` at a time. With ``cache_dir``,
    features go to one memory-mapped store per encoder identity, shared safely by concurrent data-loader
    workers and DDP ranks: appends are locked, a partial append is never read, and a truncated or corrupt
    store is repaired with a warning naming it, its lost features encoded again (see
    :class:`~cxrkd_monai.data.embedding_store.EmbeddingStore`). An encoder that is being fine-tuned bypasses
    the cache: its features change every step and must carry gradients.

    Args:
        encoder: the text encoder; its ``identity`` keys the cache.
        cache_dir: folder for the stores; ``None`` keeps the cache in memory only.
        batch_size: maximum number of texts per encoder call.

    Input: ``B`` strings, each encodable as UTF-8 (a lone surrogate raises
    :class:`~cxrkd_monai.errors.InvalidItemError` naming its position in the batch; ``ValidateVKDItemd`` and
    ``load_datalist`` reject such a report earlier, naming its item).
    Output: ``(B, encoder.output_dim)`` float32 on the CPU (for a frozen encoder), row ``i`` for ``texts[i]``,
    bit-identical to what the encoder returned when the text was first encoded.

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
        self._memory: dict[tuple[str, bytes], Tensor] = {}
        self._stores: dict[str, EmbeddingStore] = {}

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
        encoder_key = hashlib.sha256(self.encoder.identity.encode("utf-8")).hexdigest()
        digests = [hashlib.sha256(text.encode("utf-8")).digest() for text in texts]
        unique = dict(zip(digests, texts))
        missing = [digest for digest, known in zip(unique, self._known(encoder_key, list(unique))) if not known]
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start : start + self.batch_size]
            with torch.no_grad():
                features = self.encoder([unique[digest] for digest in chunk])
            self.encoder_calls += len(chunk)
            self._keep(encoder_key, chunk, features.detach().to(device="cpu", dtype=torch.float32))
        self.hits += len(texts) - len(missing)
        return self._recall(encoder_key, digests)

    def _known(self, encoder_key: str, digests: list[bytes]) -> list[bool]:
        if self.cache_dir is None:
            return [(encoder_key, digest) in self._memory for digest in digests]
        return (self._store(encoder_key).rows(digests) >= 0).tolist()

    def _keep(self, encoder_key: str, digests: list[bytes], features: Tensor) -> None:
        if self.cache_dir is None:
            self._memory.update({(encoder_key, digest): feature.clone() for digest, feature in zip(digests, features)})
        else:
            self._store(encoder_key).append(digests, features.numpy())

    def _recall(self, encoder_key: str, digests: list[bytes]) -> Tensor:
        if self.cache_dir is None:
            return torch.stack([self._memory[(encoder_key, digest)] for digest in digests])
        store = self._store(encoder_key)
        return torch.from_numpy(store.read(store.rows(digests)))

    def _store(self, encoder_key: str) -> EmbeddingStore:
        """The store of this encoder identity, with the readable identity written next to it once."""
        if encoder_key not in self._stores:
            folder = self.cache_dir / encoder_key
            identity = folder / "identity.txt"
            if not identity.exists():
                write_text_atomically(identity, self.encoder.identity + "\n")
            self._stores[encoder_key] = EmbeddingStore(folder / STORE_NAME, dim=self.encoder.output_dim)
        return self._stores[encoder_key]
