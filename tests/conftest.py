"""Shared test set-up: the generated phantom the bundle tests train on, bundle workflows as a user runs them, and
checks that more than one test package makes.

Test modules import the helpers as ``from tests.conftest import run_workflow`` (``tests`` is on the path
through ``pythonpath`` in ``pyproject.toml``); pytest itself provides the fixtures.
"""

from __future__ import annotations

import ast
import contextlib
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow

from cxrkd_monai.jobs.demo import run_demo
from cxrkd_monai.phantom import generate_phantom_dataset
from cxrkd_monai.transforms import LetterboxGeometry

REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLES = REPO_ROOT / "bundles"
VKD_CONFIGS = BUNDLES / "cxr_vkd_classification" / "configs"
FRACTURE_CONFIGS = BUNDLES / "cxr_aals_fracture_detection" / "configs"
# Non-square, so that a (W, H) mix-up shows; 16 patients give every split positives of most classes.
PHANTOM_SIZE = (72, 64)
# Per bundle, the config overrides that give its configs a tiny network, which runs in seconds on a CPU (inference
# tests, and training runs that check state rather than accuracy).
TINY_INFERENCE = {
    "cxr_vkd_classification": {
        "latent_dim": 8,
        "inference_mc_samples": 4,
        "network_def#image_encoder": {
            "_target_": "DenseNet",
            "spatial_dims": 2,
            "in_channels": 1,
            "out_channels": 16,
            "init_features": 8,
            "growth_rate": 8,
            "block_config": [2, 2],
        },
        "network_def#image_feature_dim": 16,
    },
    "cxr_aals_fracture_detection": {
        "layers": [1, 1, 1, 1],
        "block_inplanes": [8, 16, 32, 64],
        "fpn_channels": 8,
        "save_maps": False,
    },
}


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``make test`` runs ``-n auto``) each worker takes its share of the cores for torch's
    intra-op threads, so that the workers do not oversubscribe the CPU."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


@pytest.fixture(scope="session")
def phantom(tmp_path_factory) -> Path:
    """A phantom dataset (``datalist_vkd.json``, ``datalist_fracture.json``, ``images/``): 16 patients, seed 3,
    :data:`PHANTOM_SIZE` images. Tests that change a datalist write their copy elsewhere or under a new name."""
    root = tmp_path_factory.mktemp("phantom")
    generate_phantom_dataset(root, num_patients=16, seed=3, image_size=PHANTOM_SIZE)
    return root


# About half a minute on 2 CPU cores; enough patients and epochs that the test AUROCs are not all 0.5.
TINY_DEMO = {
    "num_patients": 24,
    "phantom_size": 64,
    "vkd_image_size": 64,
    "vkd_epochs": 2,
    "batch_size": 8,
    "aals_image_size": 64,
    "aals_teacher_epochs": 3,
    "aals_student_epochs": 1,
}


class TinyDemo(NamedTuple):
    """A finished :func:`run_demo`: its output folder, the figures it returned and what it printed."""

    output_dir: Path
    figures: dict
    printed: str


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> TinyDemo:
    """``run_demo`` with :data:`TINY_DEMO` settings, once per test process (the report, hand-over and Deploy app
    tests read it)."""
    output_dir = tmp_path_factory.mktemp("demo_output")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        figures = run_demo(output_dir=str(output_dir), **TINY_DEMO)
    return TinyDemo(output_dir, figures, printed.getvalue())


def config_workflow(
    configs: str | Path | Sequence[str | Path], workflow_type: str = "train", **overrides
) -> ConfigWorkflow:
    """An initialised ``ConfigWorkflow`` of one bundle's config files, merged in order.

    Like ``monai.bundle run``, it reads ``metadata.json`` and ``logging.conf`` from the folder of the first config
    (``meta_file=...`` or ``logging_file=False`` among ``overrides`` replace them); ``bundle_root`` defaults to the
    folder above it. Every other override replaces a config entry (``"network_def#latent_dim": 8``).
    """
    files = [str(path) for path in ([configs] if isinstance(configs, (str, Path)) else configs)]
    bundle_root = str(Path(files[0]).parent.parent)
    workflow = ConfigWorkflow(
        config_file=files, workflow_type=workflow_type, **{"bundle_root": bundle_root, **overrides}
    )
    workflow.initialize()
    return workflow


def run_to_completion(workflow: ConfigWorkflow) -> ConfigWorkflow:
    """An initialised workflow, checked against MONAI's required properties of its type, run and finalised."""
    assert not workflow.check_properties(), workflow.check_properties()
    workflow.run()
    workflow.finalize()
    return workflow


def run_workflow(configs: str | Path | Sequence[str | Path], workflow_type: str = "train", **overrides):
    """:func:`config_workflow` run to completion (:func:`run_to_completion`)."""
    return run_to_completion(config_workflow(configs, workflow_type, **overrides))


def error_chain(error: BaseException) -> list[BaseException]:
    """An exception and everything that caused it, outermost first (MONAI wraps component and transform errors
    in ``RuntimeError``)."""
    chain = []
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


def error_messages(error: BaseException) -> str:
    """The messages of :func:`error_chain`, one per line."""
    return "\n".join(str(cause) for cause in error_chain(error))


def assert_map_back_samples_pixel_centres(geometry: LetterboxGeometry, stride: int) -> None:
    """A map at ``stride`` holding, along each axis, the grid coordinate of each map-pixel centre,
    ``(j + 0.5) * stride``, comes back at original size holding the grid coordinate of each original pixel centre:
    bilinear interpolation of a linear ramp is exact between the outermost map-pixel centres, and the border value
    holds beyond them. float32 sampling of coordinates up to 512: a few 1e-5 relative, so 1e-3 absolute."""
    map_shape = [g // stride for g in geometry.grid_size]
    ramps = torch.stack(
        torch.meshgrid(*[(torch.arange(m, dtype=torch.float64) + 0.5) * stride for m in map_shape], indexing="ij")
    )
    restored = geometry.grid_to_original_image(ramps).numpy()
    assert restored.shape == (geometry.ndim, *geometry.original_size)
    for axis, (size, scale, pad, grid) in enumerate(
        zip(geometry.original_size, geometry.scale, geometry.pad_before, geometry.grid_size)
    ):
        expected = np.clip((np.arange(size) + 0.5) * scale + pad, stride / 2, grid - stride / 2)
        along_axis = np.moveaxis(restored[axis], axis, 0).reshape(size, -1)
        np.testing.assert_allclose(along_axis, np.broadcast_to(expected[:, None], along_axis.shape), atol=1e-3)


# --- multi-label cases that the metric tests and the metric-handler tests share --------------------------------------


def masked_auroc_case(seed: int = 3, n: int = 60, c: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(scores, labels, mask)``, each ``(n, c)``: 0/1 labels, scores (not probabilities) that rank the positives
    higher, and a 0/1 mask that hides about 30 % of the entries."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=(n, c)).astype(float)
    scores = rng.random((n, c)) + 0.4 * labels
    mask = (rng.random((n, c)) > 0.3).astype(float)
    return scores, labels, mask


def masked_f1_case(seed: int = 5, n: int = 80, c: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(probabilities, labels, mask)``, each ``(n, c)``: 0/1 labels, probabilities in [0, 1] that are higher for
    the positives and exact in float32, and a 0/1 mask that hides about 35 % of the entries."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=(n, c)).astype(float)
    probabilities = np.clip(rng.random((n, c)) * 0.8 + 0.3 * labels, 0.0, 1.0).astype(np.float32).astype(float)
    mask = (rng.random((n, c)) > 0.35).astype(float)
    return probabilities, labels, mask


# --- import scanning, for the import rules of the package and of the test suite --------------------------------------


def imported_modules(path: Path, root: Path, *, with_from_module: bool = False) -> list[tuple[int, str]]:
    """``(line, dotted name)`` of every import in the Python file at ``path``, at any depth (imports inside
    functions too), relative imports resolved against the file's package: its folder, relative to the folder above
    ``root`` (the top-level package, such as ``cxrkd_monai`` or ``tests``).

    ``from a import b`` gives ``a.b`` (``b`` may be a submodule), so that ``from cxrkd_monai import handlers`` is
    an import of ``cxrkd_monai.handlers``; with ``with_from_module`` it gives ``a`` as well, before ``a.b``, so that
    ``from tests.x.test_y import helper`` names the module ``tests.x.test_y``. ``from a import *`` gives ``a``.
    """
    package = path.relative_to(root.parent).parent.parts
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            module = ".".join([*base, *([node.module] if node.module else [])])
            named = [f"{module}.{alias.name}" for alias in node.names if alias.name != "*"]
            if with_from_module or not named:
                found.append((node.lineno, module))
            found.extend((node.lineno, name) for name in named)
    return found
