import json
import logging
import traceback

import numpy as np
import pytest
from monai.bundle import ConfigParser
from monai.transforms import Compose, Lambdad
from PIL import Image

from cxrkd_monai.data import load_datalist
from cxrkd_monai.data.dataset import ItemNamingCacheDataset, datalist_index
from cxrkd_monai.errors import UnreadableImageError
from cxrkd_monai.transforms import LoadCXRd

LOGGER = "cxrkd_monai.data.dataset"


@pytest.fixture
def items(tmp_path):
    """Two datalist items, the second a PNG cut to 60 bytes."""
    pixels = (np.arange(32 * 24).reshape(24, 32) % 256).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "good.png")
    Image.fromarray(pixels).save(tmp_path / "full.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "full.png").read_bytes()[:60])
    return [{"image": str(tmp_path / "good.png")}, {"image": str(tmp_path / "cut.png")}]


def test_cache_fill_error_names_the_item_and_keeps_its_type(items, caplog):
    with caplog.at_level(logging.ERROR, logger=LOGGER), pytest.raises(UnreadableImageError) as error:
        ItemNamingCacheDataset(items, Compose([LoadCXRd("image")]), cache_rate=1.0, progress=False)
    message = str(error.value)
    assert message.startswith(f"Datalist item 1 (image '{items[1]['image']}'): Image file ")
    assert "cut.png' cannot be decoded" in message
    assert error.value.datalist_index == 1
    assert error.value.__cause__ is None and error.value.__suppress_context__
    # The traceback is the loader's own: it ends in the function that raised the original error.
    assert traceback.extract_tb(error.value.__traceback__)[-1].name == "_read_pil"
    assert [record.getMessage() for record in caplog.records] == [f"{message} (UnreadableImageError)"]


def test_uncached_item_error_is_named_when_it_is_read(items):
    dataset = ItemNamingCacheDataset(items, Compose([LoadCXRd("image")]), cache_rate=0.0, progress=False)
    assert dataset[0]["image"].shape == (1, 32, 24)
    with pytest.raises(UnreadableImageError, match=r"^Datalist item 1 \(image '.*cut\.png'\)"):
        dataset[1]
    runtime = ItemNamingCacheDataset(items, Compose([LoadCXRd("image")]), runtime_cache=True, progress=False)
    with pytest.raises(UnreadableImageError, match=r"^Datalist item 1 .*cut\.png' cannot be decoded"):
        runtime[1]


def test_other_errors_are_logged_with_the_item_and_propagate_unchanged(items, caplog):
    def broken(_):
        raise KeyError("a bug, not bad input")

    with caplog.at_level(logging.ERROR, logger=LOGGER), pytest.raises(RuntimeError, match="applying transform"):
        ItemNamingCacheDataset(items[:1], Compose([Lambdad("image", broken)]), progress=False)
    assert "Datalist item 0 (image " in caplog.text and "a bug, not bad input" in caplog.text


def test_bundle_config_error_shows_the_cause_as_the_first_exception(items):
    """``python -m monai.bundle run`` prints MONAI's wrapper last; the cause must be the first exception shown."""
    parser = ConfigParser(
        {
            "dataset": {
                "_target_": "cxrkd_monai.data.dataset.ItemNamingCacheDataset",
                "data": items,
                "transform": {
                    "_target_": "Compose",
                    "transforms": [{"_target_": "cxrkd_monai.transforms.LoadCXRd", "keys": "image"}],
                },
                "progress": False,
            }
        }
    )
    with pytest.raises(RuntimeError, match="Failed to instantiate") as error:
        parser.get_parsed_content("dataset")
    assert isinstance(error.value.__cause__, UnreadableImageError)
    lines = traceback.format_exception(error.value)
    exception_lines = [line for line in "".join(lines).splitlines() if line and not line[0].isspace()]
    assert exception_lines[0] == "Traceback (most recent call last):"
    assert exception_lines[1].startswith("cxrkd_monai.errors.UnreadableImageError: Datalist item 1 (image ")
    # MONAI's "applying transform" wrappers are gone: only the cause and the bundle's own wrapper remain.
    assert sum(line.startswith("RuntimeError") for line in exception_lines) == 1


def test_an_item_of_a_subset_is_named_by_its_index_in_the_datalist(items, tmp_path, caplog):
    """Fracture stages train on subsets of the split: the bad item is the split's item 2, the subset's first."""
    entries = [{"image": items[0]["image"], "subset": "D_N"}, {"image": items[0]["image"], "subset": "D_P"}]
    entries.append({"image": items[1]["image"], "subset": "D_R"})
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"training": entries}))
    subset = load_datalist(str(datalist), "training", subsets=["D_R"], compact=True)
    assert len(subset) == 1 and datalist_index(subset, 0) == 2 and datalist_index(items, 1) == 1
    with caplog.at_level(logging.ERROR, logger=LOGGER), pytest.raises(UnreadableImageError) as error:
        ItemNamingCacheDataset(subset, Compose([LoadCXRd("image")]), cache_rate=1.0, progress=False)
    assert str(error.value).startswith(f"Datalist item 2 (image '{items[1]['image']}'): Image file ")
    assert error.value.datalist_index == 2
    assert caplog.records[0].getMessage().startswith("Datalist item 2 (image ")
