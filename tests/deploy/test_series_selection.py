"""Chest radiograph series selection on synthetic series whose attributes are missing, varied and conflicting.

The ranking tests need no Deploy SDK; the operator tests load real DICOM files written here through the SDK's
``DICOMDataLoaderOperator`` and skip without it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from cxrkd_monai.deploy.series_selection import (
    CHEST_RADIOGRAPH_RULES,
    DX_FOR_PROCESSING_STORAGE,
    NoMatchingSeriesError,
    Preference,
    first_selected_series,
    no_matching_series_message,
    selection_messages,
)
from cxrkd_monai.phantom.dicom import write_radiograph_dicom


def series(number: int, **attributes) -> dict:
    """A frontal CR chest series' first-instance attributes, with ``attributes`` changed (``None`` removes one)."""
    base = {
        "Modality": "CR",
        "SeriesNumber": number,
        "SeriesDescription": f"series {number}",
        "SeriesInstanceUID": f"1.2.3.{number}",
        "BodyPartExamined": "CHEST",
        "ViewPosition": "PA",
        "ImageType": ["ORIGINAL", "PRIMARY"],
    }
    base.update(attributes)
    return {key: value for key, value in base.items() if value is not None}


def selected_index(candidates: list) -> int:
    """Input position of the series the rules select."""
    best = CHEST_RADIOGRAPH_RULES.rank(candidates)[0]
    assert best.selectable, best
    return best.index


@pytest.mark.parametrize("lateral_view", ["LL", "RL", "LAT", "LATERAL", "ll"])
@pytest.mark.parametrize("lateral_first", [True, False])
def test_pa_is_chosen_over_a_lateral_in_a_study_without_body_part(lateral_view, lateral_first):
    lateral = series(1, BodyPartExamined=None, ViewPosition=lateral_view)
    pa = series(2, BodyPartExamined=None, ViewPosition="PA")
    candidates = [lateral, pa] if lateral_first else [pa, lateral]
    ranking = CHEST_RADIOGRAPH_RULES.rank(candidates)
    assert candidates[ranking[0].index] is pa
    assert [a.selectable for a in ranking] == [True, False]
    assert ranking[1].rejections == (f"lateral view (ViewPosition {lateral_view!r}), not frontal",)
    assert ranking[0].notes[:2] == ("no BodyPartExamined", "frontal view (ViewPosition 'PA')")


def test_a_chest_body_part_does_not_make_a_lateral_selectable():
    ranking = CHEST_RADIOGRAPH_RULES.rank([series(1, ViewPosition="LL"), series(2, BodyPartExamined="HAND")])
    assert ranking[0].index == 1 and not ranking[1].selectable


@pytest.mark.parametrize("body_part", ["CHEST", "PORT CHEST", "THORAX PA", "chest", "Thorax"])
def test_body_part_naming_the_chest_anywhere_in_any_case_is_preferred(body_part):
    candidates = [series(1, BodyPartExamined=None), series(2, BodyPartExamined=body_part)]
    assert selected_index(candidates) == 1
    assert CHEST_RADIOGRAPH_RULES.assess(candidates[1]).rank_key[0] is Preference.MET
    assert CHEST_RADIOGRAPH_RULES.assess(candidates[1]).notes[0] == f"BodyPartExamined {body_part!r} names the chest"


def test_non_chest_body_part_ranks_after_chest_and_after_none_but_is_not_refused():
    hand, unnamed, chest = series(1, BodyPartExamined="HAND"), series(2, BodyPartExamined=""), series(3)
    assert selected_index([hand, unnamed, chest]) == 2
    assert selected_index([hand, unnamed]) == 1
    only_hand = CHEST_RADIOGRAPH_RULES.rank([hand])
    assert only_hand[0].selectable and only_hand[0].notes[0] == "BodyPartExamined 'HAND' is not the chest"


def test_frontal_view_ranks_before_a_missing_one_before_another_view():
    oblique, unnamed, ap = series(1, ViewPosition="RLO"), series(2, ViewPosition=None), series(3, ViewPosition="AP")
    assert selected_index([oblique, unnamed, ap]) == 2
    assert selected_index([oblique, unnamed]) == 1
    assert CHEST_RADIOGRAPH_RULES.assess(oblique).notes[1] == "ViewPosition 'RLO' is not frontal"


@pytest.mark.parametrize("image_type", [["DERIVED", "PRIMARY"], ["ORIGINAL", "SECONDARY"], "DERIVED\\SECONDARY"])
def test_original_primary_is_chosen_over_derived_or_secondary_whatever_the_series_numbers(image_type):
    derived = series(1, ImageType=image_type)
    original = series(7, ImageType="ORIGINAL\\PRIMARY\\POST_PROCESSED")
    assert selected_index([derived, original]) == 1
    assert selected_index([original, derived]) == 0
    assert CHEST_RADIOGRAPH_RULES.assess(original).notes[2] == (
        "ImageType ORIGINAL\\PRIMARY\\POST_PROCESSED (original primary)"
    )
    # no ImageType sits between the two
    assert selected_index([derived, series(2, ImageType=None)]) == 1


def test_dx_for_processing_is_refused_and_for_presentation_chosen():
    processing = series(1, Modality="DX", PresentationIntentType="FOR PROCESSING")
    presentation = series(2, Modality="DX", PresentationIntentType="FOR PRESENTATION", ImageType=["DERIVED"])
    ranking = CHEST_RADIOGRAPH_RULES.rank([processing, presentation])
    assert ranking[0].index == 1 and [a.selectable for a in ranking] == [True, False]
    assert ranking[1].rejections == ("PresentationIntentType 'FOR PROCESSING' (raw detector data)",)
    # without the attribute, the For Processing SOP class says the same; a DX without either qualifies
    by_class = CHEST_RADIOGRAPH_RULES.assess(series(3, Modality="DX", SOPClassUID=DX_FOR_PROCESSING_STORAGE))
    assert by_class.rejections == ("SOP class Digital X-Ray Image Storage - For Processing (raw detector data)",)
    assert CHEST_RADIOGRAPH_RULES.assess(series(4, Modality="dx")).selectable


@pytest.mark.parametrize(
    ("modality", "reason"), [("CT", "Modality 'CT', not CR or DX"), (None, "no Modality, not CR or DX")]
)
def test_modality_other_than_cr_or_dx_is_refused(modality, reason):
    assert CHEST_RADIOGRAPH_RULES.assess(series(1, Modality=modality)).rejections == (reason,)


def test_preferences_rank_body_part_then_view_then_image_type():
    # a PA that a CR vendor stores as DERIVED\PRIMARY beats an original without a view
    assert selected_index([series(1, ViewPosition=None), series(2, ImageType=["DERIVED", "PRIMARY"])]) == 1
    # a chest series without a view beats a PA without a body part
    assert selected_index([series(1, BodyPartExamined=None), series(2, ViewPosition=None)]) == 1


def test_ties_go_to_the_lowest_series_number_then_the_uid_whatever_the_input_order():
    candidates = [series(5), series(None), series(3)]
    assert selected_index(candidates) == 2 and selected_index(candidates[::-1]) == 0
    twins = [series(1, SeriesInstanceUID="1.2.3.9"), series(1, SeriesInstanceUID="1.2.3.10")]
    assert selected_index(twins) == 1 and selected_index(twins[::-1]) == 0


def test_messages_say_why_each_series_was_or_was_not_chosen_without_uids():
    candidates = [series(2, ViewPosition="LL"), series(1, ImageType="DERIVED\\PRIMARY"), series(3)]
    lines = selection_messages(CHEST_RADIOGRAPH_RULES.rank(candidates))
    assert lines == [
        "series 3 of 3 (SeriesNumber 3, 'series 3'): selected, ranked 1 of 2 selectable: BodyPartExamined 'CHEST' "
        "names the chest; frontal view (ViewPosition 'PA'); ImageType ORIGINAL\\PRIMARY (original primary)",
        "series 2 of 3 (SeriesNumber 1, 'series 1'): not selected, ranked 2 of 2 selectable: BodyPartExamined "
        "'CHEST' names the chest; frontal view (ViewPosition 'PA'); ImageType DERIVED\\PRIMARY (not original primary)",
        "series 1 of 3 (SeriesNumber 2, 'series 2'): not selectable: lateral view (ViewPosition 'LL'), not frontal",
    ]
    assert not any("1.2.3." in line for line in lines)
    unnamed = CHEST_RADIOGRAPH_RULES.assess(series(None, SeriesDescription=None), index=1, count=4)
    assert unnamed.label == "series 2 of 4 (no SeriesNumber)"
    assert "1.2.3" not in repr(unnamed)


def test_nothing_selectable_gives_every_series_reasons():
    ranking = CHEST_RADIOGRAPH_RULES.rank(
        [
            series(1, Modality="CT", ViewPosition="LAT"),
            series(2, Modality="DX", PresentationIntentType="FOR PROCESSING"),
        ]
    )
    assert not any(a.selectable for a in ranking)
    assert no_matching_series_message(ranking).splitlines() == [
        "No matching series: the bundles read a frontal CR or DX radiograph for presentation; found:",
        "  series 1 of 2 (SeriesNumber 1, 'series 1'): Modality 'CT', not CR or DX; lateral view (ViewPosition 'LAT'), "
        "not frontal",
        "  series 2 of 2 (SeriesNumber 2, 'series 2'): PresentationIntentType 'FOR PROCESSING' (raw detector data)",
    ]
    assert no_matching_series_message([]).endswith("found: no series")
    with pytest.raises(NoMatchingSeriesError, match="selected nothing"):
        first_selected_series([])


def test_pydicom_dataset_attributes_rank_as_plain_values(tmp_path):
    """Values as a file read back gives them: ``MultiValue`` ImageType, ``IS`` SeriesNumber, padded strings."""
    datasets = []
    for number, view, image_type in [(1, "LL", ["ORIGINAL", "PRIMARY"]), (2, "PA", ["DERIVED", "PRIMARY"])]:
        dataset = write_radiograph_dicom(
            np.full((4, 4), number, dtype=np.uint8), tmp_path / f"{number}.dcm", patient_id="p1"
        )
        dataset.SeriesNumber, dataset.ViewPosition, dataset.ImageType = number, view, image_type
        del dataset.BodyPartExamined
        dataset.save_as(tmp_path / f"{number}.dcm", enforce_file_format=True)
        datasets.append(pydicom.dcmread(tmp_path / f"{number}.dcm", stop_before_pixels=True))
    ranking = CHEST_RADIOGRAPH_RULES.rank(datasets)
    assert [a.index for a in ranking] == [1, 0] and [a.selectable for a in ranking] == [True, False]
    assert ranking[0].notes == (
        "no BodyPartExamined",
        "frontal view (ViewPosition 'PA')",
        "ImageType DERIVED\\PRIMARY (not original primary)",
    )


@pytest.fixture
def selector():
    """The SDK's study loader and the chest radiograph selector operator (skipped without the Deploy SDK)."""
    pytest.importorskip("monai.deploy.operators", reason="the MONAI Deploy App SDK (extra 'deploy') is not installed")
    from monai.deploy.core import Fragment
    from monai.deploy.operators.dicom_data_loader_operator import DICOMDataLoaderOperator

    from cxrkd_monai.deploy.operators import ChestRadiographSelectorOperator

    fragment = Fragment()
    return DICOMDataLoaderOperator(fragment, name="loader"), ChestRadiographSelectorOperator(fragment, name="selector")


def write_study(folder: Path, series_attributes: list[dict]) -> list[pydicom.Dataset]:
    """One study of single-instance CR series, each with its first-instance ``series_attributes`` set or removed."""
    study_uid = generate_uid()
    written = []
    for number, attributes in enumerate(series_attributes, start=1):
        path = folder / f"{number}.dcm"
        dataset = write_radiograph_dicom(np.full((4, 4), number, dtype=np.uint8), path, patient_id="p1")
        dataset.StudyInstanceUID, dataset.SeriesNumber = study_uid, number
        for keyword, value in attributes.items():
            if value is None:
                delattr(dataset, keyword)
            else:
                setattr(dataset, keyword, value)
        dataset.save_as(path, enforce_file_format=True)
        written.append(dataset)
    return written


def test_operator_selects_the_pa_of_a_loaded_study_and_logs_why_without_uids(selector, tmp_path, caplog):
    loader, chooser = selector
    datasets = write_study(
        tmp_path,
        [
            {"BodyPartExamined": None, "ViewPosition": "LL", "ImageType": ["ORIGINAL", "PRIMARY"]},
            {"BodyPartExamined": None, "ViewPosition": "PA"},
            {"Modality": "DX", "PresentationIntentType": "FOR PROCESSING", "ImageType": ["ORIGINAL", "PRIMARY"]},
        ],
    )
    studies = loader.load_data_to_studies(tmp_path)
    with caplog.at_level(logging.INFO, logger="cxrkd_monai.deploy.operators"):
        selected = chooser.filter(None, studies)
    assert len(selected) == 1 and len(selected[0].selected_series) == 1
    chosen = first_selected_series(selected)
    assert chosen.SeriesInstanceUID == datasets[1].SeriesInstanceUID
    assert selected[0].selected_series[0].selection_name == "Chest radiograph"
    lines = [record.getMessage() for record in caplog.records if record.name == "cxrkd_monai.deploy.operators"]
    assert len(lines) == 3
    assert sum("(SeriesNumber 2, " in line and ": selected, ranked 1 of 1" in line for line in lines) == 1
    assert sum("(SeriesNumber 1, " in line and "lateral view (ViewPosition 'LL')" in line for line in lines) == 1
    assert sum("(SeriesNumber 3, " in line and "'FOR PROCESSING'" in line for line in lines) == 1
    uids = {uid for ds in datasets for uid in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)}
    assert not any(uid in line for uid in uids for line in lines)

    everything = chooser.filter(None, studies, all_matched=True)
    assert [s.series.SeriesInstanceUID for s in everything[0].selected_series] == [datasets[1].SeriesInstanceUID]


def test_operator_raises_no_matching_series_with_each_series_reason(selector, tmp_path):
    loader, chooser = selector
    write_study(tmp_path, [{"Modality": "CT"}, {"ViewPosition": "LATERAL"}])
    with pytest.raises(NoMatchingSeriesError) as raised:
        chooser.filter(None, loader.load_data_to_studies(tmp_path))
    message = str(raised.value)
    assert message.startswith("No matching series: ")
    assert "(SeriesNumber 1, " in message and "Modality 'CT', not CR or DX" in message
    assert "(SeriesNumber 2, " in message and "lateral view (ViewPosition 'LATERAL')" in message
