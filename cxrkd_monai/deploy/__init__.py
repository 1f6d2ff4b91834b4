from .export import check_network_matches_metadata, check_torchscript_matches_metadata
from .pack import check_bundle_archive, pack_bundle
from .schema import META_SCHEMA_PATH, PACKAGE_NAME, check_metadata_conventions, verify_bundle_metadata
