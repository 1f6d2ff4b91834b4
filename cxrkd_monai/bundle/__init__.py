"""Bundle tooling: metadata checks, network and metadata consistency, packing, trained-bundle export, runs."""

from .commands import bundle_arguments, bundle_command, run_bundle_in_process, run_bundle_subprocess
from .export import check_network_matches_metadata, check_torchscript_matches_metadata, evaluate_spatial_shape
from .pack import check_bundle_archive, pack_bundle
from .packaged_bundles import BUNDLE_NAMES, bundle_path, bundles_dir
from .recalibrate import calibration_metadata, recalibrate_bundle
from .schema import META_SCHEMA_PATH, PACKAGE_NAME, check_metadata_conventions, verify_bundle_metadata
from .tracking import (
    bundle_parameters,
    executed_config_file,
    log_report_artifacts,
    tracking_run_name,
    training_scalars,
)
from .trained_bundle import check_exported_bundle, export_trained_bundle, merge_config_overrides
