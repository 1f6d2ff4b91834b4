import hashlib
import logging

import numpy as np
import pytest
import torch
from torch import nn

from cxrkd_monai.data.text_embedding_cache import TextEmbeddingCache
from cxrkd_monai.errors import InvalidItemError

DIM = 8
MAX_LENGTH = 32
# Features encoded in different batch compositions go through different BLAS kernels, which sum the products in
# a different order. Each feature is a dot product of at most MAX_LENGTH non-zero byte counts (a zero count adds
# nothing and rounds nothing) plus the bias, so the recursive-summation bound gives
# |error| <= (MAX_LENGTH + 1) * u * sum_i |count_i * w_i| with u = 2**-24 for float32. The counts sum to at most
# MAX_LENGTH and nn.Linear(256, DIM) draws |w|, |b| <= 1/16, so the sum is at most (MAX_LENGTH + 1) / 16 and the
# error at most 33 * 2**-24 * 33 / 16 ~ 4.1e-6. Two different reports differ by orders of magnitude more.
BATCH_ATOL = (MAX_LENGTH + 1) * 2.0**-24 * (MAX_LENGTH + 1) / 16
REPORTS = [
    "No acute findings.",
    "Left pleural effusion.",
    "Cardiomegaly.",
    "Right rib fracture.",
    "Clear lungs.",
]


def byte_counts(texts, max_length):
    counts = torch.zeros(len(texts), 256)
    for row, text in enumerate(texts):
        for byte in text.encode()[:max_length]:
            counts[row, byte] += 1
    return counts


class BagOfBytesEncoder(nn.Module):
    """A small deterministic text encoder with the MeanPoolingTextEncoder interface that logs its batches."""

    def __init__(self, trainable: bool = False, max_length: int = MAX_LENGTH):
        super().__init__()
        torch.manual_seed(0)
        self.projection = nn.Linear(256, DIM)
        self.projection.requires_grad_(trainable)
        self.max_length = max_length
        self.batches: list[list[str]] = []

    @property
    def output_dim(self) -> int:
        return DIM

    @property
    def is_frozen(self) -> bool:
        return not self.projection.weight.requires_grad

    @property
    def identity(self) -> str:
        return f"bag-of-bytes|max_length={self.max_length}"

    def forward(self, texts):
        self.batches.append(list(texts))
        return self.projection(byte_counts(texts, self.max_length))


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def feature_file(cache_dir, encoder, text):
    return cache_dir / sha256(encoder.identity) / f"{sha256(text)}.npy"


def test_each_unique_text_is_encoded_once_over_epochs():
    encoder = BagOfBytesEncoder()
    cache = TextEmbeddingCache(encoder, batch_size=2)
    batches = [REPORTS[:3] + REPORTS[:1], REPORTS[2:], REPORTS[1:2]]
    for _ in range(3):
        for texts in batches:
            features = cache(texts)
            assert features.dtype == torch.float32 and features.device.type == "cpu"
            with torch.no_grad():
                expected = encoder.projection(byte_counts(texts, MAX_LENGTH))
                torch.testing.assert_close(features, expected, atol=BATCH_ATOL, rtol=0)
    assert cache.encoder_calls == len(REPORTS)
    assert cache.hits == 3 * sum(len(texts) for texts in batches) - len(REPORTS)
    # First call: 3 unique misses in batches of 2; second call: the 2 texts not seen yet.
    assert [len(batch) for batch in encoder.batches] == [2, 1, 2]


def test_second_cache_on_same_directory_encodes_nothing(tmp_path):
    first = TextEmbeddingCache(BagOfBytesEncoder(), cache_dir=tmp_path)
    expected = first(REPORTS)
    encoder = BagOfBytesEncoder()
    for text in REPORTS:
        assert feature_file(tmp_path, encoder, text).is_file()
    assert (tmp_path / sha256(encoder.identity) / "identity.txt").read_text().strip() == encoder.identity
    assert not list(tmp_path.rglob("*.tmp"))

    second = TextEmbeddingCache(encoder, cache_dir=tmp_path)
    torch.testing.assert_close(second(REPORTS), expected)
    assert second.encoder_calls == 0 and second.hits == len(REPORTS)
    assert encoder.batches == []


def test_new_text_or_new_encoder_identity_is_encoded_again(tmp_path):
    TextEmbeddingCache(BagOfBytesEncoder(), cache_dir=tmp_path)(REPORTS)

    same = TextEmbeddingCache(BagOfBytesEncoder(), cache_dir=tmp_path)
    same(REPORTS + ["Small right pneumothorax."])
    assert same.encoder_calls == 1

    shorter = BagOfBytesEncoder(max_length=8)
    other = TextEmbeddingCache(shorter, cache_dir=tmp_path)
    features = other(REPORTS)
    assert other.encoder_calls == len(REPORTS)
    assert feature_file(tmp_path, shorter, REPORTS[0]).is_file()
    # "Left pleural effusion." and "Left ple" differ only beyond max_length=8 for the new encoder.
    torch.testing.assert_close(features[1], other(["Left ple"])[0], atol=BATCH_ATOL, rtol=0)


def test_identity_change_of_a_live_encoder_invalidates_memory():
    encoder = BagOfBytesEncoder()
    cache = TextEmbeddingCache(encoder)
    cache(REPORTS[:2])
    encoder.max_length = 4
    cache(REPORTS[:2])
    assert cache.encoder_calls == 4


def test_fine_tuned_encoder_bypasses_the_cache(tmp_path):
    encoder = BagOfBytesEncoder(trainable=True)
    cache = TextEmbeddingCache(encoder, cache_dir=tmp_path)
    first = cache(REPORTS[:2])
    second = cache(REPORTS[:2])
    assert first.requires_grad and second.requires_grad
    assert cache.encoder_calls == 4 and cache.hits == 0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda path: path.write_bytes(b"\x93NUMPY truncated"),
        lambda path: np.save(path, np.zeros(DIM + 1, dtype=np.float32)),
        lambda path: np.save(path, np.full(DIM, np.nan, dtype=np.float32)),
    ],
    ids=["garbage", "wrong-shape", "nan"],
)
def test_corrupt_file_is_encoded_again_with_a_warning(tmp_path, caplog, corrupt):
    expected = TextEmbeddingCache(BagOfBytesEncoder(), cache_dir=tmp_path)(REPORTS)
    path = feature_file(tmp_path, BagOfBytesEncoder(), REPORTS[3])
    corrupt(path)
    cache = TextEmbeddingCache(BagOfBytesEncoder(), cache_dir=tmp_path)
    with caplog.at_level(logging.WARNING, logger="cxrkd_monai.data.text_embedding_cache"):
        features = cache(REPORTS)
    assert cache.encoder_calls == 1
    assert str(path) in caplog.text
    # The re-encoded text went through the encoder alone, the expected features in a batch of five.
    torch.testing.assert_close(features, expected, atol=BATCH_ATOL, rtol=0)
    np.testing.assert_allclose(np.load(path), expected[3].numpy(), atol=BATCH_ATOL, rtol=0)


def test_invalid_arguments_are_rejected():
    with pytest.raises(ValueError, match="batch_size"):
        TextEmbeddingCache(BagOfBytesEncoder(), batch_size=0)
    with pytest.raises(ValueError, match="non-empty sequence"):
        TextEmbeddingCache(BagOfBytesEncoder())([])
    with pytest.raises(ValueError, match="non-empty sequence"):
        TextEmbeddingCache(BagOfBytesEncoder())("one report")


def test_text_with_a_lone_surrogate_is_named_before_anything_is_encoded(tmp_path):
    encoder = BagOfBytesEncoder()
    cache = TextEmbeddingCache(encoder, cache_dir=tmp_path)
    message = r"text 1 of 2 in the batch: text cannot be encoded as UTF-8.*position 5"
    with pytest.raises(InvalidItemError, match=message):
        cache([REPORTS[0], "Left \ud800 effusion."])
    assert encoder.batches == [] and cache.encoder_calls == 0
    with pytest.raises(ValueError, match="strings, got int at position 0"):
        cache([7])
