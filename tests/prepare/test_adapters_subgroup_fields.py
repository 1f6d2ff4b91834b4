import pytest

from cxrkd_monai.prepare.subgroup_fields import age_in_years, joined_names, sex_code, subgroup_fields, view_code
from cxrkd_monai.report.subgroups import SUBGROUP_FIELDS, age_band


def test_sex_codes_and_unknowns():
    assert [sex_code(v) for v in ("Female", "f", " MALE ", "M", "Other", "O")] == ["F", "F", "M", "M", "O", "O"]
    assert [sex_code(v) for v in ("", "Unknown", "U", None)] == [None] * 4
    with pytest.raises(ValueError, match="sex 'X'"):
        sex_code("X")


def test_ages_from_numbers_and_dicom_age_strings():
    assert age_in_years("63") == 63 and isinstance(age_in_years("63.0"), int) and age_in_years("63.5") == 63.5
    assert age_in_years("063Y") == 63 and age_in_years("006M") == 0.5 and age_in_years("026W") == 0.5
    assert age_in_years("365D") == pytest.approx(365 / 365.25, abs=0.005)
    assert age_in_years("") is None and age_in_years("unknown") is None
    for bad in ("old", "-3", "inf", "63 years"):
        with pytest.raises(ValueError, match="age"):
            age_in_years(bad)


def test_views_body_parts_and_missing_fields_are_left_out():
    assert view_code(" ap  axial ") == "AP AXIAL" and view_code("Lateral") == "LATERAL" and view_code("") is None
    assert joined_names(["hand", "shoulder"]) == "hand+shoulder" and joined_names([]) is None
    assert subgroup_fields(sex="Female", age="63", view="pa") == {"sex": "F", "age": 63, "view": "PA"}
    assert subgroup_fields(sex="Unknown", age="", view=None, body_part=" Hand ") == {"body_part": "hand"}
    assert subgroup_fields() == {}


def test_fields_are_the_ones_the_report_groups_by():
    fields = subgroup_fields(sex="M", age="045Y", view="AP", body_part="Chest")
    assert set(fields) == set(SUBGROUP_FIELDS)
    assert age_band(fields["age"]) == "40–59" and age_band(subgroup_fields(age="006M")["age"]) == "0–17"
