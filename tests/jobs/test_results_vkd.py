"""The results job's VKD task: VKD against its image-only baseline, seeds, patient-level paired intervals; its
steps run in the test's process (``in_process``)."""

import json

import pytest

from cxrkd_monai.jobs.results import run_results

TINY = {"image_size": 64, "max_epochs": 1, "num_resamples": 50}


@pytest.mark.slow
def test_vkd_task_runs_vkd_against_its_baseline_with_paired_intervals(phantom, tmp_path):
    out = tmp_path / "vkd"
    figures = run_results(
        "vkd", str(out), datalist=str(phantom / "datalist_vkd.json"), seeds=[0, 1], in_process=True, **TINY
    )
    assert set(figures["runs"]) == {"baseline seed 0", "baseline seed 1", "vkd seed 0", "vkd seed 1"}
    for arm in ("baseline", "vkd"):
        for seed in (0, 1):
            metrics = json.loads((out / "test" / f"{arm}_seed{seed}" / "metrics.json").read_text())
            assert figures["runs"][f"{arm} seed {seed}"]["AUROC"]["estimate"] == pytest.approx(
                metrics["val_macro_auroc"], abs=1e-9
            )
    runs = figures["runs"]
    mean = {a: (runs[f"{a} seed 0"]["AUROC"]["estimate"] + runs[f"{a} seed 1"]["AUROC"]["estimate"]) / 2
            for a in ("baseline", "vkd")}  # fmt: skip
    difference = figures["differences"]["vkd - baseline"]["AUROC"]
    assert difference["estimate"] == pytest.approx(mean["vkd"] - mean["baseline"])
    assert difference["low"] <= difference["estimate"] <= difference["high"]
    assert {"vkd - baseline seed 0", "vkd - baseline seed 1"} == set(figures["seed_differences"])
    report = (out / "results.md").read_text()
    assert "| VKD − image-only baseline | mean |" in report and "val_posterior_auroc" in report
    with pytest.raises(ValueError, match="--task vkd needs --datalist"):
        run_results("vkd", str(tmp_path / "other"))
