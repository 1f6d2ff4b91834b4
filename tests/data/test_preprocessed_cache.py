"""The persistent preprocessed cache: equal items to the in-memory path, killed and corrupt builds, edits."""

import os
import pickle
import pickletools
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import DataLoader, MetaTensor
from monai.transforms import Compose, RandFlipd
from monai.utils import TraceKeys, set_determinism
from PIL import Image

from cxrkd_monai.data import (
    CachedPreprocessingd,
    PreprocessedCacheDataset,
    build_preprocessed_cache,
    cached_preprocessing,
    preprocessed_cache_builder,
    preprocessed_store,
)
from cxrkd_monai.data.data_record import RECORD_MAGIC, decode_data
from cxrkd_monai.data.dataset import ItemNamingCacheDataset
from cxrkd_monai.data.preprocessed_record import dequantise_image, quantise_image
from cxrkd_monai.data.preprocessed_store import PreprocessedStore
from cxrkd_monai.errors import UnreadableImageError
from cxrkd_monai.transforms import Letterboxd, LoadCXRd
from cxrkd_monai.transforms.fracture_annotations import EncodeFractureAnnotationsd
from tests.data.conftest import assert_identical

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
CLASSES = ["rib_fracture", "clavicle_fracture"]
FRACTURE_KEYS = ["boxes", "points", "image_label", "subset"]
# uint16 storage: round(65535 v) / 65535 is within half a level of v, plus the float32 rounding of the division.
UINT16_TOLERANCE = 0.5 / 65535 + 2.0**-24


def letterbox_chain(size=32):
    return [LoadCXRd("image"), Letterboxd("image", [size, size])]


def fracture_chain(size=32):
    return [
        LoadCXRd("image"),
        EncodeFractureAnnotationsd(class_names=CLASSES),
        Letterboxd("image", [size, size], box_keys="boxes", point_keys="points"),
    ]


def write_png(path: Path, seed: int, shape=(40, 30), dtype=np.uint8) -> str:
    rng = np.random.default_rng(seed)
    maximum = np.iinfo(dtype).max
    Image.fromarray((rng.random(shape) * maximum).astype(dtype)).save(path)
    return str(path)


def make_items(folder: Path, count: int, fracture: bool = False) -> list[dict]:
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for index in range(count):
        item = {"image": write_png(folder / f"p{index:03d}.png", seed=index, shape=(40 + index, 30)), "label": [index]}
        if fracture:
            item.update(
                subset="D_R", image_label=[1, 0], boxes=[[2, 3, 10 + index, 12, "rib_fracture"]],
                points=[[5.5, 7, "rib_fracture"]],
            )  # fmt: skip
        items.append(item)
    return items


def assert_same_item(cached: dict, reference: dict, tolerance: float = 0.0) -> None:
    """Every key equal; the image within ``tolerance`` and with the same meta and traced operations."""
    assert cached.keys() == reference.keys()
    for key, expected in reference.items():
        value = cached[key]
        if isinstance(expected, MetaTensor):
            assert isinstance(value, MetaTensor) and value.dtype == expected.dtype and value.shape == expected.shape
            assert float((value - expected).abs().max()) <= tolerance
            assert value.meta.keys() == expected.meta.keys()
            for meta_key, meta_value in expected.meta.items():
                np.testing.assert_array_equal(np.asarray(value.meta[meta_key]), np.asarray(meta_value))
            strip = [{k: v for k, v in op.items() if k != "id"} for op in expected.applied_operations]
            assert [{k: v for k, v in op.items() if k != "id"} for op in value.applied_operations] == strip
        elif isinstance(expected, torch.Tensor):
            assert torch.equal(value, expected) and value.dtype == expected.dtype
        elif isinstance(expected, np.ndarray):
            assert value.dtype == expected.dtype
            np.testing.assert_array_equal(value, expected)
        else:
            assert value == expected


def records(cache_dir: Path, cached: CachedPreprocessingd, items: list[dict]) -> dict[str, bytes]:
    """The stored bytes of each item's entry, read by a fresh store."""
    store = PreprocessedStore(cache_dir, cached.store.settings_digest)
    return {item["image"]: store.read(cached.entry_key(item)) for item in items}


def stored_image(payload: bytes) -> np.ndarray:
    """The image array of a record as it is stored (before :func:`dequantise_image`)."""
    return decode_data(payload)["output"]["image"]


# ------------------------------------------------------------------------------------------------ storage rule
@pytest.mark.parametrize("exact", [True, False])
def test_storage_rule_integers_when_exact_else_float32_or_uint16_within_half_a_level(exact):
    grid8 = np.arange(256, dtype=np.float64).reshape(16, 16) / 255
    stored, levels = quantise_image(grid8.astype(np.float32), exact)
    assert stored.dtype == np.uint8 and levels == 255
    assert np.array_equal(dequantise_image(stored, levels), grid8.astype(np.float32))
    grid16 = (np.arange(0, 65536, 257, dtype=np.float64)[:255].reshape(15, 17) + 1) / 65535
    stored, levels = quantise_image(grid16.astype(np.float32), exact)
    assert stored.dtype == np.uint16 and np.array_equal(dequantise_image(stored, levels), grid16.astype(np.float32))

    averaged = ((grid8[:, :-1] + grid8[:, 1:]) / 2 + 1e-3).astype(np.float32)  # an area resize: on no grid
    stored, levels = quantise_image(averaged, exact)
    if exact:
        assert stored.dtype == np.float32 and levels == 0 and np.array_equal(stored, averaged)
    else:
        assert stored.dtype == np.uint16 and levels == 65535
        assert np.abs(dequantise_image(stored, levels) - averaged).max() <= UINT16_TOLERANCE

    outside = np.array([[-0.25, 1.5]], dtype=np.float32)
    stored, levels = quantise_image(outside, exact)
    assert stored.dtype == np.float32 and levels == 0 and np.array_equal(stored, outside)


@pytest.mark.parametrize(("storage", "tolerance"), [("exact", 0.0), ("uint16", UINT16_TOLERANCE)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_cached_item_equals_the_in_memory_chain(tmp_path, dtype, storage, tolerance):
    source = write_png(tmp_path / "a.png", seed=1, shape=(45, 31), dtype=dtype)
    item = {"image": source, "label": [1.0, 0.0], "report": "text"}
    chain = letterbox_chain()
    cached = CachedPreprocessingd(chain, tmp_path / "cache", image_storage=storage)
    built = cached(dict(item))  # computes and stores
    read = CachedPreprocessingd(chain, tmp_path / "cache", image_storage=storage)(dict(item))  # another process
    reference = Compose(chain)(dict(item))
    assert_same_item(built, reference, tolerance)
    assert_same_item(read, reference, tolerance)
    assert cached.rebuilt_count == 1
    stored = stored_image(records(tmp_path / "cache", cached, [item])[source])
    assert stored.dtype == (np.float32 if storage == "exact" else np.uint16)  # resampled: on no integer grid


def test_padded_only_8_bit_image_is_stored_as_uint8_and_read_back_bit_for_bit(tmp_path):
    source = write_png(tmp_path / "a.png", seed=2, shape=(24, 32))  # 32 x 24 (W x H) into 32 x 32: no resize
    item = {"image": source}
    cached = CachedPreprocessingd(letterbox_chain(32), tmp_path / "cache")
    cached(dict(item))
    stored_array = stored_image(records(tmp_path / "cache", cached, [item])[source])
    assert stored_array.dtype == np.uint8 and stored_array.shape == (1, 32, 32)
    assert_same_item(cached(dict(item)), Compose(letterbox_chain(32))(dict(item)), tolerance=0.0)


def test_fracture_annotations_travel_with_the_cached_item(tmp_path):
    items = make_items(tmp_path / "images", 3, fracture=True)
    cached = CachedPreprocessingd(fracture_chain(), tmp_path / "cache", item_keys=FRACTURE_KEYS)
    report = build_preprocessed_cache(items, cached, progress=False)
    assert report.built == 3
    for item in items:
        out = cached(dict(item, patient_id="p"))
        assert_same_item(out, Compose(fracture_chain())(dict(item, patient_id="p")))
        assert out["boxes"].shape == (1, 5) and out["subset_index"].item() == 0
    assert cached.rebuilt_count == 0


def test_a_moved_data_set_keeps_its_entries_and_names_the_new_path(tmp_path):
    items = make_items(tmp_path / "old", 2)
    cached = CachedPreprocessingd(letterbox_chain(), tmp_path / "cache")
    build_preprocessed_cache(items, cached, progress=False)
    shutil.copytree(tmp_path / "old", tmp_path / "new")
    moved = [dict(item, image=item["image"].replace("/old/", "/new/")) for item in items]
    report = build_preprocessed_cache(moved, cached, progress=False)
    assert (report.hashed, report.built, report.reused) == (2, 0, 2)
    assert cached(dict(moved[0]))["image"].meta["filename_or_obj"] == moved[0]["image"]


# ----------------------------------------------------------------------------------------- interrupted build
KILLED_BUILD = """
import os, sys
from pathlib import Path
sys.path[:0] = [{tests!r}, {root!r}]
from test_preprocessed_cache import letterbox_chain, make_items
from cxrkd_monai.data import preprocessed_cache_builder, preprocessed_store
from cxrkd_monai.data import CachedPreprocessingd, build_preprocessed_cache

fsync, committed = os.fsync, []
def fsync_then_pause_on_the_third_shard(descriptor):
    fsync(descriptor)
    if os.readlink(f"/proc/self/fd/{{descriptor}}").endswith(".bin.tmp"):
        committed.append(descriptor)
        if len(committed) == 3:  # the third shard's records are on disk, not yet committed
            print("paused", flush=True)
            sys.stdin.read()
preprocessed_store.os.fsync = fsync_then_pause_on_the_third_shard
preprocessed_cache_builder.SHARD_SIZE = 2
items = make_items(Path({images!r}), 6)
build_preprocessed_cache(items, CachedPreprocessingd(letterbox_chain(), {cache!r}), progress=False)
"""


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="the kill point is found through /proc/self/fd")
def test_build_killed_mid_write_resumes_to_byte_identical_entries(tmp_path):
    script = KILLED_BUILD.format(
        tests=str(Path(__file__).parent), root=str(Path(__file__).parents[2]), images=str(tmp_path / "images"),
        cache=str(tmp_path / "killed"),
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "paused"
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    items = make_items(tmp_path / "images", 6)  # the same files, rewritten with the same bytes
    cached = CachedPreprocessingd(letterbox_chain(), tmp_path / "killed")
    orphans = list(cached.store.entries_dir.glob(".*.tmp"))
    assert len(orphans) == 1  # the uncommitted third shard
    assert len(cached.store) == 4  # two committed shards of two; the third is never read

    report = build_preprocessed_cache(items, cached, progress=False)
    assert (report.built, report.reused) == (2, 4)
    assert not list(cached.store.entries_dir.glob(".*.tmp"))
    fresh = CachedPreprocessingd(letterbox_chain(), tmp_path / "uninterrupted")
    assert build_preprocessed_cache(items, fresh, progress=False).built == 6
    resumed_bytes = records(tmp_path / "killed", cached, items)
    fresh_bytes = records(tmp_path / "uninterrupted", fresh, items)
    assert all(payload is not None for payload in resumed_bytes.values())
    assert resumed_bytes == fresh_bytes


def corrupt_two_shards(store: PreprocessedStore) -> None:
    """Truncate one shard and flip a byte in the middle of another."""
    shards = sorted(store.entries_dir.glob("shard-*.bin"))
    with open(shards[0], "r+b") as handle:
        handle.truncate(shards[0].stat().st_size - 7)
    data = bytearray(shards[1].read_bytes())
    data[len(data) // 2] ^= 0xFF
    shards[1].write_bytes(bytes(data))


def test_truncated_or_corrupted_entries_are_rebuilt_never_read(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(preprocessed_cache_builder, "SHARD_SIZE", 1)
    items = make_items(tmp_path / "images", 3)
    chain = letterbox_chain()
    assert build_preprocessed_cache(items, CachedPreprocessingd(chain, tmp_path / "cache"), progress=False).built == 3
    corrupt_two_shards(CachedPreprocessingd(chain, tmp_path / "cache").store)

    reader = CachedPreprocessingd(chain, tmp_path / "cache")
    for item in items:
        assert_same_item(reader(dict(item)), Compose(chain)(dict(item)))
    assert (reader.store.corrupt_count, reader.rebuilt_count) == (2, 2)
    assert caplog.text.count("it is rebuilt, not read") == 2
    later = CachedPreprocessingd(chain, tmp_path / "cache")  # the rebuilt records are newer and win
    for item in items:
        later(dict(item))
    assert (later.store.corrupt_count, later.rebuilt_count) == (0, 0)


def test_verifying_build_rebuilds_corrupt_entries_and_counts_them(tmp_path, monkeypatch):
    monkeypatch.setattr(preprocessed_cache_builder, "SHARD_SIZE", 1)
    items = make_items(tmp_path / "images", 3)
    cached = CachedPreprocessingd(letterbox_chain(), tmp_path / "cache")
    build_preprocessed_cache(items, cached, progress=False)
    corrupt_two_shards(cached.store)
    report = build_preprocessed_cache(items, CachedPreprocessingd(letterbox_chain(), tmp_path / "cache"),
                                      verify=True, progress=False)  # fmt: skip
    assert (report.rebuilt_corrupt, report.built, report.reused) == (2, 2, 1)
    checked = CachedPreprocessingd(letterbox_chain(), tmp_path / "cache")
    assert build_preprocessed_cache(items, checked, verify=True, progress=False).rebuilt_corrupt == 0


# ------------------------------------------------------------------------------------------------------ edits
def test_edits_rebuild_exactly_the_affected_entries(tmp_path):
    items = make_items(tmp_path / "images", 4, fracture=True)
    cache = tmp_path / "cache"

    def build(size=32, data=items):
        step = CachedPreprocessingd(fracture_chain(size), cache, item_keys=FRACTURE_KEYS)
        report = build_preprocessed_cache(data, step, progress=False)
        return report.hashed, report.built, report.reused

    assert build() == (4, 4, 0)
    assert build() == (0, 0, 4)
    assert build(size=40) == (0, 4, 0)  # new settings: every entry is affected
    assert build(size=32) == (0, 0, 4)  # the earlier setting's entries are still there

    write_png(Path(items[1]["image"]), seed=99, shape=(40, 30))  # new pixels in one source
    assert build() == (1, 1, 3)
    rewritten = Path(items[2]["image"]).read_bytes()
    Path(items[2]["image"]).write_bytes(rewritten)  # same bytes, new mtime: hashed again, not rebuilt
    os.utime(items[2]["image"], ns=(0, 10**9))
    assert build() == (1, 0, 4)

    edited = [dict(item) for item in items]
    edited[3]["boxes"] = [[1, 1, 5, 5, "clavicle_fracture"]]  # an annotation the chain encodes
    assert build(data=edited) == (0, 1, 3)
    edited[0]["label"] = [7]  # a field the chain does not read
    assert build(data=edited) == (0, 0, 4)


def test_build_in_chunks_builds_each_entry_once_and_counts_across_chunks(tmp_path, monkeypatch):
    """Chunks of 3 items; the same image listed under several names lands in different chunks."""
    monkeypatch.setattr(preprocessed_cache_builder, "BUILD_CHUNK_ITEMS", 3)
    sources = make_items(tmp_path / "images", 4)
    items = [dict(sources[index % 4]) for index in range(10)]  # items 4-9 repeat the four sources
    cached = CachedPreprocessingd(letterbox_chain(), tmp_path / "cache")
    report = build_preprocessed_cache(items, cached, progress=False)
    assert (report.items, report.entries, report.built, report.reused, report.hashed) == (10, 4, 4, 0, 4)
    assert len(PreprocessedStore(tmp_path / "cache", cached.store.settings_digest)) == 4
    again = build_preprocessed_cache(items, cached, progress=False)
    assert (again.entries, again.built, again.reused, again.hashed) == (4, 0, 4, 0)
    unchunked = CachedPreprocessingd(letterbox_chain(), tmp_path / "unchunked")
    monkeypatch.setattr(preprocessed_cache_builder, "BUILD_CHUNK_ITEMS", 1000)
    build_preprocessed_cache(items, unchunked, progress=False)
    assert records(tmp_path / "cache", cached, sources) == records(tmp_path / "unchunked", unchunked, sources)


# ---------------------------------------------------------------------------------------------------- dataset
def training_chain(cached):
    return Compose([cached, RandFlipd("image", prob=0.5, spatial_axis=0)])


def test_dataset_reads_the_cache_with_augmentation_per_item_and_cache_rate_still_works(tmp_path):
    items = make_items(tmp_path / "images", 6)
    chain = letterbox_chain()

    def epoch(dataset, num_workers=0):
        set_determinism(seed=0)
        dataset.transform.set_random_state(seed=0)
        loader = DataLoader(dataset, batch_size=3, num_workers=num_workers, shuffle=False)
        return torch.cat([batch["image"] for batch in loader])

    from_disk = PreprocessedCacheDataset(items, training_chain(CachedPreprocessingd(chain, tmp_path / "cache")),
                                         cache_rate=0.0, num_workers=0, progress=False)  # fmt: skip
    assert from_disk.build_report.built == 6
    in_ram = PreprocessedCacheDataset(items, training_chain(CachedPreprocessingd(chain, tmp_path / "cache")),
                                      cache_rate=1.0, num_workers=0, progress=False)  # fmt: skip
    assert in_ram.build_report.reused == 6
    in_memory = ItemNamingCacheDataset(items, Compose([*chain, RandFlipd("image", prob=0.5, spatial_axis=0)]),
                                       cache_rate=1.0, num_workers=0)  # fmt: skip
    reference = epoch(in_memory)
    assert torch.equal(epoch(from_disk), epoch(in_ram))
    assert torch.equal(epoch(from_disk), reference)  # exact storage: the in-memory epoch bit for bit
    plain = torch.stack([CachedPreprocessingd(chain, tmp_path / "cache")(dict(item))["image"] for item in items])
    augmented = epoch(from_disk)
    flipped = [torch.equal(a, b.flip(1)) and not torch.equal(a, b) for a, b in zip(augmented, plain)]
    kept = [torch.equal(a, b) for a, b in zip(augmented, plain)]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)  # drawn per item at load
    assert torch.equal(epoch(from_disk, num_workers=2), epoch(from_disk, num_workers=2))


def test_build_in_worker_processes_gives_the_same_records(tmp_path):
    items = make_items(tmp_path / "images", 4)
    parallel = CachedPreprocessingd(letterbox_chain(), tmp_path / "parallel")
    serial = CachedPreprocessingd(letterbox_chain(), tmp_path / "serial")
    assert build_preprocessed_cache(items, parallel, num_workers=2, progress=False).built == 4
    assert build_preprocessed_cache(items, serial, num_workers=0, progress=False).built == 4
    assert len(list(parallel.store.entries_dir.glob("shard-*.idx.npy"))) == 2  # one shard per worker
    assert records(tmp_path / "parallel", parallel, items) == records(tmp_path / "serial", serial, items)


def test_unreadable_source_is_counted_and_left_to_the_loader_which_names_it(tmp_path):
    items = make_items(tmp_path / "images", 2)
    (tmp_path / "images" / "broken.png").write_bytes(b"not a png")
    items.append({"image": str(tmp_path / "images" / "broken.png"), "label": [0]})
    items.append({"image": str(tmp_path / "images" / "missing.png"), "label": [0]})
    dataset = PreprocessedCacheDataset(items, CachedPreprocessingd(letterbox_chain(), tmp_path / "cache"),
                                       num_workers=0, progress=False)  # fmt: skip
    assert dataset.build_report.built == 2 and sorted(index for index, _ in dataset.build_report.failed) == [2, 3]
    for index, name in ((2, "broken.png"), (3, "missing.png")):
        with pytest.raises(Exception, match=name):
            dataset[index]


def test_random_transform_before_the_cached_step_is_refused(tmp_path):
    cached = CachedPreprocessingd(letterbox_chain(), tmp_path / "cache")
    with pytest.raises(ValueError, match="RandFlipd"):
        build_preprocessed_cache([], Compose([RandFlipd("image", prob=0.5), cached]))
    with pytest.raises(ValueError, match="random"):
        CachedPreprocessingd([RandFlipd("image", prob=0.5)], tmp_path / "cache")
    with pytest.raises(ValueError, match="holds no CachedPreprocessingd"):
        build_preprocessed_cache([], Compose(letterbox_chain()))


def test_without_a_cached_step_the_dataset_is_the_in_memory_path(tmp_path):
    items = make_items(tmp_path / "images", 2)
    dataset = PreprocessedCacheDataset(items, Compose(letterbox_chain()), cache_rate=1.0, num_workers=0)
    assert dataset.build_report is None and not (tmp_path / "cache").exists()
    assert_same_item(dataset[1], Compose(letterbox_chain())(dict(items[1])), tolerance=0.0)


# -------------------------------------------------------------------------------------------------- real files
@pytest.mark.skipif(not (SHARED_DATA / "cxr_format_samples").is_dir(), reason="shared real-data folder is absent")
def test_real_dicom_png_and_jpeg_files_match_the_in_memory_path(tmp_path):
    samples = SHARED_DATA / "cxr_format_samples"
    sources = [
        samples / "pydicom_data_RG1_UNCI_cr_chest.dcm",  # 15-bit MONOCHROME1 CR, 1955 x 1841
        samples / "siim_cr_chest_pa_jpegbaseline.dcm",  # 8-bit JPEG Baseline DICOM
        samples / "nih_00000001_000.png",
    ]
    fracatlas = sorted((SHARED_DATA / "fracatlas_dev" / "images").glob("*.jpg"))[:2]
    items = [{"image": str(path)} for path in sources + fracatlas if path.is_file()]
    assert len(items) >= 3
    chain = [LoadCXRd("image"), Letterboxd("image", [224, 224])]
    cached = CachedPreprocessingd(chain, tmp_path / "cache")
    report = build_preprocessed_cache(items, cached, num_workers=0, progress=False)
    assert (report.built, report.failed) == (len(items), [])
    assert build_preprocessed_cache(items, cached, progress=False).reused == len(items)
    for item in items:
        assert_same_item(cached(dict(item)), Compose(chain)(dict(item)), tolerance=0.0)
    assert cached.rebuilt_count == 0
    compact = CachedPreprocessingd(chain, tmp_path / "compact", image_storage="uint16")
    assert build_preprocessed_cache(items, compact, progress=False).built == len(items)
    for item in items:
        assert_same_item(compact(dict(item)), Compose(chain)(dict(item)), UINT16_TOLERANCE)
    sizes = [len(payload) for payload in records(tmp_path / "compact", compact, items).values()]
    assert max(sizes) < 224 * 224 * 2 + 4096  # uint16 pixels and a few KB of metadata


# -------------------------------------------------------------------------------------------------- data only
class WritesMarker:
    """Unpickled, creates ``marker``: a stand-in for code planted in a shared cache folder."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def planted_pickle(marker: Path) -> bytes:
    return pickle.dumps({"image": WritesMarker(marker), "geometry": torch.zeros(4, 2)}, protocol=5)


def test_the_planted_pickle_would_run_code(tmp_path):
    """The premise of the tests below: reading the planted record with pickle runs its code."""
    pickle.loads(planted_pickle(tmp_path / "proof"))
    assert (tmp_path / "proof").exists()


def test_records_are_data_only_and_round_trip_the_chain_output_bit_for_bit(tmp_path, monkeypatch):
    items = make_items(tmp_path / "images", 3, fracture=True)
    cached = CachedPreprocessingd(fracture_chain(), tmp_path / "cache", item_keys=FRACTURE_KEYS)
    assert build_preprocessed_cache(items, cached, progress=False).built == 3
    for payload in records(tmp_path / "cache", cached, items).values():
        assert payload.startswith(RECORD_MAGIC) and payload[:1] != b"\x80"  # no pickle PROTO opcode
        with pytest.raises(ValueError, match="at position 0"):
            list(pickletools.genops(payload))

    def no_unpickling(*args, **kwargs):
        raise AssertionError("the cache unpickled something")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, no_unpickling)
    monkeypatch.setattr(torch, "load", no_unpickling)
    reader = CachedPreprocessingd(fracture_chain(), tmp_path / "cache", item_keys=FRACTURE_KEYS)
    for item in items:
        read, reference = reader(dict(item)), Compose(fracture_chain())(dict(item))
        expected = {**reference, "image": reference["image"].as_tensor()}
        assert_identical({**read, "image": read["image"].as_tensor()}, expected)
        assert_identical(dict(read["image"].meta), dict(reference["image"].meta))
        operations = [{**op, TraceKeys.ID: TraceKeys.NONE} for op in reference["image"].applied_operations]
        assert_identical(read["image"].applied_operations, operations)
    assert (reader.rebuilt_count, reader.store.corrupt_count) == (0, 0)


def test_a_planted_pickle_is_refused_naming_its_file_never_run_and_rebuilt(tmp_path, caplog):
    items = make_items(tmp_path / "images", 2)
    chain, marker = letterbox_chain(), tmp_path / "marker"
    cached = CachedPreprocessingd(chain, tmp_path / "cache")
    build_preprocessed_cache(items, cached, progress=False)
    key = cached.entry_key(items[0])
    cached.store.write_shard([(key, planted_pickle(marker))])  # a valid CRC: the newest record of the entry
    planted_shard = max(cached.store.entries_dir.glob("shard-*.bin"))

    reader = CachedPreprocessingd(chain, tmp_path / "cache")
    for item in items:
        assert_same_item(reader(dict(item)), Compose(chain)(dict(item)))
    assert not marker.exists()
    assert (reader.store.corrupt_count, reader.rebuilt_count) == (1, 1)
    assert f"{key.hex()} in {planted_shard} is not a data record" in caplog.text
    assert "(a pickle stream)" in caplog.text and "it is rebuilt, not read" in caplog.text
    later = CachedPreprocessingd(chain, tmp_path / "cache")  # the rebuilt record is newer and wins
    later(dict(items[0]))
    assert (later.store.corrupt_count, later.rebuilt_count) == (0, 0)

    cached.store.write_shard([(key, planted_pickle(marker))])
    report = build_preprocessed_cache(items, CachedPreprocessingd(chain, tmp_path / "cache"), verify=True,
                                      progress=False)  # fmt: skip
    assert (report.rebuilt_corrupt, report.built, report.reused) == (1, 1, 1)
    assert not marker.exists()


def test_a_cache_of_the_old_pickle_format_is_not_read_and_is_rebuilt(tmp_path, monkeypatch, caplog):
    items = make_items(tmp_path / "images", 2)
    chain, marker = letterbox_chain(), tmp_path / "marker"
    with monkeypatch.context() as old_version:  # the layout of format 1, whose records were pickles
        old_version.setattr(preprocessed_store, "FORMAT_VERSION", 1)
        old_version.setattr(cached_preprocessing, "FORMAT_VERSION", 1)
        old = CachedPreprocessingd(chain, tmp_path / "cache")
        old.store.write_shard([(old.entry_key(item), planted_pickle(marker)) for item in items])
    assert old.store.entries_dir.name.startswith("v1-")

    caplog.set_level("INFO", logger=preprocessed_cache_builder.__name__)
    cached = CachedPreprocessingd(chain, tmp_path / "cache")
    assert cached.store.entries_dir.name.startswith(f"v{preprocessed_store.FORMAT_VERSION}-")
    report = build_preprocessed_cache(items, cached, progress=False)
    assert (report.built, report.reused) == (2, 0)
    for item in items:
        assert_same_item(cached(dict(item)), Compose(chain)(dict(item)))
    assert not marker.exists() and cached.store.corrupt_count == 0
    old_folder = old.store.entries_dir.name
    assert f"1 folder(s) of another record format in {tmp_path / 'cache'} are not read ({old_folder})" in caplog.text


def test_a_truncated_image_gives_the_loaders_message_in_the_build_report_and_on_read(tmp_path, caplog):
    items = make_items(tmp_path / "images", 1)
    whole = Path(items[0]["image"]).read_bytes()
    truncated = tmp_path / "images" / "truncated.png"
    truncated.write_bytes(whole[: len(whole) // 2])
    items.append({"image": str(truncated)})
    with pytest.raises(UnreadableImageError) as loaded:
        LoadCXRd("image")({"image": str(truncated)})
    expected = f"UnreadableImageError: {loaded.value}"
    assert "image file is truncated" in expected and str(truncated) in expected

    dataset = PreprocessedCacheDataset(items, CachedPreprocessingd(letterbox_chain(), tmp_path / "cache"),
                                       num_workers=0, progress=False)  # fmt: skip
    assert dataset.build_report.failed == [(1, expected)]
    assert f"item 1: {expected}" in caplog.text and "unpack_from" not in caplog.text
    with pytest.raises(UnreadableImageError, match="image file is truncated"):
        dataset[1]
