"""The image-level score of a fracture type is its map's maximum over the image, never over the letterbox padding."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose

from cxrkd_monai.handlers.fracture_prediction_recorder import FracturePredictionRecorder
from cxrkd_monai.transforms import (
    ImageScored,
    LetterboxGeometry,
    detect_in_original_pixels,
    image_area_mask,
    image_scores,
)

CLASSES = ["rib_fracture", "clavicle_fracture"]
# A 100 x 50 (W x H) image letterboxed to 64 x 64: resized 64 x 32, padded by 16 grid rows above and below it.
# At stride 4 the map is 16 x 16 and map row m has its centre at grid y = 4 m + 2: rows 4..11 (y = 18..46) lie on
# the image, rows 0..3 and 12..15 in the padding.
GEOMETRY = LetterboxGeometry.fit((100, 50), (64, 64))


def _maps() -> torch.Tensor:
    """(2, 16, 16) maps whose maxima (0.95 rib, 0.8 clavicle) lie in the padding; on the image 0.6 and 0.2."""
    maps = torch.zeros(2, 16, 16)
    maps[0, 5, 1] = 0.95  # above the image
    maps[0, 7, 9] = 0.6
    maps[1, 2, 13] = 0.8  # below the image
    maps[1, 10, 4] = 0.2  # first row on the image
    return maps


def test_image_area_is_the_map_rows_whose_centre_lies_on_the_image():
    mask = image_area_mask(GEOMETRY, (16, 16))
    expected_rows = torch.tensor([4 <= m <= 11 for m in range(16)])
    assert torch.equal(mask, expected_rows[None].expand(16, 16))
    # packed geometry as collated in a batch gives the same mask
    assert torch.equal(image_area_mask(GEOMETRY.to_tensor(), (16, 16)), mask)


def test_score_ignores_a_maximum_in_the_padding_and_agrees_with_detections():
    maps = _maps()
    assert maps.flatten(1).amax(dim=1).tolist() == pytest.approx([0.95, 0.8]), "whole-map maxima are in the padding"
    scores = image_scores(maps, GEOMETRY.to_tensor())
    assert scores.tolist() == pytest.approx([0.6, 0.2])
    detections = detect_in_original_pixels(maps, GEOMETRY.to_tensor(), threshold=0.05)
    assert [float(d[:, -1].max()) for d in detections] == pytest.approx(scores.tolist())


def test_batched_scores_and_postprocessing_transform():
    maps = torch.stack([_maps(), torch.full((2, 16, 16), 0.1)])
    geometry = torch.stack([GEOMETRY.to_tensor(), LetterboxGeometry.fit((64, 64), (64, 64)).to_tensor()])
    expected = torch.tensor([[0.6, 0.2], [0.1, 0.1]])
    torch.testing.assert_close(image_scores(maps, geometry), expected)
    # the evaluator (decollate=False) applies its postprocessing to the batch merged with the output
    data = Compose([ImageScored(keys="pred", output_key="image_score")])({"pred": maps, "geometry": geometry})
    torch.testing.assert_close(data["image_score"], expected)
    with pytest.raises(KeyError, match="geometry"):
        ImageScored(keys="pred")({"pred": maps})
    with pytest.raises(ValueError, match="2 maps but 1 geometries"):
        image_scores(maps, geometry[:1])


def test_an_image_thinner_than_a_map_pixel_keeps_its_middle_pixel():
    geometry = LetterboxGeometry.fit((200, 2), (64, 64))  # resized 64 x 1, padded 31 rows above: centre row 31.5
    mask = image_area_mask(geometry, (16, 16))
    assert mask.sum() == 16 and bool(mask[:, 7].all())  # map row 7 spans grid rows [28, 32)


def test_prediction_recorder_reports_the_image_area_maximum():
    image = MetaTensor(torch.zeros(1, 1, 64, 64), meta={"filename_or_obj": ["/data/images/a.png"]})
    batch = {"image": image, "geometry": GEOMETRY.to_tensor()[None]}
    (record,) = FracturePredictionRecorder(CLASSES)(batch, {"pred": _maps()[None]})
    assert record["rib_fracture_probability"] == pytest.approx(0.6)
    assert record["clavicle_fracture_probability"] == pytest.approx(0.2)
    for name in CLASSES:
        top = max(d["score"] for d in record["detections"] if d["class"] == name)
        assert top == pytest.approx(record[f"{name}_probability"])
