"""The full training loop against the model's limit, and the text encoder paid for once.

The full loop is the VKD bundle's ``train.json`` run through ``ConfigWorkflow``: datalist and images from
disk, the bundle's dataset and transforms, its data loader and every training handler (learning-rate and
beta schedules, stats, TensorBoard, progress bar). Validation is switched off (``val_interval`` beyond the
last epoch) because it is not training throughput. Each epoch is timed, and right after it, in the same
process, the raw training step of a copy of the network: forward, backward and Adam step on tensors
already in memory, same batch and size, for as many batches as the epoch had. The epoch's ratio is the
loop's images/s over the raw step's images/s. The loop is measured with the bundle's data loader as
shipped and with the alternatives in :data:`LOADER_VARIANTS`, so that the choice is made by measurement.

The same multi-epoch run, with an empty text cache at the start, gives the number of texts sent to the
text encoder over the number of unique training reports.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import time
from pathlib import Path

import torch
from ignite.engine import Events

from benchmarks.bundle_data import generate_phantom, vkd_overrides, vkd_workflow, write_vkd_datalist
from benchmarks.report import Figure, GroupReport, Target
from benchmarks.settings import BenchmarkSettings
from benchmarks.timing import Summary

__all__ = ["LOADER_VARIANTS", "run"]

LOADER_VARIANTS = {
    "shipped": ("bundle config as shipped (DataLoader, num_workers={num_workers}, persistent_workers)", {}),
    "fresh_workers": (
        "DataLoader, num_workers={num_workers}, workers started every epoch",
        {"train#dataloader#persistent_workers": False},
    ),
    "no_workers": ("DataLoader, num_workers=0", {"num_workers": 0}),
    "thread_loader": (
        "ThreadDataLoader, num_workers=0",
        {"num_workers": 0, "train#dataloader#_target_": "ThreadDataLoader"},
    ),
}
"""Data-loader settings the full loop is measured with: name -> (description, train.json overrides)."""


def _raw_step(workflow, settings: BenchmarkSettings):
    """A closure running one raw training step of a copy of the bundle's network and loss."""
    parser = workflow.parser
    network = copy.deepcopy(parser.get_parsed_content("network"))
    loss_function = copy.deepcopy(parser.get_parsed_content("loss"))
    optimizer = torch.optim.Adam(network.parameters(), lr=parser.get_parsed_content("learning_rate"))
    num_samples = parser.get_parsed_content("train_mc_samples")
    size = settings.image_size
    images = torch.rand(settings.batch_size, 1, size, size)
    text_features = torch.randn(settings.batch_size, parser.get_parsed_content("text_feature_dim"))
    labels = (torch.rand(settings.batch_size, parser.get_parsed_content("num_classes")) > 0.5).float()

    def step() -> None:
        network.train()
        optimizer.zero_grad()
        loss_function(network.forward_train(images, text_features, num_samples), labels)["loss"].backward()
        optimizer.step()

    return step


def _measure_loop(datalist: Path, run_dir: Path, settings: BenchmarkSettings, loader_overrides: dict) -> dict:
    """Per-epoch loop/raw ratios and text-cache counters of one multi-epoch bundle run."""
    # The encoder-call count is over this run alone, so it starts from an empty on-disk cache.
    shutil.rmtree(run_dir / "text_cache", ignore_errors=True)
    epochs = settings.warmup + settings.repeats
    extra = {
        "epochs": epochs,
        "val_interval": epochs + 1,
        "device": "$torch.device('cpu')",
        **loader_overrides,
    }
    workflow = vkd_workflow(vkd_overrides(datalist, run_dir, settings, **extra))
    trainer = workflow.parser.get_parsed_content("train#trainer")
    images_per_epoch = len(workflow.parser.get_parsed_content("train#dataset"))
    raw_batches = math.ceil(images_per_epoch / settings.batch_size)
    raw_step = _raw_step(workflow, settings)
    epoch_started: list[float] = []
    loop_rates: list[float] = []
    raw_rates: list[float] = []

    def start_epoch(_) -> None:
        epoch_started.append(time.perf_counter())

    def end_epoch(engine) -> None:
        loop_rates.append(images_per_epoch / (time.perf_counter() - epoch_started[-1]))
        start = time.perf_counter()
        for _ in range(raw_batches):
            raw_step()
        raw_rates.append(raw_batches * settings.batch_size / (time.perf_counter() - start))

    # Registered after the bundle's handlers, so the epoch time includes theirs.
    trainer.add_event_handler(Events.EPOCH_STARTED, start_epoch)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, end_epoch)
    workflow.run()
    text_cache = workflow.parser.get_parsed_content("text_encoder")
    workflow.finalize()
    kept = slice(settings.warmup, None)
    return {
        "ratios": [loop / raw for loop, raw in zip(loop_rates[kept], raw_rates[kept])],
        "loop_rates": loop_rates[kept],
        "raw_rates": raw_rates[kept],
        "num_workers": workflow.parser.get_parsed_content("num_workers"),
        "encoder_calls": text_cache.encoder_calls,
        "cache_hits": text_cache.hits,
        "epochs": epochs,
    }


def run(settings: BenchmarkSettings, work_dir: Path) -> GroupReport:
    """Measure the full-loop ratio (the bundle's ``num_workers`` and 0) and the text-encoder call count."""
    phantom = generate_phantom(work_dir / "phantom", settings.loop_training_images)
    datalist = write_vkd_datalist(
        phantom, work_dir / "datalist" / "datalist_vkd.json", settings.loop_training_images
    )
    measured = {
        name: _measure_loop(datalist, work_dir / f"run_{name}", settings, overrides)
        for name, (_, overrides) in LOADER_VARIANTS.items()
    }
    shipped = measured["shipped"]
    training = json.loads(datalist.read_text())["training"]
    unique_reports = len({item["report"] for item in training})
    report = GroupReport(
        name="training_loop",
        title="Full training loop (bundle config, data from disk, handlers) against the raw training step",
        setup={
            "image size": f"{settings.image_size} px",
            "batch": settings.batch_size,
            "training images": len(training),
            "epochs": f"{shipped['epochs']} ({settings.warmup} warm-up)",
            "bundle num_workers": shipped["num_workers"],
            "latent_dim": settings.latent_dim,
        },
        notes=[
            "The bundle's CacheDataset (cache_rate 1.0) decodes and letterboxes each image once, when the "
            "workflow is initialised; every epoch then applies the random augmentation and collates.",
            "Each epoch's ratio pairs it with the raw steps timed right after it.",
        ],
    )
    for name, (description, _) in LOADER_VARIANTS.items():
        label = description.format(num_workers=shipped["num_workers"])
        report.figures += [
            Figure(
                f"full_loop_{name}_ratio",
                f"full training loop images/s ÷ raw step, {label}",
                "ratio",
                Summary.of(measured[name]["ratios"]),
                Target(">=", 0.85),
            ),
            Figure(
                f"full_loop_{name}_images_per_second",
                f"full training loop images/s, {label}",
                "images/s",
                Summary.of(measured[name]["loop_rates"]),
            ),
        ]
    report.figures += [
        Figure(
            "raw_step_images_per_second",
            "raw training step images/s (the limit)",
            "images/s",
            Summary.of([rate for result in measured.values() for rate in result["raw_rates"]]),
        ),
        Figure(
            "text_encoder_calls_per_unique_report",
            f"text encoder calls over a {shipped['epochs']}-epoch run ÷ unique reports",
            "ratio",
            Summary.of([shipped["encoder_calls"] / unique_reports]),
            Target("==", 1.0),
        ),
    ]
    report.notes.append(
        f"Text cache over the {shipped['epochs']}-epoch run: {shipped['encoder_calls']} texts encoded, "
        f"{shipped['cache_hits']} answered from the cache, {unique_reports} unique training reports."
    )
    return report
