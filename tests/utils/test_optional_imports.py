"""import_from_extra: the optional parts' imports, and the extra a missing one names."""

import json
import re
import sys

import pytest

from cxrkd_monai.utils.optional_imports import import_from_extra


def test_an_installed_module_is_returned():
    assert import_from_extra("json", "report", "Reading JSON") is json


def test_a_missing_module_names_the_purpose_and_the_extra_that_installs_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if matplotlib were not installed
    expected = (
        "The HTML evaluation report needs the module 'matplotlib', which is not installed: "
        'pip install "cxrkd-monai[report]".'
    )
    with pytest.raises(ImportError, match=re.escape(expected)) as raised:
        import_from_extra("matplotlib", "report", "The HTML evaluation report")
    assert isinstance(raised.value.__cause__, ModuleNotFoundError)
