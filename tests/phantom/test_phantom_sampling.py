"""sample_findings: requested prevalences are honoured, independently per finding kind."""

from __future__ import annotations

import numpy as np

from cxrkd_monai.phantom import (
    DEFAULT_PREVALENCE,
    FINDING_KINDS,
    sample_anatomy,
    sample_findings,
)
from tests.phantom.conftest import ONLY


def test_prevalence_is_honoured():
    rng = np.random.default_rng(4)
    anatomy = sample_anatomy(rng)
    draws = 600
    requested = {**DEFAULT_PREVALENCE, "nodule": 0.5, "pneumothorax": 0.05}
    counts = dict.fromkeys(FINDING_KINDS, 0)
    for _ in range(draws):
        for kind in {f.kind for f in sample_findings(rng, anatomy, requested)}:
            counts[kind] += 1
    for kind in FINDING_KINDS:
        assert abs(counts[kind] / draws - requested[kind]) < 0.07, (kind, counts[kind])


def test_changing_one_prevalence_leaves_the_other_findings_unchanged():
    anatomy = sample_anatomy(np.random.default_rng(5))
    for seed in range(10):
        alone = sample_findings(np.random.default_rng(seed), anatomy, {**ONLY, "pneumothorax": 1.0})
        together = sample_findings(
            np.random.default_rng(seed), anatomy, {**ONLY, "pneumothorax": 1.0, "rib_fracture": 1.0}
        )
        assert [f for f in together if f.kind == "pneumothorax"] == list(alone)
        assert any(f.kind == "rib_fracture" for f in together)
