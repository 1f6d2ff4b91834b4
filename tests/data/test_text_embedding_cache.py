import hashlib
import logging
import random

import pytest
import torch
from torch import nn

from cxrkd_monai.data.embedding_store import HEADER_DTYPE, EmbeddingStore, record_dtype
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


def store_file(cache_dir, encoder):
    return cache_dir / sha256(encoder.identity) / "embeddings.bin"


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


def test_second_cache_on_same_directory_encodes_nothing_and_reads_bit_identical_features(tmp_path):
    first = TextEmbeddingCache(BagOfBytesEncoder(), cache_dir=tmp_path)
    expected = first(REPORTS)
    encoder = BagOfBytesEncoder()
    store = store_file(tmp_path, encoder)
    # one file for all reports: a header and one fixed-width record per report
    assert store.stat().st_size == HEADER_DTYPE.itemsize + len(REPORTS) * record_dtype(DIM).itemsize
    assert (tmp_path / sha256(encoder.identity) / "identity.txt").read_text().strip() == encoder.identity
    assert not list(tmp_path.rglob("*.tmp"))

    second = TextEmbeddingCache(encoder, cache_dir=tmp_path)
    features = second(REPORTS[::-1])
    assert features.flip(0).numpy().tobytes() == expected.numpy().tobytes()
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
    assert store_file(tmp_path, shorter).is_file() and store_file(tmp_path, BagOfBytesEncoder()).is_file()
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


def cut_last_record(path):
    path.write_bytes(path.read_bytes()[:-5])


def flip_a_byte_of_record_3(path):
    data = bytearray(path.read_bytes())
    data[HEADER_DTYPE.itemsize + 3 * record_dtype(DIM).itemsize + 40] ^= 0xFF
    path.write_bytes(bytes(data))


def overwrite_header(path):
    data = bytearray(path.read_bytes())
    data[:8] = b"garbage!"
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "corrupt, lost, message",
    [
        (cut_last_record, [4], "ends in a partial record"),
        (flip_a_byte_of_record_3, [3], "record 3 fails its checksum"),
        (overwrite_header, [0, 1, 2, 3, 4], "rebuilding it"),
    ],
    ids=["truncated", "flipped-byte", "bad-header"],
)
def test_damaged_store_is_repaired_with_a_warning_and_only_lost_texts_are_encoded(
    tmp_path, caplog, corrupt, lost, message
):
    expected = TextEmbeddingCache(BagOfBytesEncoder(), cache_dir=tmp_path)(REPORTS)
    path = store_file(tmp_path, BagOfBytesEncoder())
    corrupt(path)
    encoder = BagOfBytesEncoder()
    cache = TextEmbeddingCache(encoder, cache_dir=tmp_path)
    with caplog.at_level(logging.WARNING, logger="cxrkd_monai.data.embedding_store"):
        features = cache(REPORTS)
    assert message in caplog.text and str(path) in caplog.text
    assert encoder.batches == [[REPORTS[index] for index in lost]]
    # Re-encoded texts went through the encoder in another batch composition than the expected features.
    torch.testing.assert_close(features, expected, atol=BATCH_ATOL, rtol=0)
    kept = [index for index in range(len(REPORTS)) if index not in lost]
    assert features[kept].numpy().tobytes() == expected[kept].numpy().tobytes()

    reopened = TextEmbeddingCache(BagOfBytesEncoder(), cache_dir=tmp_path)
    assert reopened(REPORTS).numpy().tobytes() == features.numpy().tobytes()
    assert reopened.encoder_calls == 0


def test_100k_items_encode_each_of_1k_unique_reports_once(tmp_path):
    unique = [f"Report {index}: {'left' if index % 2 else 'right'} lower lobe opacity." for index in range(1000)]
    rng = random.Random(0)
    items = unique + [rng.choice(unique) for _ in range(99_000)]
    rng.shuffle(items)
    encoder = BagOfBytesEncoder()
    cache = TextEmbeddingCache(encoder, cache_dir=tmp_path)
    batch_size = 30
    checked = {}
    for start in range(0, len(items), batch_size):
        texts = items[start : start + batch_size]
        features = cache(texts)
        if start % 3000 == 0:
            checked.update(zip(texts, features))
    encoded = [text for batch in encoder.batches for text in batch]
    assert len(encoded) == len(set(encoded)) == len(unique) and set(encoded) == set(unique)
    assert cache.encoder_calls == len(unique) and cache.hits == len(items) - len(unique)
    with torch.no_grad():
        reference = encoder.projection(byte_counts(list(checked), MAX_LENGTH))
    torch.testing.assert_close(torch.stack(list(checked.values())), reference, atol=BATCH_ATOL, rtol=0)
    store = EmbeddingStore(store_file(tmp_path, encoder), DIM)
    store.refresh()
    assert len(store) == len(unique)


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
