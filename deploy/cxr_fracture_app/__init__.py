"""MONAI Deploy app of the ``cxr_aals_fracture_detection`` bundle."""
