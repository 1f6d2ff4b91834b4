"""Whole-workflow runs of the VKD bundle on tiny generated data: train, evaluate, infer, bad input (DDP runs:
test_vkd_torchrun.py)."""

import json
from pathlib import Path

import pytest
import torch
from ignite.engine import Events
from monai.bundle import verify_net_in_out

from tests.conftest import VKD_CONFIGS, error_messages, run_to_completion
from tests.workflows.conftest import vkd_tiny_overrides, vkd_workflow

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained_vkd(phantom, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("vkd")
    overrides = vkd_tiny_overrides(phantom, run_dir)
    workflow = vkd_workflow(["train.json"], "train", **overrides)
    assert workflow.check_properties() in (None, [])
    trainer = workflow.parser.get_parsed_content("train#trainer")
    epoch_losses, batch_losses = [], []

    @trainer.on(Events.ITERATION_COMPLETED)
    def _record_batch(engine):
        batch_losses.append(float(engine.state.output[0]["loss"]))

    @trainer.on(Events.EPOCH_COMPLETED)
    def _record_epoch(engine):
        epoch_losses.append(sum(batch_losses) / len(batch_losses))
        batch_losses.clear()

    workflow.run()
    workflow.finalize()
    return run_dir, overrides, epoch_losses


def test_training_reduces_loss_and_saves_best_checkpoint(trained_vkd):
    run_dir, _, epoch_losses = trained_vkd
    assert len(epoch_losses) == 4
    assert epoch_losses[-1] < epoch_losses[0]
    state = torch.load(run_dir / "models" / "model.pt", map_location="cpu")
    assert any(key.startswith("prior") or "prior" in key for key in state)
    assert not any("text" in key.lower() and "encoder" in key.lower() for key in state)
    assert len(list((run_dir / "text_cache").rglob("embeddings.bin"))) == 1


def test_evaluate_writes_per_class_auroc_and_predictions(trained_vkd, phantom):
    run_dir, overrides, _ = trained_vkd
    workflow = vkd_workflow(["train.json", "evaluate.json"], "eval", **overrides)
    workflow.run()
    workflow.finalize()
    metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
    assert "val_macro_auroc" in metrics and "micro_auroc" in metrics
    for name in overrides["class_names"]:
        assert f"val_macro_auroc_{name}" in metrics
    test_items = json.loads((phantom / "datalist_vkd.json").read_text())["test"]
    predictions = json.loads((run_dir / "eval" / "predictions.json").read_text())
    assert len(predictions) == len(test_items)


def _infer(run_dir: Path, phantom: Path, overrides: dict, name: str, dataset_dir: Path | None = None, **extra) -> list:
    inference = {
        k: overrides[k] for k in ("bundle_root", "class_names", "image_size", "latent_dim", "inference_mc_samples")
    }
    workflow = vkd_workflow(
        ["inference.json"],
        "infer",
        **inference,
        dataset_dir=str(dataset_dir or phantom),
        num_workers=0,
        ckpt_path=str(run_dir / "models" / "model.pt"),
        output_dir=str(run_dir / name),
        **extra,
    )
    run_to_completion(workflow)
    return json.loads((run_dir / name / "predictions.json").read_text())


def test_inference_writes_probabilities_and_uncertainty(trained_vkd, phantom):
    run_dir, overrides, _ = trained_vkd
    records = _infer(run_dir, phantom, overrides, "predictions")
    assert (run_dir / "predictions" / "predictions.csv").is_file()
    first = records[0]
    for name in overrides["class_names"]:
        assert 0.0 <= first[f"prob_{name}"] <= 1.0
        assert first[f"std_{name}"] >= 0.0
    assert any(record[f"std_{overrides['class_names'][0]}"] > 0 for record in records)


def test_inference_gives_each_image_the_same_answer_in_any_batch(trained_vkd, phantom):
    """Monte Carlo draws seeded per image: one image per batch, or all in one, give the same records."""
    run_dir, overrides, _ = trained_vkd
    num_images = len(json.loads((phantom / "datalist_vkd.json").read_text())["test"])
    together = _infer(run_dir, phantom, overrides, "batched", batch_size=num_images)
    alone = _infer(run_dir, phantom, overrides, "one_by_one", batch_size=1)
    assert [record["image"] for record in alone] == [record["image"] for record in together]
    assert any(value > 0 for record in alone for key, value in record.items() if key.startswith("std_"))
    for single, batched in zip(alone, together):
        scores = [key for key in single if key.startswith(("prob_", "std_"))]
        assert len(scores) == 2 * len(overrides["class_names"])
        assert [single[key] for key in scores] == pytest.approx([batched[key] for key in scores], rel=0, abs=1e-6)


def test_inference_never_touches_text(trained_vkd, phantom, tmp_path, monkeypatch):
    """Reports replaced or removed, and every text entry point made to raise: identical predictions."""
    run_dir, overrides, _ = trained_vkd
    reference = _infer(run_dir, phantom, overrides, "reference")

    datalist = json.loads((phantom / "datalist_vkd.json").read_text())
    for item in datalist["test"]:
        item["report"] = "completely different text: " + item["report"][::-1]
    altered = tmp_path / "altered"
    altered.mkdir()
    for item in datalist["test"]:
        item["image"] = str(phantom / item["image"])
    (altered / "datalist_vkd.json").write_text(json.dumps(datalist))

    import transformers

    from cxrkd_monai.networks import text_encoder

    def forbidden(*args, **kwargs):
        raise AssertionError("the text path was used at inference")

    monkeypatch.setattr(text_encoder.MeanPoolingTextEncoder, "forward", forbidden)
    monkeypatch.setattr(text_encoder.MeanPoolingTextEncoder, "__init__", forbidden)
    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", forbidden)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", forbidden)
    records = _infer(run_dir, phantom, overrides, "altered_predictions", dataset_dir=altered)
    assert records == reference


def test_verify_net_in_out():
    verify_net_in_out(
        net_id="network_def",
        meta_file=str(VKD_CONFIGS / "metadata.json"),
        config_file=str(VKD_CONFIGS / "inference.json"),
        n=1,
        any=1,
        **{"_meta_#network_data_format#inputs#image#spatial_shape": [64, 64], "network_def#latent_dim": 8},
    )


def test_baseline_is_one_override_away(phantom, tmp_path):
    overrides = vkd_tiny_overrides(phantom, tmp_path, epochs=1, use_text=False)
    workflow = vkd_workflow(["train.json"], "train", **overrides)
    assert workflow.parser.get_parsed_content("text_encoder") is None
    workflow.run()
    workflow.finalize()
    state = torch.load(tmp_path / "models" / "model.pt", map_location="cpu")
    reference = vkd_workflow(["train.json"], "train", **vkd_tiny_overrides(phantom, tmp_path / "ref", epochs=1))
    assert state.keys() == reference.parser.get_parsed_content("network_def").state_dict().keys()
    assert not (tmp_path / "text_cache").exists()


def test_missing_image_names_the_file(phantom, tmp_path):
    datalist = json.loads((phantom / "datalist_vkd.json").read_text())
    datalist["training"][0]["image"] = "images/does_not_exist.png"
    (tmp_path / "datalist_vkd.json").write_text(json.dumps(datalist))
    overrides = vkd_tiny_overrides(phantom, tmp_path, dataset_dir=str(tmp_path), epochs=1)
    with pytest.raises(Exception) as raised:
        vkd_workflow(["train.json"], "train", **overrides).run()
    assert "does_not_exist.png" in error_messages(raised.value)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("label", [0, 1], "'label' has 2 values"), ("report", "  ", "'report' is missing or empty")],
)
def test_bad_item_names_the_file_and_key(phantom, tmp_path, field, value, message):
    datalist = json.loads((phantom / "datalist_vkd.json").read_text())
    for item in datalist["training"]:
        item["image"] = str(phantom / item["image"])
    for key in ("validation", "test"):
        for item in datalist[key]:
            item["image"] = str(phantom / item["image"])
    datalist["training"][0][field] = value
    bad_image = Path(datalist["training"][0]["image"]).name
    (tmp_path / "datalist_vkd.json").write_text(json.dumps(datalist))
    overrides = vkd_tiny_overrides(phantom, tmp_path, dataset_dir=str(tmp_path), epochs=1)
    with pytest.raises(Exception) as raised:
        vkd_workflow(["train.json"], "train", **overrides).run()
    assert message in error_messages(raised.value)
    assert bad_image in error_messages(raised.value)


def test_unknown_config_reference_is_named(phantom, tmp_path):
    overrides = vkd_tiny_overrides(phantom, tmp_path, epochs=1)
    overrides["network_def#num_classes"] = "@num_klasses"
    with pytest.raises(Exception) as raised:
        vkd_workflow(["train.json"], "train", **overrides).run()
    assert "num_klasses" in error_messages(raised.value)
