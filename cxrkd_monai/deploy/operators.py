"""MONAI Deploy App SDK operators that run this package's bundles on a DICOM chest radiograph.

The app chain is the SDK's own DICOM plumbing around one bundle inference operator::

    DICOMDataLoaderOperator → ChestRadiographSelectorOperator → DICOMSeriesToVolumeOperator
        → VKDClassificationOperator | FractureDetectionOperator (+ a JSON file)
        → MeasurementReportWriterOperator (TID 1500 Comprehensive SR) | FindingsTextSRWriterOperator (Basic Text SR)

:func:`add_chest_radiograph_flow` wires it, so each app only chooses its inference operator; the SR format is
``tid1500`` (coded findings and fracture points, :mod:`cxrkd_monai.deploy.structured_report`) unless the
``CXRKD_SR_FORMAT`` environment variable or the ``sr_format`` argument says ``text``.

The inference operators run the bundle's own ``configs/inference.json`` through
:class:`monai.bundle.ConfigWorkflow`, with the selected DICOM instance as a one-item dataset: the same loader
(``LoadCXRd``: modality LUT, VOI window, ``BitsStored`` range, photometric check), letterbox, network, inferer,
postprocessing and prediction records as ``python -m monai.bundle run``. The volume that
``DICOMSeriesToVolumeOperator`` builds carries only the modality rescale, so its pixels would not match the
bundle's intensity contract; it is used to confirm that the series is one ``W × H × 1`` frame of the instance's
size. Importing this module needs the optional ``monai-deploy-app-sdk`` (extra ``deploy``).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from monai.bundle import ConfigParser, ConfigWorkflow
from monai.deploy.conditions import CountCondition
from monai.deploy.core import Application, ConditionType, Fragment, Operator, OperatorSpec
from monai.deploy.core.domain import Image
from monai.deploy.core.domain.dicom_series_selection import SelectedSeries, StudySelectedSeries
from monai.deploy.operators.dicom_data_loader_operator import DICOMDataLoaderOperator
from monai.deploy.operators.dicom_series_selector_operator import DICOMSeriesSelectorOperator
from monai.deploy.operators.dicom_series_to_volume_operator import DICOMSeriesToVolumeOperator
from monai.deploy.operators.dicom_text_sr_writer_operator import DICOMTextSRWriterOperator
from monai.deploy.operators.dicom_utils import ModelInfo, random_with_n_digits

from cxrkd_monai.deploy.findings import FindingCall, fracture_calls, fracture_findings, is_calibrated, vkd_calls
from cxrkd_monai.deploy.series_selection import (
    CHEST_RADIOGRAPH_RULES,
    ChestRadiographRules,
    NoMatchingSeriesError,
    first_selected_series,
    no_matching_series_message,
    selection_messages,
)
from cxrkd_monai.deploy.structured_report import measurement_report
from cxrkd_monai.handlers.failed_items import FailedItemsWriter
from cxrkd_monai.handlers.prediction_writer import PredictionWriter

__all__ = [
    "CHEST_RADIOGRAPH_RULES",
    "BundleInferenceOperator",
    "ChestRadiographSelectorOperator",
    "FindingsTextSRWriterOperator",
    "FractureDetectionOperator",
    "MeasurementReportWriterOperator",
    "NoMatchingSeriesError",
    "SR_FORMATS",
    "SR_FORMAT_ENV",
    "VKDClassificationOperator",
    "add_chest_radiograph_flow",
    "resolve_bundle_root",
]

logger = logging.getLogger(__name__)

INFERENCE_CONFIG = Path("configs") / "inference.json"
METADATA = Path("configs") / "metadata.json"

SR_FORMATS = ("tid1500", "text")
"""The SRs the apps write: a TID 1500 Comprehensive SR (coded, default) or a Basic Text SR (the findings text)."""
SR_FORMAT_ENV = "CXRKD_SR_FORMAT"
"""Environment variable that chooses the apps' SR format (one of :data:`SR_FORMATS`; ``tid1500`` when unset)."""


def resolve_bundle_root(model_path: str | Path) -> Path:
    """The bundle folder behind an app's model path (``-m`` or ``HOLOSCAN_MODEL_PATH``).

    Accepts the bundle folder itself (``<bundle>/configs/inference.json``) or a models folder holding exactly one
    bundle as a subfolder, which is where an application package copies ``--models <bundle>``.

    Raises:
        FileNotFoundError: naming ``model_path`` when neither layout is found.
    """
    model_path = Path(model_path)
    if (model_path / INFERENCE_CONFIG).is_file():
        return model_path
    candidates = (
        [child for child in sorted(model_path.iterdir()) if (child / INFERENCE_CONFIG).is_file()]
        if model_path.is_dir()
        else []
    )
    if len(candidates) != 1:
        raise FileNotFoundError(
            f"Model path {str(model_path)!r} is not a MONAI bundle: expected {INFERENCE_CONFIG} in it or in exactly "
            f"one of its subfolders, found {len(candidates)} such subfolders."
        )
    return candidates[0]


class ChestRadiographSelectorOperator(DICOMSeriesSelectorOperator):
    """:class:`DICOMSeriesSelectorOperator` that picks the best chest radiograph series of each study by ranking.

    The SDK's rules match attributes exactly and take the first match; here every series is judged by
    :class:`~cxrkd_monai.deploy.series_selection.ChestRadiographRules` (CR or DX, not for processing, not lateral;
    chest ``BodyPartExamined``, frontal ``ViewPosition`` and original primary ``ImageType`` preferred), the best
    one is selected, and one line per series says why it was or was not (series named by position, number and
    description; no DICOM UIDs, which the SDK's own selector would log).

    Named input ``dicom_study_list`` (list of ``DICOMStudy``); named output ``study_selected_series_list`` (list of
    ``StudySelectedSeries``, one per study that has a selectable series: its best one, or with ``all_matched`` all
    of them, best first).

    Args:
        fragment: the application.
        rules: the chest radiograph rules; :data:`~cxrkd_monai.deploy.series_selection.CHEST_RADIOGRAPH_RULES` by
            default.
        all_matched: the SDK's argument; when true every selectable series of a study is selected, best first.

    Raises:
        NoMatchingSeriesError: at compute time, when no series of any study is selectable; the message gives each
            series' reasons.

    Example::

        selector = ChestRadiographSelectorOperator(app, name="series_selector_op")
    """

    selection_name = "Chest radiograph"

    def __init__(
        self,
        fragment: Fragment,
        *args,
        rules: ChestRadiographRules = CHEST_RADIOGRAPH_RULES,
        **kwargs,
    ) -> None:
        self.rules = rules
        super().__init__(fragment, *args, **kwargs)

    def compute(self, op_input, op_output, context) -> None:
        studies = op_input.receive(self.input_name_study_list)
        op_output.emit(self.filter(None, studies, self._all_matched), self.output_name_selected_series)

    def filter(self, selection_rules, dicom_study_list, all_matched: bool = False, sort_by_sop_instance_count=False):
        """Ranks the series of each study with :attr:`rules`; ``selection_rules`` and the sort flag are unused."""
        selected, assessments = [], []
        for study in dicom_study_list or []:
            series = study.get_all_series()
            ranking = self.rules.rank([_first_instance(one) for one in series])
            for line in selection_messages(ranking):
                logger.info("Chest radiograph selection: %s", line)
            selectable = [assessment for assessment in ranking if assessment.selectable]
            assessments.extend(ranking)
            if selectable:
                study_selection = StudySelectedSeries(study)
                for assessment in selectable if all_matched else selectable[:1]:
                    study_selection.add_selected_series(
                        SelectedSeries(self.selection_name, series[assessment.index], None)
                    )
                selected.append(study_selection)
        if not selected:
            raise NoMatchingSeriesError(no_matching_series_message(assessments))
        return selected


def _first_instance(series) -> Mapping[str, Any]:
    """The pydicom dataset of a series' first instance, or no attributes for a series without instances."""
    instances = series.get_sop_instances()
    return instances[0].get_native_sop_instance() if instances else {}


class BundleInferenceOperator(Operator):
    """Runs a bundle's ``configs/inference.json`` on the selected single-frame radiograph.

    Named inputs:
        ``image``: the :class:`~monai.deploy.core.domain.Image` of ``DICOMSeriesToVolumeOperator``, ``(1, H, W)``
        in the SDK's slice order, i.e. ``W × H × 1`` in MONAI's axis order; more than one frame is refused.
        ``study_selected_series_list``: the selector's output, whose first series' first instance is read.

    Named output ``result``: the dict below, for the SR writers.

    File output ``<output_folder>/<result_filename>``::

        {"bundle": {"name", "version", "root"}, "study_instance_uid", "series_instance_uid", "sop_instance_uid",
         "image_size": [W, H], "prediction": <the bundle's own prediction record>, "findings": <text>,
         "calls": [{"name", "probability", "present", "points": [[x, y, score], ...]}, ...]}

    ``calls`` are the :class:`~cxrkd_monai.deploy.findings.FindingCall` of each class at the operating point, with
    only the points called at it: what the coded SR states.

    The weights are ``models/model.pt`` (loaded by the bundle's ``CheckpointLoader``) or, when there is no
    ``model.pt``, the TorchScript ``models/model.ts`` of ``ckpt_export``, which then replaces ``network`` and runs
    with the PyTorch backend (``inference_backend``: ONNX Runtime needs the eager network). The
    bundle's inference config must read its items from ``dataset#data``, hold one
    :class:`~cxrkd_monai.handlers.PredictionWriter` in ``handlers`` and publish into ``output_dir``, as both bundles
    of this package do. An image the bundle cannot read (its ``errors.csv`` row) fails the operator with that
    reason, instead of the bundle's exit status (``exit_on_failure`` is off here).

    Subclasses implement :meth:`findings` (record → text) and :meth:`finding_calls` (record → calls) and may set
    ``default_overrides``.

    Args:
        fragment: the application.
        bundle_path: the bundle folder, or a models folder holding one (see :func:`resolve_bundle_root`).
        output_folder: where the JSON result is written (created).
        result_filename: name of the JSON result file.
        config_overrides: bundle config values to override (``{"inference_mc_samples": 20}``).
        decision_threshold: probability from which a class is reported as a finding.
    """

    default_overrides: Mapping[str, Any] = {}

    def __init__(
        self,
        fragment: Fragment,
        *args,
        bundle_path: str | Path,
        output_folder: str | Path,
        result_filename: str = "result.json",
        config_overrides: Mapping[str, Any] | None = None,
        decision_threshold: float = 0.5,
        **kwargs,
    ) -> None:
        if not 0.0 <= decision_threshold <= 1.0:
            raise ValueError(f"decision_threshold must be in [0, 1], got {decision_threshold}.")
        self.bundle_root = resolve_bundle_root(bundle_path)
        self.bundle_metadata = ConfigParser.load_config_file(self.bundle_root / METADATA)
        self.output_folder = Path(output_folder)
        self.result_filename = result_filename
        self.config_overrides = {**self.default_overrides, **(config_overrides or {})}
        self.decision_threshold = decision_threshold
        self.checkpoint_overrides = self._checkpoint_overrides()
        super().__init__(fragment, *args, **kwargs)

    @property
    def model_info(self) -> ModelInfo:
        """Creator, name and version of the bundle, for the DICOM writers' ``model_info``."""
        return ModelInfo(
            creator=str(self.bundle_metadata.get("authors", "")),
            name=str(self.bundle_metadata.get("name", self.bundle_root.name)),
            version=str(self.bundle_metadata.get("version", "")),
        )

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("image")
        spec.input("study_selected_series_list")
        spec.output("result")

    def compute(self, op_input, op_output, context) -> None:
        image = op_input.receive("image")
        study_selected_series = op_input.receive("study_selected_series_list")
        width, height = single_frame_size(image)
        series = first_selected_series(study_selected_series)
        instance = series.get_sop_instances()[0].get_native_sop_instance()
        if (int(instance.Columns), int(instance.Rows)) != (width, height):
            raise ValueError(
                f"Selected series: volume of W x H = {width} x {height} does not match its instance's "
                f"Columns x Rows = {instance.Columns} x {instance.Rows}."
            )
        with tempfile.TemporaryDirectory() as work_dir:
            record = self.infer(instance_file(instance, Path(work_dir)))
        text = self.findings(record)
        result = {
            "bundle": {"name": self.model_info.name, "version": self.model_info.version, "root": str(self.bundle_root)},
            "study_instance_uid": str(instance.StudyInstanceUID),
            "series_instance_uid": str(instance.SeriesInstanceUID),
            "sop_instance_uid": str(instance.SOPInstanceUID),
            "image_size": [width, height],
            "prediction": record,
            "findings": text,
            "calls": [asdict(call) for call in self.finding_calls(record)],
        }
        self.output_folder.mkdir(parents=True, exist_ok=True)
        (self.output_folder / self.result_filename).write_text(json.dumps(result, indent=1))
        logger.info("%s: wrote %s", self.name, self.output_folder / self.result_filename)
        op_output.emit(result, "result")

    def infer(self, image_file: Path) -> dict:
        """The bundle's prediction record for one image file, from its own inference workflow."""
        with tempfile.TemporaryDirectory() as bundle_output:
            workflow = ConfigWorkflow(
                config_file=str(self.bundle_root / INFERENCE_CONFIG),
                meta_file=str(self.bundle_root / METADATA),
                logging_file=False,
                workflow_type="infer",
                **{
                    "bundle_root": str(self.bundle_root),
                    "output_dir": bundle_output,
                    "num_workers": 0,
                    "dataset#data": [{"image": str(image_file)}],
                    "exit_on_failure": False,
                    **self.checkpoint_overrides,
                    **self.config_overrides,
                },
            )
            workflow.initialize()
            workflow.run()
            handlers = workflow.parser.get_parsed_content("handlers")
            writers = [h for h in handlers if isinstance(h, PredictionWriter)]
            if len(writers) != 1:
                raise ValueError(
                    f"Bundle {str(self.bundle_root)!r}: {INFERENCE_CONFIG} 'handlers' must hold one PredictionWriter, "
                    f"found {len(writers)}."
                )
            failures = [failure for h in handlers if isinstance(h, FailedItemsWriter) for failure in h.failures]
            if failures:
                raise ValueError(f"Bundle inference could not read {failures[0]['image']}: {failures[0]['reason']}")
            records = json.loads((Path(bundle_output) / f"{writers[0].filename}.json").read_text())
            workflow.finalize()
        return records[0]

    def findings(self, record: Mapping[str, Any]) -> str:
        """The findings text of one prediction record."""
        raise NotImplementedError(f"{type(self).__name__} must implement findings(record).")

    def finding_calls(self, record: Mapping[str, Any]) -> list[FindingCall]:
        """The calls of one prediction record at its operating point, one per class."""
        raise NotImplementedError(f"{type(self).__name__} must implement finding_calls(record).")

    def _checkpoint_overrides(self) -> dict[str, Any]:
        checkpoint, torchscript = self.bundle_root / "models" / "model.pt", self.bundle_root / "models" / "model.ts"
        if checkpoint.is_file():
            return {"ckpt_path": str(checkpoint)}
        if torchscript.is_file():
            handlers = ConfigParser.load_config_file(self.bundle_root / INFERENCE_CONFIG)["handlers"]
            return {
                "ckpt_path": str(torchscript),
                "network": "$torch.jit.load(@ckpt_path, map_location=@device)",
                # OnnxRuntimeBackend cannot export or patch a TorchScript module.
                "inference_backend": "pytorch",
                # entries are handler configs or references such as "@failed_items"
                "handlers": [
                    h
                    for h in handlers
                    if not (isinstance(h, dict) and str(h.get("_target_")).endswith("CheckpointLoader"))
                ],
            }
        raise FileNotFoundError(f"Bundle {str(self.bundle_root)!r} has neither {checkpoint} nor {torchscript}.")


class VKDClassificationOperator(BundleInferenceOperator):
    """:class:`BundleInferenceOperator` for ``cxr_vkd_classification``: per-class probability ± uncertainty.

    With a calibrated bundle (``models/calibration.json``; the record carries ``calibrated_<class>``,
    ``threshold_<class>``, ``positive_<class>`` and ``operating_point``), the findings are the bundle's own calls at
    its operating point, and the text says which point and where it was chosen::

        Operating point: youden (per-class thresholds on the temperature-scaled probability, chosen on validation)
        Findings: Cardiomegaly, Pleural Effusion
        Cardiomegaly: probability 0.8123 (calibrated 0.7310, threshold 0.4420: positive), uncertainty 0.0412
        ...

    Without one (a record of ``prob_<class>``/``std_<class>`` only), a class is a finding from
    ``decision_threshold``::

        Operating point: probability >= 0.50 (no calibration in the bundle)
        Findings: Cardiomegaly, Pleural Effusion
        Cardiomegaly: probability 0.8123, uncertainty 0.0412

    Example::

        op = VKDClassificationOperator(app, bundle_path="cxr_vkd_classification", output_folder="out", name="vkd")
    """

    def finding_calls(self, record: Mapping[str, Any]) -> list[FindingCall]:
        return vkd_calls(record, self.decision_threshold)

    def findings(self, record: Mapping[str, Any]) -> str:
        calls = self.finding_calls(record)
        calibrated = is_calibrated(record)
        if calibrated:
            source = (self.bundle_metadata.get("calibration") or {}).get("fitted_on", {}).get("source")
            header = (
                f"Operating point: {record['operating_point']} (per-class thresholds on the temperature-scaled "
                f"probability{f', chosen on {source}' if source else ''})"
            )
        else:
            header = f"Operating point: probability >= {self.decision_threshold:.2f} (no calibration in the bundle)"
        lines = [header, f"Findings: {', '.join(call.name for call in calls if call.present) or 'none'}"]
        for call in calls:
            line = f"{call.name}: probability {call.probability:.4f}"
            if calibrated:
                threshold = record[f"threshold_{call.name}"]
                decision = {None: "no operating point", True: "positive", False: "negative"}[call.present]
                line += f" (calibrated {record[f'calibrated_{call.name}']:.4f}, " + (
                    f"{decision})" if threshold is None else f"threshold {threshold:.4f}: {decision})"
                )
            lines.append(f"{line}, uncertainty {record[f'std_{call.name}']:.4f}")
        return "\n".join(lines)


class FractureDetectionOperator(BundleInferenceOperator):
    """:class:`BundleInferenceOperator` for ``cxr_aals_fracture_detection``: type calls and points.

    With a calibrated bundle (``models/calibration.json``), the findings are the bundle's own calls at its
    image-level operating point and the points it calls at its lesion-level one (false positives per image), and the
    text says which points, their thresholds and what they achieved where they were chosen
    (:func:`~cxrkd_monai.deploy.findings.fracture_findings`, points in original-image pixels, x = column, y = row)::

        Operating point: youden (image-level thresholds on the temperature-scaled map maximum, chosen on validation)
        Findings: rib_fracture
        rib_fracture: positive (probability 0.0931, calibrated 0.6120, threshold 0.5310; on validation ...)
        Points: detections called at 1 false positives per image on validation (a score threshold per type)
        rib_fracture points: score >= 0.0731 (on validation lesion sensitivity 0.85, 0.94 false positives per image)
        rib_fracture point: x 412.5, y 230.0, score 0.0931

    Without one, a type is a finding from ``decision_threshold`` on its map maximum, and so is a point from its score.

    Example::

        op = FractureDetectionOperator(app, bundle_path="cxr_aals_fracture_detection", output_folder="out")
    """

    # The bundle would write probability maps into its output folder, which here is temporary.
    default_overrides = {"save_maps": False}

    def finding_calls(self, record: Mapping[str, Any]) -> list[FindingCall]:
        return fracture_calls(record, self.decision_threshold)

    def findings(self, record: Mapping[str, Any]) -> str:
        return fracture_findings(record, self.bundle_metadata.get("calibration"), self.decision_threshold)


class MeasurementReportWriterOperator(Operator):
    """Writes the inference's calls as a TID 1500 Comprehensive SR on the selected instance.

    Named inputs:
        ``result``: the result dict of a :class:`BundleInferenceOperator` (its ``calls``).
        ``study_selected_series_list``: the selector's output; the first series' first instance is the image the
        findings and points refer to, and its patient and study are copied.

    File output ``<output_folder>/<SOPInstanceUID>.dcm``: the SR of
    :func:`~cxrkd_monai.deploy.structured_report.measurement_report`, with the bundle's name and version as the
    algorithm (TID 4019).

    Args:
        fragment: the application.
        output_folder: where the SR is written (created).
        model_info: the bundle's name and version (:attr:`BundleInferenceOperator.model_info`).
        series_description: SeriesDescription of the SR.
    """

    def __init__(
        self,
        fragment: Fragment,
        *args,
        output_folder: str | Path,
        model_info: ModelInfo,
        series_description: str | None = None,
        **kwargs,
    ) -> None:
        self.output_folder = Path(output_folder)
        self.model_info = model_info
        self.series_description = series_description
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("result")
        spec.input("study_selected_series_list")

    def compute(self, op_input, op_output, context) -> None:
        result = op_input.receive("result")
        series = first_selected_series(op_input.receive("study_selected_series_list"))
        instance = series.get_sop_instances()[0].get_native_sop_instance()
        report = measurement_report(
            instance,
            [FindingCall.from_dict(call) for call in result["calls"]],
            algorithm_name=self.model_info.name,
            algorithm_version=self.model_info.version,
            series_number=random_with_n_digits(4),
            series_description=self.series_description,
        )
        self.output_folder.mkdir(parents=True, exist_ok=True)
        path = self.output_folder / f"{report.SOPInstanceUID}.dcm"
        report.save_as(path, enforce_file_format=True)
        logger.info("%s: wrote %s", self.name, path)


class FindingsTextSRWriterOperator(DICOMTextSRWriterOperator):
    """``DICOMTextSRWriterOperator`` fed by a :class:`BundleInferenceOperator`: a Basic Text SR of its findings text.

    Named inputs ``result`` (the inference's result dict, whose ``findings`` text is written) and
    ``study_selected_series_list`` (patient and study copied from its first series); other arguments as
    ``DICOMTextSRWriterOperator``.
    """

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("result")
        spec.input(self.input_name_dcm_series).condition(ConditionType.NONE)

    def compute(self, op_input, op_output, context) -> None:
        result = op_input.receive("result")
        series = first_selected_series(op_input.receive(self.input_name_dcm_series))
        self.write(result["findings"], series, self.output_folder)


def single_frame_size(image: Image) -> tuple[int, int]:
    """``(W, H)`` of a one-frame series volume.

    ``DICOMSeriesToVolumeOperator`` stacks instances as ``(D, H, W)``; swapped to MONAI's ``(W, H, D)`` a single
    radiograph is ``W × H × 1``, and the frame axis is dropped.

    Raises:
        ValueError: the volume is not 3D or holds more than one frame (a multi-image series).
    """
    volume = np.asarray(image.asnumpy())
    if volume.ndim != 3:
        raise ValueError(f"Series volume has shape {volume.shape}; expected (frames, rows, columns).")
    width, height, frames = np.swapaxes(volume, 0, 2).shape
    if frames != 1:
        raise ValueError(
            f"Series volume is W x H x D = {width} x {height} x {frames}; a chest radiograph series holds one frame."
        )
    return width, height


def instance_file(dataset, work_dir: Path) -> Path:
    """The DICOM file of a SOP instance: its source file, or a copy written to ``work_dir`` when it has none.

    The copy is named ``instance.dcm``, not after its UID, because the inference's messages name the file and
    must not carry DICOM identifiers.
    """
    source = getattr(dataset, "filename", None)
    if isinstance(source, str) and Path(source).is_file():
        return Path(source)
    path = work_dir / "instance.dcm"
    dataset.save_as(path, enforce_file_format=True)
    return path


def add_chest_radiograph_flow(
    app: Application,
    inference: BundleInferenceOperator,
    input_folder: str | Path,
    output_folder: str | Path,
    series_description: str = "AI findings, not for clinical use",
    sr_format: str | None = None,
) -> None:
    """Adds the DICOM chain around ``inference`` to ``app`` (call from ``compose``).

    ``DICOMDataLoaderOperator`` (runs once) → :class:`ChestRadiographSelectorOperator` →
    ``DICOMSeriesToVolumeOperator`` → ``inference`` → an SR writer, which copies the patient and study of the
    selected series into an SR in ``output_folder``: :class:`MeasurementReportWriterOperator` (``"tid1500"``) or
    :class:`FindingsTextSRWriterOperator` (``"text"``).

    Args:
        sr_format: one of :data:`SR_FORMATS`; ``None`` reads the :data:`SR_FORMAT_ENV` environment variable
            (``tid1500`` when unset), so that a packaged app is switched without a rebuild.

    Raises:
        ValueError: an unknown SR format, naming it and where it came from.

    Example::

        def compose(self):
            context = Application.init_app_context(self.argv)
            inference = VKDClassificationOperator(
                self, bundle_path=context.model_path, output_folder=context.output_path, name="vkd_inference_op"
            )
            add_chest_radiograph_flow(self, inference, context.input_path, context.output_path)
    """
    loader = DICOMDataLoaderOperator(
        app, CountCondition(app, 1), input_folder=Path(input_folder), name="study_loader_op"
    )
    source = "sr_format" if sr_format is not None else SR_FORMAT_ENV
    sr_format = sr_format if sr_format is not None else os.environ.get(SR_FORMAT_ENV, "tid1500")
    if sr_format not in SR_FORMATS:
        raise ValueError(f"{source} is {sr_format!r}; expected one of {SR_FORMATS}.")
    selector = ChestRadiographSelectorOperator(app, name="series_selector_op")
    to_volume = DICOMSeriesToVolumeOperator(app, name="series_to_volume_op")
    if sr_format == "tid1500":
        sr_writer = MeasurementReportWriterOperator(
            app,
            output_folder=Path(output_folder),
            model_info=inference.model_info,
            series_description=series_description,
            name="sr_writer_op",
        )
    else:
        sr_writer = FindingsTextSRWriterOperator(
            app,
            output_folder=Path(output_folder),
            model_info=inference.model_info,
            copy_tags=True,
            custom_tags={"SeriesDescription": series_description},
            name="sr_writer_op",
        )
    series = {("study_selected_series_list", "study_selected_series_list")}
    app.add_flow(loader, selector, {("dicom_study_list", "dicom_study_list")})
    app.add_flow(selector, to_volume, series)
    app.add_flow(to_volume, inference, {("image", "image")})
    app.add_flow(selector, inference, series)
    app.add_flow(inference, sr_writer, {("result", "result")})
    app.add_flow(selector, sr_writer, series)
