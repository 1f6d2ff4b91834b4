"""A trained run handed over as a self-contained bundle folder in the Model Zoo layout.

Training writes weights for a bundle run with command-line overrides (a smaller network, another image size,
other classes); the source bundle's configs alone can no longer load them. :func:`export_trained_bundle` writes
a folder that can::

    <destination>/configs/*.json        the source configs with the run's overrides merged in
    <destination>/configs/metadata.json  channels, input size and figures of these weights, and its own version
                                         ``<source version>+<label>.<C>c<size>px`` (:func:`exported_version`)
    <destination>/docs/README.md         the source card below a section with this export's version, classes,
                                         input size, overrides, data source, intended use and figures
    <destination>/docs/, LICENSE         the rest as in the source bundle
    <destination>/models/model.pt        the trained checkpoint (state dict of ``network_def``)
    <destination>/models/model.ts        its TorchScript export (``monai.bundle ckpt_export``)
    <destination>/models/calibration.json the calibration beside the checkpoint, when the run fitted one (VKD),
                                         also stated in the metadata under ``calibration``

``large_files.yml`` is left out: it points at the published weights, which would replace these.

:func:`check_exported_bundle` then runs the checks a source bundle passes (``tests/deploy``): the metadata
schema and conventions (:func:`~cxrkd_monai.bundle.verify_bundle_metadata`), MONAI's ``verify_net_in_out``, the
adapted output-shape check on the eager and the TorchScript network, and TorchScript parity: the weights load
strictly into the configured ``network_def`` and ``model.ts`` gives its outputs.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser, ckpt_export, verify_net_in_out
from monai.bundle.reference_resolver import ReferenceResolver
from monai.bundle.scripts import _get_fake_spatial_shape
from monai.bundle.utils import ID_SEP_KEY

from cxrkd_monai.bundle.export import check_network_matches_metadata, check_torchscript_matches_metadata
from cxrkd_monai.bundle.recalibrate import calibration_metadata
from cxrkd_monai.bundle.schema import verify_bundle_metadata
from cxrkd_monai.transforms.calibration import CALIBRATION_FILENAME, Calibration, calibration_file_beside
from cxrkd_monai.utils.atomic_files import json_safe

__all__ = ["check_exported_bundle", "export_trained_bundle", "exported_version", "merge_config_overrides"]

METADATA = "metadata.json"
INFERENCE = "inference.json"
CARD = Path("docs") / "README.md"
_COPIED = ("configs", "docs", "LICENSE")
# TorchScript and eager kernels differ in summation order only; outputs are logits of order 1-10.
_PARITY_TOLERANCE = {"atol": 1e-5, "rtol": 1e-4}


def merge_config_overrides(config_dir: str | Path, overrides: Mapping[str, Any]) -> dict[str, list[str]]:
    """Writes each override into every JSON config of ``config_dir`` that defines it (``metadata.json`` excepted).

    An id is written into a config that defines it (``latent_dim``) or, for a nested id such as
    ``network_def#image_encoder``, whose parent it extends (``network_def``). Configs that only refer to it
    through a config merged before them (``evaluate.json`` on ``train.json``) are left alone, so that merging
    them still gives the overridden value.

    Args:
        config_dir: the bundle's ``configs`` folder; its files are rewritten in place (4-space JSON).
        overrides: config ids and values, as given to ``monai.bundle run``.

    Returns:
        for each id, the config file names it was written into.

    Raises:
        KeyError: naming the ids that no config defines (a misspelt override would otherwise vanish).

    Example::

        merge_config_overrides("bundle/configs", {"image_size": [96, 96], "network_def#image_feature_dim": 128})
        # {'image_size': ['inference.json', 'train.json'], 'network_def#image_feature_dim': [...]}
    """
    config_dir = Path(config_dir)
    placed: dict[str, list[str]] = {key: [] for key in overrides}
    for path in sorted(config_dir.glob("*.json")):
        if path.name == METADATA:
            continue
        parser = ConfigParser(json.loads(path.read_text()))
        for key, value in overrides.items():
            parent = ReferenceResolver.normalize_id(key).rpartition(ID_SEP_KEY)[0]
            if key in parser or (parent and parent in parser and isinstance(parser[parent], dict)):
                parser[key] = value
                placed[key].append(path.name)
        if any(path.name in names for names in placed.values()):
            path.write_text(json.dumps(parser.get(), indent=4) + "\n")
    missing = sorted(key for key, names in placed.items() if not names)
    if missing:
        raise KeyError(f"Overrides {missing} are defined in no config of {config_dir}; check their ids.")
    return placed


def _check_version_label(label: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9]+", label):
        raise ValueError(f"version label must be letters and digits only, got {label!r}.")


def exported_version(source_version: str, label: str, class_names: Sequence[str], image_size: Sequence[int]) -> str:
    """The version of an exported bundle: the source's, with a PEP 440 local label naming its classes and input size.

    Args:
        source_version: the source bundle's ``version``, e.g. ``"0.2.0"``.
        label: what made the export, letters and digits only, e.g. ``"demo"``.
        class_names: the export's output classes (their number goes into the label).
        image_size: the export's input size; one number when all sides are equal.

    Raises:
        ValueError: ``label`` is empty or holds other characters than letters and digits.

    Example::

        exported_version("0.2.0", "demo", ["a", "b", "c", "d", "e", "f"], [96, 96])   # "0.2.0+demo.6c96px"
        exported_version("0.2.0", "demo", ["a", "b"], [96, 128])                      # "0.2.0+demo.2c96x128px"
    """
    _check_version_label(label)
    sizes = [int(size) for size in image_size]
    size = str(sizes[0]) if len(set(sizes)) == 1 else "x".join(map(str, sizes))
    return f"{source_version}+{label}.{len(class_names)}c{size}px"


def _figure(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _exported_card(
    source_card: str,
    metadata: Mapping[str, Any],
    source: str,
    overrides: Mapping[str, Any],
    class_names: Sequence[str],
    image_size: Sequence[int],
) -> str:
    """The source bundle's card below a section stating what this export holds instead of the source's defaults."""
    figures = metadata.get("eval_metrics") or {}
    rows = [
        ("version", f"`{metadata['version']}`"),
        ("classes", f"{len(class_names)}: " + ", ".join(f"`{name}`" for name in class_names)),
        ("input", f"{' x '.join(map(str, image_size))} px (`image_size`), one channel"),
        ("overrides merged into the configs", ", ".join(f"`{key}`" for key in overrides) or "none"),
        ("data source", metadata.get("data_source", "")),
        ("intended use", metadata.get("intended_use", "")),
        ("eval_metrics", ", ".join(f"{key} {_figure(value)}" for key, value in figures.items()) or "none"),
    ]
    header = [
        f"# {metadata['name']}: exported bundle {metadata['version']}",
        "",
        f"The weights of one training run with `{source}`, exported by `cxrkd_monai.bundle.export_trained_bundle`. "
        "These values replace the defaults that the source card below gives (its classes, image size and figures "
        "describe the source bundle, not these weights):",
        "",
        "| | this export |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in rows),
        "",
        "---",
        "",
    ]
    return "\n".join(header) + source_card


def _exported_metadata(bundle: Path, metadata_updates: Mapping[str, Any]) -> dict:
    """The source metadata with the outputs and input size of the merged inference config, then the updates."""
    metadata = ConfigParser(json.loads((bundle / "configs" / METADATA).read_text()))
    inference = ConfigParser()
    inference.read_config(str(bundle / "configs" / INFERENCE))
    if "class_names" in inference:
        class_names = inference.get_parsed_content("class_names")
        metadata["network_data_format#outputs#pred#num_channels"] = len(class_names)
        metadata["network_data_format#outputs#pred#channel_def"] = {str(i): name for i, name in enumerate(class_names)}
    input_shape = metadata["network_data_format#inputs#image#spatial_shape"]
    # a fixed input size ([224, 224]) is the config's image size; an expression ("32*n") stays
    if "image_size" in inference and all(isinstance(size, int) for size in input_shape):
        metadata["network_data_format#inputs#image#spatial_shape"] = list(inference.get_parsed_content("image_size"))
    for key, value in metadata_updates.items():
        metadata[key] = value
    return metadata.get()


def _trained_network(parser: ConfigParser, config_file: Path, checkpoint: Path) -> torch.nn.Module:
    """``network_def`` of ``parser`` in eval mode with ``checkpoint`` loaded strictly (every tensor, every shape)."""
    network = parser.get_parsed_content("network_def").eval()
    try:
        network.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True), strict=True)
    except RuntimeError as error:
        raise ValueError(f"{checkpoint} does not fit the network_def of {config_file}: {error}") from error
    return network


def export_trained_bundle(
    source: str | Path,
    destination: str | Path,
    checkpoint: str | Path,
    overrides: Mapping[str, Any],
    metadata_updates: Mapping[str, Any] | None = None,
    version_label: str = "trained",
) -> Path:
    """Writes the bundle folder of a trained run (layout in the module docstring) and checks it.

    Args:
        source: the bundle folder the run used (``bundles/cxr_vkd_classification``).
        destination: the folder to write; an earlier export there (a folder with ``configs/metadata.json``) is
            replaced, any other existing folder is refused.
        checkpoint: the run's best model, the state dict of ``network_def`` (``models/model.pt`` of the run); a
            ``calibration.json`` beside it goes along.
        overrides: the run's config overrides that shape the network and its input (``class_names``,
            ``image_size``, network sizes), merged by :func:`merge_config_overrides`. Paths of the run
            (``dataset_dir``, ``ckpt_dir``, ``output_dir``) do not belong here: the exported bundle reads its
            weights from its own ``models`` folder.
        metadata_updates: metadata ids (``#``-separated) and values set after the output channels
            (``channel_def`` from ``class_names``) and a fixed input ``spatial_shape`` (from ``image_size``) have
            been derived from the merged inference config, e.g. ``{"eval_metrics": {...}, "data_source": ...}``.
        version_label: the label of the export's version, :func:`exported_version` of the source version, the
            merged ``class_names`` and ``image_size``; the ``changelog`` gains its entry.

    Returns:
        ``destination``.

    Raises:
        FileNotFoundError: naming a missing source metadata or checkpoint.
        FileExistsError: ``destination`` exists and is not an earlier export.
        KeyError: an override no config defines.
        ValueError: ``destination`` is ``source``, ``version_label`` is not letters and digits, or a check of
            :func:`check_exported_bundle` fails.

    Example::

        export_trained_bundle(
            "bundles/cxr_vkd_classification", "demo_output/bundles/cxr_vkd_classification",
            "demo_output/vkd/vkd/models/model.pt", {"class_names": names, "image_size": [96, 96], "latent_dim": 64},
            {"eval_metrics": {"synthetic_demo_test_macro_auroc": 0.71}}, version_label="demo",
        )  # version "0.2.0+demo.<C>c96px"
    """
    _check_version_label(version_label)
    source, destination, checkpoint = Path(source), Path(destination), Path(checkpoint)
    for path in (source / "configs" / METADATA, checkpoint):
        if not path.is_file():
            raise FileNotFoundError(f"file {path} does not exist.")
    if destination.resolve() == source.resolve():
        raise ValueError(f"destination {destination} is the source bundle; export into another folder.")
    if destination.exists():
        if not (destination / "configs" / METADATA).is_file():
            raise FileExistsError(f"{destination} exists and is not a bundle folder; choose another destination.")
        shutil.rmtree(destination)
    destination.mkdir(parents=True)
    for name in _COPIED:
        if (source / name).is_dir():
            shutil.copytree(source / name, destination / name, ignore=shutil.ignore_patterns(".*", "__*"))
        elif (source / name).is_file():
            shutil.copy2(source / name, destination / name)
    merge_config_overrides(destination / "configs", overrides)
    calibration_file = Path(calibration_file_beside(checkpoint))
    calibration = Calibration.load(calibration_file) if calibration_file.is_file() else None
    if calibration is not None:
        metadata_updates = {**(metadata_updates or {}), "calibration": json_safe(calibration_metadata(calibration))}
    metadata = _exported_metadata(destination, metadata_updates or {})
    merged = ConfigParser()
    merged.read_config(str(destination / "configs" / INFERENCE))
    class_names, image_size = merged.get_parsed_content("class_names"), merged.get_parsed_content("image_size")
    source_version = metadata["version"]
    metadata["version"] = exported_version(source_version, version_label, class_names, image_size)
    metadata["changelog"] = {
        metadata["version"]: f"{version_label} export of {source.name} {source_version}: the weights of one trained "
        f"run, {len(class_names)} classes, input {' x '.join(map(str, image_size))} px, configs with the run's "
        f"overrides of {', '.join(overrides) or 'nothing'}",
        **metadata["changelog"],
    }
    (destination / "configs" / METADATA).write_text(json.dumps(metadata, indent=4) + "\n")
    if (destination / CARD).is_file():
        card = (destination / CARD).read_text()
        card = _exported_card(card, metadata, source.name, overrides, class_names, image_size)
        (destination / CARD).write_text(card)

    models = destination / "models"
    models.mkdir()
    shutil.copy2(checkpoint, models / "model.pt")
    if calibration is not None:
        shutil.copy2(calibration_file, models / CALIBRATION_FILENAME)
    # MONAI's ckpt_export would fail on a mismatch too, without naming the checkpoint or the config
    _trained_network(merged, destination / "configs" / INFERENCE, models / "model.pt")
    ckpt_export(
        net_id="network_def",
        filepath=str(models / "model.ts"),
        ckpt_file=str(models / "model.pt"),
        meta_file=str(destination / "configs" / METADATA),
        config_file=str(destination / "configs" / INFERENCE),
    )
    check_exported_bundle(destination)
    return destination


def check_exported_bundle(bundle: str | Path) -> None:
    """Checks a bundle folder with weights the way the source bundles are checked.

    1. ``configs/metadata.json`` against the local schema and the project's conventions (channels named after
       the inference config's ``class_names``): :func:`~cxrkd_monai.bundle.verify_bundle_metadata`.
    2. ``monai.bundle verify_net_in_out network_def`` with the inference config (channels and dtype), and
       :func:`~cxrkd_monai.bundle.check_network_matches_metadata` (output map size too) on the eager network.
    3. ``models/model.pt`` loads strictly into ``network_def`` (every tensor present, every shape equal).
    4. ``models/model.ts`` passes :func:`~cxrkd_monai.bundle.check_torchscript_matches_metadata` and gives the
       eager network's outputs for two random images of the config's ``image_size``, ``(2, 1, H, W)``.

    Raises:
        FileNotFoundError: naming a missing file.
        ValueError: naming the bundle and the failing check.
    """
    bundle = Path(bundle)
    meta_file, config_file = bundle / "configs" / METADATA, bundle / "configs" / INFERENCE
    checkpoint, torchscript = bundle / "models" / "model.pt", bundle / "models" / "model.ts"
    for path in (checkpoint, torchscript):
        if not path.is_file():
            raise FileNotFoundError(f"bundle file {path} does not exist.")
    metadata = verify_bundle_metadata(bundle)
    verify_net_in_out(net_id="network_def", meta_file=str(meta_file), config_file=str(config_file), device="cpu")

    parser = ConfigParser()
    parser.read_config(str(config_file))
    network = _trained_network(parser, config_file, checkpoint)
    check_network_matches_metadata(network, metadata, source=f"{config_file} network_def")
    check_torchscript_matches_metadata(torchscript, meta_file)

    image_input = metadata["network_data_format"]["inputs"]["image"]
    spatial = parser.get_parsed_content("image_size") if "image_size" in parser else None
    spatial = spatial or _get_fake_spatial_shape(image_input["spatial_shape"], p=1, n=1, any=1)
    images = torch.rand(2, image_input["num_channels"], *spatial, generator=torch.Generator().manual_seed(0))
    scripted = torch.jit.load(str(torchscript), map_location="cpu").eval()
    with torch.no_grad():
        eager_output, scripted_output = network(images), scripted(images)
    try:
        torch.testing.assert_close(scripted_output, eager_output, **_PARITY_TOLERANCE)
    except AssertionError as error:
        raise ValueError(f"{torchscript} differs from network_def with {checkpoint}: {error}") from error
