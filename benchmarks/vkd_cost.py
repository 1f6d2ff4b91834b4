"""What VKD's text branch costs: training throughput, inference latency and inference memory, each against
an image-only model measured in the same process.

Training: the bundle's :class:`~cxrkd_monai.engines.VKDTrainer` runs one epoch over the same in-memory
batches (made by the bundle's own training transforms) twice per round, once with the text path on (text
features from a warm :class:`~cxrkd_monai.data.TextEmbeddingCache` around the real frozen encoder) and once
with ``text_encoder=None``, the bundle's image-only baseline (same network, head, batch and size).

Inference: VKD at inference is image only, so the bundle's baseline network is the same graph and its
ratio is 1 by construction; the harness therefore compares with the stricter baseline of a plain MONAI
DenseNet-121 classifier (same backbone, a linear head, sigmoid), both for the deterministic VKD forward
(``z = mu_p``) and for the bundle's Monte Carlo inferer with ``inference_mc_samples`` prior draws.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from monai.bundle import ConfigParser
from monai.data import DataLoader
from monai.networks.nets import DenseNet121

from benchmarks.bundle_data import VKD_BUNDLE, generate_phantom, vkd_overrides, write_vkd_datalist
from benchmarks.report import Figure, GroupReport, Target
from benchmarks.settings import BenchmarkSettings
from benchmarks.timing import Summary, interleaved_times, peak_tensor_memory_bytes, per_repeat_ratios
from cxrkd_monai.engines import VKDTrainer

__all__ = ["run"]

_MIB = 2**20


def _parser(settings: BenchmarkSettings, work_dir: Path) -> ConfigParser:
    num_images = settings.batch_size * settings.batches_per_repeat
    phantom = generate_phantom(work_dir / "phantom", num_images)
    datalist = write_vkd_datalist(phantom, work_dir / "datalist" / "datalist_vkd.json", num_images)
    parser = ConfigParser()
    parser.read_config(str(VKD_BUNDLE / "configs" / "train.json"))
    parser.update(
        vkd_overrides(datalist, work_dir / "run", settings, num_workers=0, device="$torch.device('cpu')")
    )
    return parser


def _trainer(parser: ConfigParser, network: torch.nn.Module, batches: list, text_encoder) -> VKDTrainer:
    return VKDTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=batches,
        network=network,
        loss_function=parser.get_parsed_content("loss", lazy=False),
        optimizer=torch.optim.Adam(network.parameters(), lr=parser.get_parsed_content("learning_rate")),
        text_encoder=text_encoder,
        num_train_samples=parser.get_parsed_content("train_mc_samples"),
    )


def _training_figures(parser: ConfigParser, settings: BenchmarkSettings) -> list[Figure]:
    dataset = parser.get_parsed_content("train#dataset")
    batches = list(DataLoader(dataset, batch_size=settings.batch_size, shuffle=False, num_workers=0))
    text_cache = parser.get_parsed_content("text_encoder")
    text_cache([report for batch in batches for report in batch["report"]])
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def", lazy=False)
    vkd = _trainer(parser, network, batches, text_cache)
    baseline = _trainer(parser, copy.deepcopy(network), batches, None)
    times = interleaved_times({"vkd": vkd.run, "baseline": baseline.run}, settings.repeats, settings.warmup)
    images = sum(len(batch["image"]) for batch in batches)
    return [
        Figure(
            "vkd_training_throughput_ratio",
            "VKD training images/s ÷ image-only baseline (cached text)",
            "ratio",
            Summary.of(per_repeat_ratios(times["baseline"], times["vkd"])),
            Target(">=", 0.90),
        ),
        Figure(
            "vkd_training_images_per_second",
            "VKD training images/s",
            "images/s",
            Summary.of([images / seconds for seconds in times["vkd"]]),
        ),
        Figure(
            "baseline_training_images_per_second",
            "image-only baseline training images/s",
            "images/s",
            Summary.of([images / seconds for seconds in times["baseline"]]),
        ),
    ]


def _inference_figures(parser: ConfigParser, settings: BenchmarkSettings) -> list[Figure]:
    torch.manual_seed(0)
    vkd = parser.get_parsed_content("network_def", lazy=False).eval()
    baseline = DenseNet121(
        spatial_dims=2, in_channels=1, out_channels=parser.get_parsed_content("num_classes")
    ).eval()
    monte_carlo = parser.get_parsed_content("validate#inferer", lazy=False)
    size = settings.inference_image_size
    images = torch.rand(settings.batch_size, 1, size, size)
    calls = {
        "baseline": lambda: torch.sigmoid(baseline(images)),
        "vkd": lambda: vkd(images),
        "vkd_monte_carlo": lambda: monte_carlo(images, vkd),
    }
    with torch.no_grad():
        times = interleaved_times(calls, settings.repeats, settings.warmup)
        memory_rounds = min(settings.repeats, 3)
        memory = {
            name: [peak_tensor_memory_bytes(call) for _ in range(memory_rounds)]
            for name, call in calls.items()
        }
    samples = monte_carlo.num_samples
    figures = []
    for name, label in (("vkd", "VKD (z = mu_p)"), ("vkd_monte_carlo", f"VKD ({samples} prior samples)")):
        figures += [
            Figure(
                f"{name}_inference_latency_ratio",
                f"{label} inference latency ÷ DenseNet-121 classifier",
                "ratio",
                Summary.of(per_repeat_ratios(times[name], times["baseline"])),
                Target("<=", 1.05),
            ),
            Figure(
                f"{name}_inference_peak_memory_ratio",
                f"{label} peak tensor memory at inference ÷ DenseNet-121 classifier",
                "ratio",
                Summary.of(per_repeat_ratios(memory[name], memory["baseline"])),
                Target("<=", 1.05),
            ),
        ]
    figures += [
        Figure(
            "baseline_inference_latency_ms",
            "DenseNet-121 classifier inference latency per batch",
            "ms",
            Summary.of([1000 * seconds for seconds in times["baseline"]]),
        ),
        Figure(
            "baseline_inference_peak_memory_mib",
            "DenseNet-121 classifier peak tensor memory at inference",
            "MiB",
            Summary.of([value / _MIB for value in memory["baseline"]]),
        ),
    ]
    return figures


def run(settings: BenchmarkSettings, work_dir: Path) -> GroupReport:
    """Measure the VKD training and inference figures in ``work_dir``."""
    parser = _parser(settings, work_dir)
    report = GroupReport(
        name="vkd_cost",
        title="VKD text branch: training and inference cost against image-only models",
        setup={
            "image size": f"training {settings.image_size} px, inference {settings.inference_image_size} px",
            "batch": settings.batch_size,
            "training batches per round": settings.batches_per_repeat,
            "latent_dim": settings.latent_dim,
            "warm-up rounds": settings.warmup,
        },
        notes=[
            "Training rounds run the bundle's VKDTrainer for one epoch over the same in-memory batches "
            "(bundle transforms applied beforehand); the baseline is the same trainer with "
            "text_encoder=None.",
            "Text features come from the bundle's TextEmbeddingCache around the real frozen encoder, warmed "
            "before timing, so a training round pays only for the cache look-up.",
            "Peak memory is the peak of live CPU tensor memory during one forward pass, replayed from "
            "torch.profiler memory records (profile_memory=True); weights allocated beforehand are excluded.",
            "The bundle's own image-only baseline network is VKDNet itself, whose inference graph is "
            "identical to VKD's (ratio 1 by construction); the DenseNet-121 classifier is the stricter "
            "comparison.",
        ],
    )
    report.figures += _training_figures(parser, settings)
    report.figures += _inference_figures(parser, settings)
    return report
