"""The benchmark harness: its statistics, its memory probe, and the files its quick mode writes.

No assertion here depends on how fast anything ran.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import run as harness
from benchmarks.report import GENERATED_MARKER, Figure, Target
from benchmarks.settings import QUICK
from benchmarks.timing import Summary, interleaved_times, peak_tensor_memory_bytes, per_repeat_ratios

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_summary_matches_hand_computed_quartiles():
    summary = Summary.of([4.0, 1.0, 2.0, 8.0, 3.0])
    # sorted 1 2 3 4 8; inclusive quartiles at positions 1 and 3 of 0..4
    assert (summary.median, summary.q1, summary.q3) == (3.0, 2.0, 4.0)
    assert (summary.minimum, summary.maximum, summary.repeats) == (1.0, 8.0, 5)
    assert Summary.of([2.0, 5.0]) == Summary(3.5, 2.75, 4.25, 2.0, 5.0, 2)
    assert Summary.of([7.0]) == Summary(7.0, 7.0, 7.0, 7.0, 7.0, 1)
    with pytest.raises(ValueError, match="values"):
        Summary.of([])


def test_interleaved_times_rotate_order_and_drop_warmup():
    calls = []
    candidates = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "c")}
    times = interleaved_times(candidates, repeats=2, warmup=1)
    assert calls == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert {name: len(values) for name, values in times.items()} == {"a": 2, "b": 2, "c": 2}
    with pytest.raises(ValueError, match="repeats"):
        interleaved_times(candidates, repeats=0, warmup=0)


def test_per_repeat_ratios_pair_by_index():
    assert per_repeat_ratios([2.0, 3.0], [4.0, 1.5]) == [0.5, 2.0]
    with pytest.raises(ValueError, match="2 and 1"):
        per_repeat_ratios([1.0, 2.0], [1.0])


def test_peak_tensor_memory_replays_allocations_and_frees():
    def allocate():
        first = torch.zeros(1_000_000, dtype=torch.uint8)
        second = torch.zeros(1_000_000, dtype=torch.uint8)
        del first
        third = torch.zeros(500_000, dtype=torch.uint8)
        return second, third

    # 1 MB + 1 MB live at once, then 1 MB + 0.5 MB: the peak is the first pair.
    assert peak_tensor_memory_bytes(allocate) == 2_000_000


def test_target_and_figure_validation():
    assert Target(">=", 0.9).is_met_by(0.9) and not Target("<=", 1.05).is_met_by(1.06)
    assert str(Target("==", 1.0)) == "= 1"
    with pytest.raises(ValueError, match="'>'"):
        Target(">", 1.0)
    with pytest.raises(ValueError, match="'speed'"):
        Figure("speed", "speed", "ratio")
    figure = Figure("speed", "speed", "ratio", Summary.of([0.8, 1.2]), Target(">=", 1.0))
    assert figure.meets_target is True
    assert Figure.not_measured("speed", "speed", "ratio", "no GPU").as_dict()["status"] == "not measured"


def check_figure(figure: dict) -> None:
    assert figure["status"] == "measured", figure
    summary = figure["summary"]
    assert summary["minimum"] <= summary["q1"] <= summary["median"] <= summary["q3"] <= summary["maximum"]
    assert summary["median"] > 0
    if figure["target"] is not None:
        assert isinstance(figure["meets_target"], bool)


def test_quick_run_writes_json_and_markdown_and_keeps_the_intro(tmp_path):
    markdown = tmp_path / "benchmarks.md"
    markdown.write_text("# Our numbers\n\nHand-written intro.\n\n" + GENERATED_MARKER + "\n\nstale table\n")
    json_path = tmp_path / "results.json"
    arguments = ["--quick", "--only", "vkd_cost", "fracture_cost", "--work-dir", str(tmp_path / "work")]
    assert harness.main([*arguments, "--json", str(json_path), "--markdown", str(markdown)]) == 0

    results = json.loads(json_path.read_text())
    assert results["mode"] == "quick"
    for key in ("cpu_model", "usable_cores", "torch_threads", "torch", "monai", "load_average_1min_end"):
        assert key in results["machine"]
    assert results["machine"]["settings"]["image_size"] == QUICK.image_size
    groups = {group["name"]: group for group in results["groups"]}
    assert list(groups) == ["vkd_cost", "fracture_cost", "gpu"]
    vkd_figures = {figure["key"]: figure for figure in groups["vkd_cost"]["figures"]}
    for key in (
        "vkd_training_throughput_ratio",
        "vkd_inference_latency_ratio",
        "vkd_inference_peak_memory_ratio",
    ):
        check_figure(vkd_figures[key])
        assert vkd_figures[key]["summary"]["repeats"] == QUICK.repeats
    check_figure(groups["fracture_cost"]["figures"][0])
    assert {figure["status"] for figure in groups["gpu"]["figures"]} == {"not measured"}

    text = markdown.read_text()
    assert text.startswith("# Our numbers\n\nHand-written intro.\n")
    assert text.count(GENERATED_MARKER) == 1 and "stale table" not in text
    for group in results["groups"]:
        assert f"## {group['title']}" in text
        for figure in group["figures"]:
            assert f"| {figure['title']} |" in text
    assert "| not measured |" in text


def test_a_failing_group_is_reported_not_measured_and_fails_the_run(tmp_path, monkeypatch):
    def broken(settings, work_dir):
        raise RuntimeError("datalist missing: /nowhere/datalist_vkd.json")

    monkeypatch.setitem(harness.GROUPS, "vkd_cost", broken)
    json_path, markdown = tmp_path / "results.json", tmp_path / "benchmarks.md"
    arguments = ["--quick", "--only", "vkd_cost", "--work-dir", str(tmp_path / "work")]
    assert harness.main([*arguments, "--json", str(json_path), "--markdown", str(markdown)]) == 1
    (figure,) = json.loads(json_path.read_text())["groups"][0]["figures"]
    assert figure["status"] == "not measured"
    assert "RuntimeError: datalist missing: /nowhere/datalist_vkd.json" in figure["reason"]
    assert "Groups that failed: vkd_cost." in markdown.read_text()


# Groups that other tests run at quick size already: the two cost groups above, the memory slope and the
# text-encoder counts in test_scale.py. The whole-harness run below takes the rest, so that each group runs once.
RUN_ELSEWHERE = ("vkd_cost", "fracture_cost", "memory_scaling", "text_cache_scale")


@pytest.mark.slow
def test_full_quick_mode_measures_every_cpu_figure(tmp_path):
    groups = [name for name in harness.GROUPS if name not in RUN_ELSEWHERE]
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--only", *groups, "--work-dir", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert [group["name"] for group in results["groups"]] == [*groups, "gpu"]
    for group in results["groups"]:
        for figure in group["figures"]:
            if group["name"] == "gpu":
                assert figure["status"] == "not measured" and figure["reason"]
            else:
                check_figure(figure)
    figures = {figure["key"]: figure for group in results["groups"] for figure in group["figures"]}
    # Counted, not timed: every unique report is encoded exactly once over the multi-epoch run.
    assert figures["text_encoder_calls_per_unique_report"]["summary"]["median"] == 1.0
    assert figures["full_loop_shipped_ratio"]["summary"]["repeats"] == QUICK.repeats
