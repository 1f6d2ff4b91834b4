"""MONAI Deploy app: chest radiograph (DICOM CR/DX) → VKD multi-label classification → DICOM SR (TID 1500) + JSON.

Run locally from the repository root (``-m``: the ``cxr_vkd_classification`` bundle folder with its weights)::

    python -m deploy.cxr_vkd_app -i dicom_dir -o output -m bundles/cxr_vkd_classification
"""

from __future__ import annotations

from pathlib import Path

from monai.deploy.core import Application

from cxrkd_monai.deploy.operators import VKDClassificationOperator, add_chest_radiograph_flow


class CXRVKDClassificationApp(Application):
    """Per-class probabilities and Monte Carlo uncertainty of the VKD bundle for one chest radiograph series.

    Inputs come from ``-i/-o/-m`` or ``HOLOSCAN_INPUT_PATH``, ``HOLOSCAN_OUTPUT_PATH`` and ``HOLOSCAN_MODEL_PATH``.
    Outputs in the output folder: ``<SOPInstanceUID>.dcm`` (TID 1500 Comprehensive SR, patient and study copied
    from the input series: each class's code, probability and call; a Basic Text SR with
    ``CXRKD_SR_FORMAT=text``) and ``result.json`` (the bundle's prediction record, the findings text and the calls).
    """

    name = "cxr_vkd_app"
    description = "Chest X-ray multi-label classification with uncertainty (VKD bundle)."
    version = "0.2.0"

    def compose(self) -> None:
        context = Application.init_app_context(self.argv)
        inference = VKDClassificationOperator(
            self, bundle_path=context.model_path, output_folder=Path(context.output_path), name="vkd_inference_op"
        )
        add_chest_radiograph_flow(
            self,
            inference,
            input_folder=context.input_path,
            output_folder=context.output_path,
            series_description="AI chest X-ray classification, not for clinical use",
        )


def main() -> None:
    CXRVKDClassificationApp().run()


if __name__ == "__main__":
    main()
