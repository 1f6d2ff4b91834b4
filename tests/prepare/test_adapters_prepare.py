import json

import pytest

from cxrkd_monai.prepare import ADAPTERS, get_adapter, summary_path
from cxrkd_monai.prepare.run import adapter_options, run_prepare


def test_registry_names_every_dataset():
    assert set(ADAPTERS) == {
        "mimic_cxr", "openi", "openi_fracture", "chexpert", "vindr_cxr", "chestx_det10", "generic_csv",
        "generic_fracture_csv", "fracatlas",
    }
    assert get_adapter("VinDr-CXR") is ADAPTERS["vindr_cxr"]
    with pytest.raises(ValueError, match="Unknown dataset 'nih'"):
        get_adapter("nih")


def test_run_prepare_writes_datalist_and_summary_and_rejects_unknown_options(tmp_path):
    (tmp_path / "labels.csv").write_text("image,patient_id,Edema\nx.png,A,1\n")
    summary = run_prepare("generic_csv", str(tmp_path), str(tmp_path / "out" / "list.json"), check_images=False,
                          views="all", class_names=["Edema"])
    assert summary_path(tmp_path / "out" / "list.json") == tmp_path / "out" / "list.summary.json"
    assert json.loads((tmp_path / "out" / "list.summary.json").read_text()) == summary
    datalist = json.loads((tmp_path / "out" / "list.json").read_text())
    assert datalist["class_names"] == ["Edema"] and summary["items_written"] == 1
    assert "uncertain_policy" in adapter_options("openi") and "iou_threshold" in adapter_options("vindr_cxr")
    with pytest.raises(ValueError, match=r"Unknown option\(s\) \['iou_threshold'\] for dataset 'generic_csv'"):
        run_prepare("generic_csv", str(tmp_path), str(tmp_path / "x.json"), iou_threshold=0.5)
