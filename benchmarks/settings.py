"""Sizes and repeat counts of the two harness modes: ``full`` (``make bench``) and ``quick`` (CI)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["FULL", "QUICK", "BenchmarkSettings"]


@dataclass(frozen=True)
class BenchmarkSettings:
    """What every benchmark group runs on.

    Args:
        mode: ``"full"`` or ``"quick"``.
        image_size: side of the square network input of the training figures, in pixels.
        inference_image_size: side of the square input of the inference latency and memory figures, in pixels
            (the bundle's own ``image_size`` in full mode: inference alone is affordable at that size on a CPU).
        batch_size: images per training or inference batch.
        warmup: discarded rounds before the kept ones.
        repeats: kept rounds; every figure is a median over them.
        batches_per_repeat: training batches per timed round of the in-memory step comparisons.
        latent_dim: VKD latent size (the bundle default is 512).
        inference_mc_samples: prior samples of the bundle's Monte Carlo inferer.
        loop_training_images: training images of the full-loop run (data from disk).
        scaling_base_images: training images of the 1x dataset of the epoch-time scaling runs.
        scaling_multipliers: dataset sizes of the scaling runs, as multiples of the base.
        scaling_repeats: kept epochs of each scaling run (after ``warmup`` epochs).
        fracture_image_size: side of the fracture detector input, in pixels (a multiple of 32).
        fracture_inference_image_size: side of the fracture detector input of the inference-format figures
            (the bundle's own ``image_size`` in full mode).
        fracture_inference_batch_size: images per batch of the fracture detector's inference-format figures.
        ddp_steps: timed training steps per process in the DDP comparison.
        ddp_training_images: training images of the phantom the DDP bundle runs train on.
        ddp_epochs: epochs of each DDP bundle run (1 and 2 processes) before the final validation.
        scale_image_size: side of the stored and loaded images of the memory-scaling figures, in pixels.
        scale_batch_size: images per batch of the memory-scaling epochs.
        scale_sizes: dataset sizes (items) of the preprocessed cache's peak-memory runs, smallest first.
        default_path_sizes: dataset sizes of ``CacheDataset`` (cache_rate 1.0) peak-memory runs, extrapolated.
        loader_image_size: side of the images of the loader images/s figures, in pixels.
        loader_batch_size: images per batch of the loader and raw-step figures.
        loader_items: items per epoch of the loader images/s figures.
        text_items: training items of the text-encoder call count.
    """

    mode: str
    image_size: int
    inference_image_size: int
    batch_size: int
    warmup: int
    repeats: int
    batches_per_repeat: int
    latent_dim: int
    inference_mc_samples: int
    loop_training_images: int
    scaling_base_images: int
    scaling_multipliers: tuple[int, ...]
    scaling_repeats: int
    fracture_image_size: int
    fracture_inference_image_size: int
    fracture_inference_batch_size: int
    ddp_steps: int
    ddp_training_images: int
    ddp_epochs: int
    scale_image_size: int
    scale_batch_size: int
    scale_sizes: tuple[int, ...]
    default_path_sizes: tuple[int, ...]
    loader_image_size: int
    loader_batch_size: int
    loader_items: int
    text_items: int

    def as_dict(self) -> dict:
        return asdict(self)


FULL = BenchmarkSettings(
    mode="full",
    image_size=64,
    inference_image_size=224,
    batch_size=8,
    warmup=1,
    repeats=7,
    batches_per_repeat=4,
    latent_dim=512,
    inference_mc_samples=10,
    loop_training_images=32,
    scaling_base_images=8,
    scaling_multipliers=(1, 4, 16),
    scaling_repeats=8,
    fracture_image_size=64,
    fracture_inference_image_size=512,
    fracture_inference_batch_size=2,
    ddp_steps=6,
    ddp_training_images=48,
    ddp_epochs=4,
    scale_image_size=224,
    scale_batch_size=30,
    scale_sizes=(1_000, 10_000, 100_000),
    default_path_sizes=(250, 1_000),
    loader_image_size=224,
    loader_batch_size=30,
    loader_items=60,
    text_items=100_000,
)

QUICK = BenchmarkSettings(
    mode="quick",
    image_size=32,
    inference_image_size=32,
    batch_size=2,
    warmup=1,
    repeats=2,
    batches_per_repeat=1,
    latent_dim=16,
    inference_mc_samples=2,
    loop_training_images=4,
    scaling_base_images=2,
    scaling_multipliers=(1, 4),
    scaling_repeats=2,
    fracture_image_size=64,
    fracture_inference_image_size=64,
    fracture_inference_batch_size=2,
    ddp_steps=2,
    ddp_training_images=24,
    ddp_epochs=1,
    scale_image_size=224,
    scale_batch_size=30,
    scale_sizes=(1_000, 4_000),
    default_path_sizes=(64, 256),
    loader_image_size=64,
    loader_batch_size=4,
    loader_items=8,
    text_items=4_000,
)
