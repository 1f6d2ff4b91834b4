"""Shared test set-up: the generated phantom the bundle tests train on, bundle workflows as a user runs them, and
checks that more than one test package makes.

Test modules import the helpers as ``from tests.conftest import run_workflow`` (``tests`` is on the path
through ``pythonpath`` in ``pyproject.toml``); pytest itself provides the fixtures.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow

from cxrkd_monai.phantom import generate_phantom_dataset
from cxrkd_monai.transforms import LetterboxGeometry

BUNDLES = Path(__file__).resolve().parents[1] / "bundles"
VKD_CONFIGS = BUNDLES / "cxr_vkd_classification" / "configs"
FRACTURE_CONFIGS = BUNDLES / "cxr_aals_fracture_detection" / "configs"
# Non-square, so that a (W, H) mix-up shows; 16 patients give every split positives of most classes.
PHANTOM_SIZE = (72, 64)
# Per bundle, the config overrides that give its inference.json a tiny network, which runs in seconds on a CPU.
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


@pytest.fixture(scope="session")
def phantom(tmp_path_factory) -> Path:
    """A phantom dataset (``datalist_vkd.json``, ``datalist_fracture.json``, ``images/``): 16 patients, seed 3,
    :data:`PHANTOM_SIZE` images. Tests that change a datalist write their copy elsewhere or under a new name."""
    root = tmp_path_factory.mktemp("phantom")
    generate_phantom_dataset(root, num_patients=16, seed=3, image_size=PHANTOM_SIZE)
    return root


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
