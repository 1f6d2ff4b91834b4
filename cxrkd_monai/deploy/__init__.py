"""MONAI Deploy App SDK operators for both bundles (DICOM in, DICOM SR out) and the demo's app runner.

The operators need the ``deploy`` extra (``monai-deploy-app-sdk``); import them from
``cxrkd_monai.deploy.operators``.
"""
