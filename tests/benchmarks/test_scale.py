"""The scale benchmarks: repeated items, the 377k extrapolation, text-encoder counts, and the memory slope.

Memory figures are asserted (they are amounts, not timings); no assertion depends on how fast anything ran.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import text_cache_scale
from benchmarks.memory_scaling import extrapolate
from benchmarks.report import Figure, GroupReport, Target, merge_groups, read_groups, write_json
from benchmarks.scale_items import SourceSet, write_repeated_items, write_vkd_datalist
from benchmarks.settings import QUICK
from benchmarks.timing import Summary

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_extrapolate_is_the_least_squares_line():
    assert extrapolate([100, 200], [10.0, 12.0], 1000) == pytest.approx((28.0, 0.02), rel=1e-12)
    # Three points off a line, x = 1, 2, 3 (mean 2), y = 1, 3, 2 (mean 2):
    # slope = sum((x - 2)(y - 2)) / sum((x - 2)^2) = (1 + 0 + 0) / 2 = 0.5, intercept 2 - 0.5 * 2 = 1.
    assert extrapolate([1, 2, 3], [1.0, 3.0, 2.0], 10) == pytest.approx((6.0, 0.5), rel=1e-12)
    with pytest.raises(ValueError, match="two or more distinct sizes"):
        extrapolate([5, 5], [1.0, 2.0], 10)


def test_repeated_items_are_distinct_names_for_the_cycled_sources(tmp_path):
    sources = []
    for index in range(3):
        source = tmp_path / f"source{index}.png"
        source.write_bytes(bytes([index]) * (index + 5))
        sources.append({"image": str(source), "report": f"report {index}", "label": [index % 2]})
    source_set = SourceSet("phantom", sources, ["finding"], "three byte strings")

    small = write_repeated_items(source_set, tmp_path / "items", 1001)
    large = write_repeated_items(source_set, tmp_path / "items", 2500)
    assert large[:1001] == small  # nested sizes: the larger dataset extends the smaller one
    names = [item["image"] for item in large]
    assert len(set(names)) == 2500
    assert names[0].endswith("0000/0000000.png") and names[1000].endswith("0001/0001000.png")
    for index in (0, 1, 2, 1000, 2499):
        source = sources[index % 3]
        assert Path(names[index]).read_bytes() == Path(source["image"]).read_bytes()
        assert large[index]["report"] == source["report"] and large[index]["label"] == source["label"]
    with pytest.raises(ValueError, match="count"):
        write_repeated_items(source_set, tmp_path / "items", 0)

    datalist = json.loads(write_vkd_datalist(large[:10], ["finding"], tmp_path / "d" / "datalist.json").read_text())
    assert len(datalist["training"]) == 10 and datalist["validation"] == large[:2]


def test_text_encoder_is_called_once_per_unique_report_over_epochs_and_runs(tmp_path):
    report = text_cache_scale.run(QUICK, tmp_path)
    figures = {figure.key: figure.summary.median for figure in report.figures}
    # Counted, not timed: 2 epochs of the first run and 1 of a second run on the same folder.
    assert figures["text_encoder_calls_per_unique_report_at_scale"] == 1.0
    assert figures["text_encoder_calls_per_unique_report_two_runs"] == 1.0
    counts = json.loads((tmp_path / "counts.json").read_text())
    assert counts["first_run"] > 0 and counts["second_run"] == 0


@pytest.mark.slow
def test_quick_mode_memory_slope_is_flat_for_the_cache_and_not_for_cache_dataset(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--only", "memory_scaling", "--work-dir", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    (group, _gpu) = json.loads((tmp_path / "results.json").read_text())["groups"]
    figures = {figure["key"]: figure["summary"]["median"] for figure in group["figures"]}
    small, large = QUICK.scale_sizes
    assert large >= 4 * small
    # At these sizes a process holds about 650 MiB before any item (torch, MONAI, the package), so 1.1 leaves
    # room for 65 MiB over 3,000 extra items, about 22 KiB an item: the datalist and the cache's index fit in
    # it (about 2 KiB an item), while any image kept in RAM would not (a 224 px image is 49 KiB as uint8,
    # 98 KiB as uint16 and 196 KiB as float32).
    assert figures[f"peak_rss_ratio_cache_{large}"] <= 1.10
    # The baseline really holds every item in RAM: its peak grows by at least most of a float32 item per item.
    low, high = QUICK.default_path_sizes
    growth_kib = (figures[f"peak_rss_mib_cache_dataset_{high}"] - figures[f"peak_rss_mib_cache_dataset_{low}"]) * 1024
    float32_item_kib = QUICK.scale_image_size**2 * 4 / 1024
    assert growth_kib / (high - low) >= 0.75 * float32_item_kib
    assert (
        figures["peak_rss_gib_cache_dataset_377k_extrapolated"] > 10 * figures["peak_rss_gib_cache_377k_extrapolated"]
    )


def test_a_partial_run_keeps_the_other_groups_of_the_published_results(tmp_path):
    earlier = [
        GroupReport("vkd_cost", "VKD", [Figure("a", "a", "ratio", Summary.of([1.0, 2.0]), Target(">=", 0.9))]),
        GroupReport("memory_scaling", "old memory", [Figure.not_measured("b", "b", "MiB", "stale")]),
    ]
    write_json(tmp_path / "results.json", "full", {}, earlier, [])
    read_back = read_groups(tmp_path / "results.json")
    assert [group.as_dict() for group in read_back] == [group.as_dict() for group in earlier]
    assert read_groups(tmp_path / "absent.json") == []

    current = [GroupReport("memory_scaling", "new memory", [Figure("c", "c", "MiB", Summary.of([5.0]))])]
    order = ["vkd_cost", "training_loop", "memory_scaling", "gpu"]
    merged, carried = merge_groups(read_back, [*current, GroupReport("gpu", "GPU")], order)
    assert [group.title for group in merged] == ["VKD", "new memory", "GPU"]
    assert carried == ["vkd_cost"]
    assert merged[0].figures[0].target == Target(">=", 0.9) and merged[0].figures[0].meets_target is True
