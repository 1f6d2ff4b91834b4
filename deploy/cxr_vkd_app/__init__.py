"""MONAI Deploy app of the ``cxr_vkd_classification`` bundle."""
