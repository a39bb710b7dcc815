"""Which criteria are reported: by ``PatientFacts.cancer_type`` (words or SNOMED CT codes) and by PET data."""

from __future__ import annotations

import dataclasses

import pytest

from rules.applicability import (
    GLIOMA_CRITERIA,
    LYMPHOMA_CRITERIA,
    PET_SOLID,
    RECIST_FAMILY,
    applicable_criteria,
    cancer_category,
)
from rules.engine import get_engine
from rules.evaluate import make_timeline
from tests.rules import cases
from tests.rules import pet_cases as pc


def applicable(facts):
    return applicable_criteria(facts, make_timeline(facts, get_engine()))


def test_solid_tumour_without_pet_gets_the_recist_family():
    assert applicable(cases.E1.facts()) == set(RECIST_FAMILY)
    assert "RECIST-1.1" in RECIST_FAMILY and "itRECIST" in RECIST_FAMILY


def test_solid_tumour_with_pet_values_adds_the_pet_criteria():
    expected = set(RECIST_FAMILY) | {"PERCIST-1.0", "imPERCIST5", "PERCIMT", "iPERCIST", "EORTC-PET"}
    assert set(PET_SOLID) == expected - set(RECIST_FAMILY)
    assert applicable(pc.e5_pet()) == expected
    assert applicable(pc.p1()) == expected


def test_pet_only_at_baseline_is_not_enough():
    facts = pc.e5_pet()
    baseline = cases.E5.scans["BL"]
    facts = dataclasses.replace(
        facts,
        measurements=tuple(
            m if m.scan_date == baseline else dataclasses.replace(m, sul_peak=None) for m in facts.measurements
        ),
        references=tuple(r for r in facts.references if r.scan_date == baseline),
    )
    assert applicable(facts) == set(RECIST_FAMILY)


def test_lymphoma_and_glioma():
    assert applicable(pc.l1()) == {"Lugano-2014", "LYRIC"} == set(LYMPHOMA_CRITERIA)
    glioma = dataclasses.replace(cases.E1.facts(), cancer_type="glioma")
    assert applicable(glioma) == {"RANO", "iRANO"} == set(GLIOMA_CRITERIA)
    # PET values do not bring PERCIST to a lymphoma patient (Lugano reads PET with Deauville).
    assert applicable(dataclasses.replace(pc.e5_pet(), cancer_type="lymphoma")) == set(LYMPHOMA_CRITERIA)


@pytest.mark.parametrize(
    "value, category",
    [
        (None, "solid"),
        ("", "solid"),
        ("solid", "solid"),
        ("Solid tumour", "solid"),
        ("melanoma", "solid"),
        ("lymphoma", "lymphoma"),
        ("Hodgkin lymphoma", "lymphoma"),
        ("118600007", "lymphoma"),
        ("http://snomed.info/sct|118599009", "lymphoma"),
        ("118601006", "lymphoma"),
        ("GLIOMA", "glioma"),
        ("glioblastoma", "glioma"),
        ("393563007", "glioma"),
    ],
)
def test_cancer_type_values(value, category):
    assert cancer_category(value) == category
