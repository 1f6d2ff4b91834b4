import csv
import json
import shutil

import numpy as np
import pytest

from cxrkd_monai.metrics.bootstrap import paired_patient_bootstrap_difference
from cxrkd_monai.report.seed_comparison import AUROC, FROC, compare_seeds, score_run
from tests.report.conftest import write_vkd_run


@pytest.fixture(scope="module")
def seeded_runs(phantom, tmp_path_factory):
    """Three VKD-kind runs of the phantom's test split: arm "strong" with seeds 0 and 1, arm "weak" with seed 0."""
    root = tmp_path_factory.mktemp("seeded")
    datalist = phantom / "datalist_vkd.json"
    runs = []
    for arm, seed, separation in (("strong", 0, 1.5), ("strong", 1, 1.2), ("weak", 0, 0.3)):
        run_dir = root / f"{arm}{seed}" / "eval"
        write_vkd_run(phantom, run_dir, seed=10 + seed + (5 if arm == "weak" else 0), separation=separation)
        runs.append(score_run(arm, seed, run_dir, datalist))
    return runs


def test_score_run_equals_the_bundles_metrics(phantom, vkd_runs, fracture_run):
    run_dir, _ = vkd_runs["vkd"]
    scored = score_run("vkd", 0, run_dir, phantom / "datalist_vkd.json")
    estimate = scored.statistic(np.arange(len(scored.run.images)))
    assert estimate[AUROC] == pytest.approx(json.loads((run_dir / "metrics.json").read_text())["val_macro_auroc"])
    assert FROC not in estimate

    run_dir, _ = fracture_run
    scored = score_run("teacher", 0, run_dir, phantom / "datalist_fracture.json", image_size=[64, 64])
    estimate = scored.statistic(np.arange(len(scored.run.images)))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert estimate[FROC] == pytest.approx(metrics["val_froc"])
    assert estimate[AUROC] == pytest.approx(metrics["val_auroc"])


def test_means_and_paired_differences_share_one_patient_resampling(seeded_runs):
    comparison = compare_seeds(seeded_runs, [("strong", "weak")], num_resamples=200, seed=4)
    strong0, strong1, weak0 = (comparison.runs[key][AUROC] for key in (("strong", 0), ("strong", 1), ("weak", 0)))
    assert comparison.means["strong"][AUROC].estimate == pytest.approx((strong0.estimate + strong1.estimate) / 2)
    assert comparison.means["weak"][AUROC].estimate == pytest.approx(weak0.estimate)
    difference = comparison.differences[("strong", "weak")][AUROC]
    assert difference.estimate == pytest.approx((strong0.estimate + strong1.estimate) / 2 - weak0.estimate)
    assert list(comparison.seed_differences[("strong", "weak")]) == [0]  # seed 1 has no "weak" partner

    # the per-seed difference is the paired patient bootstrap computed directly, resample for resample
    strong, weak = seeded_runs[0], seeded_runs[2]
    direct = paired_patient_bootstrap_difference(
        lambda i: strong.statistic(i)[AUROC], lambda i: weak.statistic(i)[AUROC], strong.truth.patient_ids.tolist(),
        num_resamples=200, seed=4,
    )  # fmt: skip
    per_seed = comparison.seed_differences[("strong", "weak")][0][AUROC]
    assert (per_seed.estimate, per_seed.low, per_seed.high) == pytest.approx((direct.estimate, direct.low, direct.high))
    assert comparison.num_patients == len(set(strong.truth.patient_ids.tolist())) < comparison.num_images


def test_runs_are_aligned_by_image_and_checked(seeded_runs, phantom, tmp_path):
    source = seeded_runs[2].run.run_dir
    reversed_dir = tmp_path / "reversed" / "eval"
    reversed_dir.mkdir(parents=True)
    shutil.copy(source / "metrics.json", reversed_dir)
    with open(source / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    with open(reversed_dir / "predictions.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows[::-1])
    datalist = phantom / "datalist_vkd.json"
    flipped = score_run("weak", 0, reversed_dir, datalist)
    ordered = compare_seeds(seeded_runs, [("strong", "weak")], num_resamples=100)
    aligned = compare_seeds([*seeded_runs[:2], flipped], [("strong", "weak")], num_resamples=100)
    assert aligned.differences == ordered.differences

    with open(reversed_dir / "predictions.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows[1:])
    with pytest.raises(ValueError, match="they differ in 1, first"):
        compare_seeds([*seeded_runs[:2], score_run("weak", 0, reversed_dir, datalist)], [("strong", "weak")])
    with pytest.raises(ValueError, match=r"arm\(s\) \['other'\] without runs"):
        compare_seeds(seeded_runs, [("strong", "other")])
