"""The training augmentation applied to a collated batch on its device, instead of per item in the loader.

With a persistent cache the data loader's remaining work per item is the random augmentation; a resampling
``RandAffined`` at 224 px costs more CPU time than reading the cached bytes. :class:`BatchAugmentd` runs the
bundle's own list of MONAI dictionary transforms on the ``(B, C, *S)`` batch where it already is (the GPU,
after ``prepare_batch`` moved it), so that the loader only reads and collates.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.transforms import (
    Compose,
    EnsureTyped,
    MapTransform,
    RandAffined,
    RandFlipd,
    Randomizable,
    RandScaleIntensityd,
    RandShiftIntensityd,
)
from monai.transforms.utils import create_grid, map_spatial_axes
from monai.utils import MAX_SEED, convert_to_tensor, get_equivalent_dtype

__all__ = ["BatchAugmentd"]

GRID_SAMPLE_MODES = ("bilinear", "nearest", "bicubic")
GRID_SAMPLE_PADDING = ("zeros", "border", "reflection")


class BatchAugmentd(Randomizable):
    """Apply MONAI dictionary transforms to every item of a collated batch, with per-item random parameters.

    The batch is the collated dictionary, each transformed key a ``(B, C, *S)`` tensor on any device. Each
    transform's random parameters are drawn for item 0, 1, ..., B-1 with the transform's own generators and
    ``randomize`` methods, in the order the per-item path draws them, so the same seeds give the same
    augmentation whether the transforms run per item in the data loader or here on the batch (to the float
    rounding of the resampling). Keys listed together in one transform get the same parameters, so a
    ``RandFlipd(keys=["image", "target"])`` flips an image and its fracture target map together.

    These transforms run batched, in one tensor operation each for the whole batch:

        - ``RandFlipd``: a per-item flip mask;
        - ``RandScaleIntensityd``, ``RandShiftIntensityd`` (without ``factor_key``): per-item (or per-channel)
          factors and offsets;
        - ``RandAffined`` with a ``grid_sample`` mode and padding and no output ``spatial_size``: the per-item
          affine matrices of MONAI's ``RandAffineGrid`` resample the transformed items in one ``grid_sample``,
          on the same centred pixel grid and normalisation as MONAI's ``Resample``;
        - ``EnsureTyped``: one conversion of the whole batch.

    Any other ``MapTransform`` is applied item by item on the batch's device; MONAI transforms accept device
    tensors. Keys a transform does not list pass through unchanged.

    Args:
        transforms: the per-item dictionary transforms, a sequence or a ``Compose`` (as the bundle's
            ``train#augmentation``).
        seed: seeds the transforms the way ``Compose.set_random_state`` does; ``None`` uses
            ``torch.initial_seed()``, which ``monai.utils.set_determinism`` sets.

    Raises:
        TypeError: when a transform is not a MONAI ``MapTransform`` (the error names it).
        ValueError: when the transformed keys disagree on the batch size.

    Example::

        augment = BatchAugmentd([RandFlipd(keys=["image", "target"], spatial_axis=0, prob=0.5)], seed=0)
        batch = augment({"image": images.cuda(), "target": maps.cuda()})  # (B, 1, H, W), (B, K, H/4, W/4)
    """

    def __init__(self, transforms: Sequence[Callable] | Compose, seed: int | None = None) -> None:
        self.transforms = list(transforms.flatten().transforms if isinstance(transforms, Compose) else transforms)
        for transform in self.transforms:
            if not isinstance(transform, MapTransform):
                raise TypeError(
                    f"BatchAugmentd applies MONAI dictionary transforms, got {type(transform).__name__} "
                    f"({transform!r})."
                )
        self.set_random_state(seed=torch.initial_seed() % MAX_SEED if seed is None else seed)

    @property
    def keys(self) -> tuple[Hashable, ...]:
        """Every key some transform reads or writes, in order of first use."""
        return tuple(dict.fromkeys(key for transform in self.transforms for key in transform.keys))

    def set_random_state(self, seed: int | None = None, state: Any = None) -> BatchAugmentd:
        """Seed each random transform from this object's generator, as ``Compose.set_random_state`` does."""
        super().set_random_state(seed=seed, state=state)
        for transform in self.transforms:
            if isinstance(transform, Randomizable):
                transform.set_random_state(seed=self.R.randint(MAX_SEED, dtype="uint32"))
        return self

    def __call__(self, batch: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(batch)
        for transform in self.transforms:
            keys = [key for key in transform.keys if key in d]
            if not keys:
                continue
            size = _batch_size(d, keys)
            if isinstance(transform, RandFlipd):
                _flip(transform, d, keys, size)
            elif isinstance(transform, RandScaleIntensityd):
                _scale_intensity(transform, d, keys, size)
            elif isinstance(transform, RandShiftIntensityd) and all(k is None for k in transform.factor_key):
                _shift_intensity(transform, d, keys, size)
            elif isinstance(transform, RandAffined) and _affine_runs_batched(transform):
                _affine(transform, d, keys, size)
            elif isinstance(transform, EnsureTyped):
                # a type conversion treats every element alike, so the whole batch converts at once
                d.update(transform({key: d[key] for key in keys}))
            else:
                _per_item(transform, d, keys, size)
        return d


def _batch_size(d: dict, keys: list[Hashable]) -> int:
    sizes = {key: len(d[key]) for key in keys}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"BatchAugmentd: the batch's keys disagree on the batch size: {sizes}.")
    return next(iter(sizes.values()))


def _per_item_shape(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``(B,)`` or ``(B, C)`` values as a tensor broadcasting against ``like`` ``(B, C, *S)``."""
    values = torch.as_tensor(values, dtype=torch.float32, device=like.device)
    return values.reshape(*values.shape, *([1] * (like.ndim - values.ndim)))


def _flip(transform: RandFlipd, d: dict, keys: list[Hashable], size: int) -> None:
    flipped = []
    for _ in range(size):
        transform.randomize(None)
        flipped.append(transform._do_transform)
    for key in keys:
        image = convert_to_tensor(d[key], track_meta=False)
        dims = [axis + 1 for axis in map_spatial_axes(image.ndim - 1, transform.flipper.spatial_axis)]
        mask = torch.tensor(flipped, device=image.device).reshape(size, *([1] * (image.ndim - 1)))
        d[key] = torch.where(mask, image.flip(dims), image)


def _scale_intensity(transform: RandScaleIntensityd, d: dict, keys: list[Hashable], size: int) -> None:
    first = d[keys[0]]
    multipliers = torch.ones((size, first.shape[1]) if transform.scaler.channel_wise else (size,))
    for index in range(size):
        transform.randomize(None)
        if transform._do_transform:
            transform.scaler.randomize(first[index])
            multipliers[index] = 1 + torch.as_tensor(transform.scaler.factor, dtype=torch.float64)
    for key in keys:
        image = convert_to_tensor(d[key], track_meta=False)
        scaled = image * _per_item_shape(multipliers, image)
        dtype = transform.scaler.dtype
        d[key] = scaled if dtype is None else scaled.to(get_equivalent_dtype(dtype, torch.Tensor))


def _shift_intensity(transform: RandShiftIntensityd, d: dict, keys: list[Hashable], size: int) -> None:
    first = d[keys[0]]
    offsets = torch.zeros((size, first.shape[1]) if transform.shifter.channel_wise else (size,))
    for index in range(size):
        transform.randomize(None)
        if transform._do_transform:
            transform.shifter.randomize(first[index])
            offsets[index] = torch.as_tensor(transform.shifter._offset, dtype=torch.float64)
    for key in keys:
        image = convert_to_tensor(d[key], track_meta=False)
        d[key] = image + _per_item_shape(offsets, image).to(image.dtype if image.is_floating_point() else None)


def _affine_runs_batched(transform: RandAffined) -> bool:
    modes = [getattr(mode, "value", mode) for mode in transform.mode]
    paddings = [getattr(padding, "value", padding) for padding in transform.padding_mode]
    return (
        all(mode in GRID_SAMPLE_MODES for mode in modes)
        and all(padding in GRID_SAMPLE_PADDING for padding in paddings)
        and transform.rand_affine.spatial_size is None
    )


def _affine(transform: RandAffined, d: dict, keys: list[Hashable], size: int) -> None:
    spatial_size = tuple(d[keys[0]].shape[2:])
    grid_maker = transform.rand_affine.rand_affine_grid
    transformed, matrices = [], []
    for index in range(size):
        transform.randomize(None)
        transform.rand_affine.randomize()
        if not transform._do_transform:
            continue
        # As RandAffined does, draw the parameters once more when building the grid (these are the ones
        # applied), then re-randomize the inner RandAffine once per resampled key: those draws are unused
        # but keep every generator in step with the per-item path.
        grid_maker(spatial_size, randomize=True, lazy=True)
        transformed.append(index)
        matrices.append(torch.as_tensor(grid_maker.get_transformation_matrix(), dtype=torch.float32))
        for _ in keys:
            transform.rand_affine.randomize()
    device = d[keys[0]].device
    if transformed:
        # MONAI's centred pixel grid, mapped by each item's affine and normalised for grid_sample
        # (align_corners=False), with the axes reversed to grid_sample's (x, y[, z]) order.
        identity = create_grid(spatial_size, device=device, backend="torch", dtype=torch.float32)
        points = torch.stack(matrices).to(device) @ identity.reshape(len(spatial_size) + 1, -1)
        scale = torch.tensor([2.0 / max(2, dim) for dim in spatial_size], device=device)
        points = points[:, :-1] * scale[:, None]
        grid = points.flip(1).transpose(1, 2).reshape(len(transformed), *spatial_size, len(spatial_size))
        items = torch.tensor(transformed, device=device)
    for key, mode, padding in transform.key_iterator(d, transform.mode, transform.padding_mode):
        # as in RandAffined, every item leaves as float32, resampled or not
        output = convert_to_tensor(d[key], track_meta=False, dtype=torch.float32)
        if transformed:
            if tuple(output.shape[2:]) != spatial_size:
                raise ValueError(
                    f"BatchAugmentd: RandAffined key '{key}' has spatial size {tuple(output.shape[2:])}, "
                    f"'{keys[0]}' has {spatial_size}."
                )
            output = output.clone()
            output[items] = F.grid_sample(
                output[items],
                grid,
                mode=getattr(mode, "value", mode),
                padding_mode=getattr(padding, "value", padding),
                align_corners=False,
            )
        d[key] = output


def _per_item(transform: MapTransform, d: dict, keys: list[Hashable], size: int) -> None:
    outputs = [transform({key: d[key][index] for key in keys}) for index in range(size)]
    for key in keys:
        d[key] = torch.stack([convert_to_tensor(output[key], track_meta=False) for output in outputs])
