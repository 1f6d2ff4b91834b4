import numpy as np
import torch
from monai.data import DataLoader, MetaTensor

from cxrkd_monai.data.collate import collate_with_annotations


def _item(num_boxes: int, label: int, with_points: bool = True):
    item = {
        "image": MetaTensor(torch.full((1, 8, 8), float(label)), meta={"filename_or_obj": f"img{label}.png"}),
        "image_label": torch.tensor([label, 0], dtype=torch.float32),
        "subset": "D_R",
        "boxes": np.arange(num_boxes * 5, dtype=np.float64).reshape(num_boxes, 5),
    }
    if with_points:
        item["points"] = np.zeros((num_boxes, 3))
    return item


def test_ragged_annotations_stay_per_item():
    batch = collate_with_annotations([_item(2, 1), _item(0, 0), _item(3, 1)])
    assert batch["image"].shape == (3, 1, 8, 8)
    torch.testing.assert_close(batch["image_label"][:, 0], torch.tensor([1.0, 0.0, 1.0]))
    assert batch["subset"] == ["D_R", "D_R", "D_R"]
    assert [b.shape for b in batch["boxes"]] == [(2, 5), (0, 5), (3, 5)]
    np.testing.assert_array_equal(batch["boxes"][2], np.arange(15).reshape(3, 5))
    assert [p.shape for p in batch["points"]] == [(2, 3), (0, 3), (3, 3)]
    assert batch["image"].meta["filename_or_obj"] == ["img1.png", "img0.png", "img1.png"]


def test_missing_annotation_key_gives_none():
    batch = collate_with_annotations([_item(1, 1, with_points=False), _item(1, 0)])
    assert batch["points"][0] is None and batch["points"][1].shape == (1, 3)


def test_lists_of_items_are_flattened_in_order():
    batch = collate_with_annotations([[_item(1, 1), _item(2, 0)], [_item(3, 1)]])
    assert batch["image"].shape[0] == 3
    assert [len(b) for b in batch["boxes"]] == [1, 2, 3]
    torch.testing.assert_close(batch["image"][:, 0, 0, 0], torch.tensor([1.0, 0.0, 1.0]))


def test_works_as_dataloader_collate_fn():
    data = [_item(n, n % 2) for n in range(4)]
    loader = DataLoader(data, batch_size=2, collate_fn=collate_with_annotations)
    batches = list(loader)
    assert [[len(b) for b in batch["boxes"]] for batch in batches] == [[0, 1], [2, 3]]


def test_vkd_items_with_and_without_a_label_mask_collate_to_one_tensor():
    """`cxrkd prepare` writes masks as lists; phantom or hand-made items have none. After EnsureLabelMaskd both
    collate to one (B, C) mask, ones where an item had none."""
    from monai.data import list_data_collate

    from cxrkd_monai.transforms import EnsureLabelMaskd

    items = [
        {"label": [1.0, 0.0, 0.0], "label_mask": [1.0, 0.0, 1.0]},
        {"label": [0.0, 1.0, 0.0]},
        {"label": [0.0, 0.0, 1.0], "label_mask": [0.0, 1.0, 1.0]},
    ]
    batch = list_data_collate([EnsureLabelMaskd(3)(item) for item in items])
    assert isinstance(batch["label_mask"], torch.Tensor) and batch["label_mask"].dtype == torch.float32
    torch.testing.assert_close(batch["label_mask"], torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0], [0.0, 1.0, 1.0]]))
