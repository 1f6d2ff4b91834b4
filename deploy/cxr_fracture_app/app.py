"""MONAI Deploy app: chest radiograph (DICOM CR/DX) → AALS fracture detection → DICOM SR (TID 1500) + JSON.

Run locally from the repository root (``-m``: the ``cxr_aals_fracture_detection`` bundle folder with its weights)::

    python -m deploy.cxr_fracture_app -i dicom_dir -o output -m bundles/cxr_aals_fracture_detection
"""

from __future__ import annotations

from pathlib import Path

from monai.deploy.core import Application

from cxrkd_monai.deploy.operators import FractureDetectionOperator, add_chest_radiograph_flow


class CXRFractureDetectionApp(Application):
    """Rib and clavicle fracture probabilities and points of the AALS bundle for one chest radiograph series.

    Inputs come from ``-i/-o/-m`` or ``HOLOSCAN_INPUT_PATH``, ``HOLOSCAN_OUTPUT_PATH`` and ``HOLOSCAN_MODEL_PATH``.
    Outputs in the output folder: ``<SOPInstanceUID>.dcm`` (TID 1500 Comprehensive SR, patient and study copied
    from the input series: each type's code, probability and call, and each called point as an SCOORD POINT on
    the input image; a Basic Text SR with ``CXRKD_SR_FORMAT=text``) and ``result.json`` (the bundle's prediction
    record, the findings text and the calls).
    """

    name = "cxr_fracture_app"
    description = "Chest X-ray rib and clavicle fracture detection (AALS bundle)."
    version = "0.2.0"

    def compose(self) -> None:
        context = Application.init_app_context(self.argv)
        inference = FractureDetectionOperator(
            self, bundle_path=context.model_path, output_folder=Path(context.output_path), name="fracture_inference_op"
        )
        add_chest_radiograph_flow(
            self,
            inference,
            input_folder=context.input_path,
            output_folder=context.output_path,
            series_description="AI chest X-ray fracture detection, not for clinical use",
        )


def main() -> None:
    CXRFractureDetectionApp().run()


if __name__ == "__main__":
    main()
