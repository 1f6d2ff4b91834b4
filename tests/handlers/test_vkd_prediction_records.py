"""VKDPredictionRecords: one record per image from the inferer's output after the bundle's post-processing."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor, decollate_batch, list_data_collate
from monai.transforms import SplitDimd

from cxrkd_monai.handlers import VKDPredictionRecords
from cxrkd_monai.inferers import MonteCarloPriorInferer

CLASS_NAMES = ["Cardiomegaly", "Pneumothorax"]


class FixedSamples(torch.nn.Module):
    """``sample_probabilities`` returns the given draws ``(L, B, C)``, whatever the noise."""

    latent_dim = 2

    def __init__(self, samples: torch.Tensor) -> None:
        super().__init__()
        self.samples = samples

    def sample_probabilities(self, image: torch.Tensor, num_samples: int, noise: torch.Tensor | None) -> torch.Tensor:
        return self.samples


def image(name: str) -> MetaTensor:
    return MetaTensor(torch.zeros(1, 4, 4), meta={"filename_or_obj": f"/data/images/{name}.png"})


def test_records_carry_the_file_mean_and_spread_of_each_class():
    # two draws for two images: image a gives (0.2, 0.6) and (0.4, 0.6), image b (0.9, 0.1) twice
    samples = torch.tensor([[[0.2, 0.6], [0.9, 0.1]], [[0.4, 0.6], [0.9, 0.1]]])
    batch = list_data_collate([{"image": image("a")}, {"image": image("b")}])  # as the bundle's loader batches
    pred = MonteCarloPriorInferer(2)(batch["image"], FixedSamples(samples))
    # the bundle's post-processing: decollate, then split (2, C) into pred_prob and pred_std
    split = SplitDimd(keys="pred", dim=0, output_postfixes=["prob", "std"], keepdim=False)
    output = [split(item) for item in decollate_batch({"pred": pred})]
    records = VKDPredictionRecords(CLASS_NAMES)(decollate_batch(batch), output)
    assert [record["image"] for record in records] == ["/data/images/a.png", "/data/images/b.png"]
    assert records[0] == pytest.approx(
        {"image": "/data/images/a.png", "prob_Cardiomegaly": 0.3, "prob_Pneumothorax": 0.6,
         "std_Cardiomegaly": 0.1, "std_Pneumothorax": 0.0},
        abs=1e-6,
    )  # fmt: skip
    assert records[1]["prob_Cardiomegaly"] == pytest.approx(0.9) and records[1]["std_Pneumothorax"] == 0.0


def test_an_image_without_meta_data_gets_an_empty_name():
    output = [{"pred_prob": torch.tensor([0.5, 0.25]), "pred_std": torch.tensor([0.0, 0.125])}]
    records = VKDPredictionRecords(CLASS_NAMES)([{"image": torch.zeros(1, 4, 4)}], output)
    assert records == [
        {"image": "", "prob_Cardiomegaly": 0.5, "prob_Pneumothorax": 0.25, "std_Cardiomegaly": 0.0,
         "std_Pneumothorax": 0.125}
    ]  # fmt: skip


def test_a_prediction_with_another_class_count_is_refused():
    output = [{"pred_prob": torch.tensor([0.5, 0.25, 0.1]), "pred_std": torch.zeros(3)}]
    with pytest.raises(ValueError):
        VKDPredictionRecords(CLASS_NAMES)([{"image": image("a")}], output)
