"""Offline verification of a bundle's ``configs/metadata.json``: the MONAI schema plus this project's conventions.

``python -m monai.bundle verify_metadata`` downloads the schema named by the metadata's ``schema`` URL to
``--filepath``, unless a file already exists there, in which case it validates against that file without any
network access. :data:`META_SCHEMA_PATH` is such a file: a local copy of the fields the MONAI Bundle
specification makes mandatory, in the structure of MONAI's bundle meta schema::

    python -m monai.bundle verify_metadata --meta_file configs/metadata.json \\
        --filepath "$(python -c 'import cxrkd_monai.deploy as d; print(d.META_SCHEMA_PATH)')"

:func:`verify_bundle_metadata` runs that check and then the conventions the schema cannot express: the bundle's
``version`` is listed in ``changelog``, ``required_packages_version`` pins ``cxrkd-monai`` to one exact version,
and ``channel_def`` of the output names every class of the inference config, in order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from monai.bundle import ConfigParser, verify_metadata
from packaging.version import InvalidVersion, Version

__all__ = ["META_SCHEMA_PATH", "PACKAGE_NAME", "check_metadata_conventions", "verify_bundle_metadata"]

META_SCHEMA_PATH = Path(__file__).resolve().with_name("meta_schema.json")
PACKAGE_NAME = "cxrkd-monai"


def check_metadata_conventions(
    metadata: Mapping, class_names: Sequence[str] | None = None, source: str = "metadata.json"
) -> None:
    """Checks the project's metadata conventions that the JSON schema does not express.

    Args:
        metadata: the parsed content of ``configs/metadata.json``.
        class_names: the classes in output-channel order (the inference config's ``class_names``); when
            given, ``network_data_format.outputs.pred`` must have one channel per class and a ``channel_def``
            that maps ``"0"``, ``"1"``, ... to exactly these names.
        source: how to name the metadata in error messages (its file path).

    Raises:
        ValueError: naming ``source``, the key and the offending value.
    """
    version = metadata.get("version")
    changelog = metadata.get("changelog") or {}
    if version not in changelog:
        raise ValueError(f"{source}: 'version' {version!r} is not a key of 'changelog' (keys: {sorted(changelog)}).")

    required = metadata.get("required_packages_version") or {}
    pinned = required.get(PACKAGE_NAME)
    if pinned is None:
        raise ValueError(
            f"{source}: 'required_packages_version' must pin {PACKAGE_NAME!r}, got keys {sorted(required)}."
        )
    try:
        Version(str(pinned))
    except InvalidVersion as error:
        raise ValueError(
            f"{source}: 'required_packages_version.{PACKAGE_NAME}' must be one exact version such as '0.1.0', "
            f"got {pinned!r}."
        ) from error

    if class_names is None:
        return
    try:
        prediction = metadata["network_data_format"]["outputs"]["pred"]
    except KeyError as error:
        raise ValueError(f"{source}: 'network_data_format.outputs.pred' is missing.") from error
    expected = {str(index): name for index, name in enumerate(class_names)}
    if prediction.get("num_channels") != len(expected):
        raise ValueError(
            f"{source}: 'network_data_format.outputs.pred.num_channels' is {prediction.get('num_channels')!r} "
            f"but the config has {len(expected)} classes {list(class_names)}."
        )
    channel_def = {str(key): value for key, value in (prediction.get("channel_def") or {}).items()}
    if channel_def != expected:
        raise ValueError(
            f"{source}: 'network_data_format.outputs.pred.channel_def' must name every class in order, "
            f"expected {expected}, got {channel_def}."
        )


def verify_bundle_metadata(bundle_dir: str | Path, config_file: str = "configs/inference.json") -> dict:
    """Verifies ``bundle_dir/configs/metadata.json`` offline against :data:`META_SCHEMA_PATH` and the conventions.

    This is ``monai.bundle.verify_metadata`` with the local schema, followed by
    :func:`check_metadata_conventions` with the ``class_names`` of ``config_file``.

    Args:
        bundle_dir: the bundle folder.
        config_file: the config, relative to ``bundle_dir``, whose ``class_names`` the output channels follow.

    Returns:
        the parsed metadata.

    Raises:
        FileNotFoundError: naming the missing metadata or config file.
        ValueError: when the schema or a convention is violated (MONAI's message names the failing field).
    """
    bundle_dir = Path(bundle_dir)
    meta_file = bundle_dir / "configs" / "metadata.json"
    config_path = bundle_dir / config_file
    for path in (meta_file, config_path):
        if not path.is_file():
            raise FileNotFoundError(f"bundle file {path} does not exist.")
    verify_metadata(meta_file=str(meta_file), filepath=str(META_SCHEMA_PATH))
    metadata = json.loads(meta_file.read_text())
    parser = ConfigParser()
    parser.read_config(str(config_path))
    class_names = parser.get_parsed_content("class_names") if "class_names" in parser else None
    check_metadata_conventions(metadata, class_names, source=str(meta_file))
    return metadata
