"""Contract §9.3 "every immunotherapy class": the code lists of rules/therapy_classes.py, the therapy line's class
in the timeline (an unclassified drug is kept with a warning, never day 0), and the kinetics definitions' trace
note when a definition validated for checkpoint inhibitors is applied to another class."""

from __future__ import annotations

import dataclasses

import pytest

from rules import kinetics
from rules.engine import get_engine
from rules.evaluate import evaluate_patient, make_timeline
from rules.facts import TherapyLine
from rules.therapy_classes import (
    BISPECIFIC,
    CANCER_VACCINE,
    CELL_THERAPY,
    CONCOMITANT,
    CYTOKINE,
    ICI,
    ONCOLYTIC_VIRUS,
    UNCLASSIFIED,
    classify,
)
from tests.e2e.kinetics_cases import K1_CASE


@pytest.mark.parametrize(
    ("names", "atc", "expected_class", "agent", "by"),
    [
        (["Nivolumab 240 mg"], [], ICI, "nivolumab", "name"),
        (["OPDUALAG (nivolumab and relatlimab)"], [], ICI, "relatlimab", "name"),
        (["Yescarta", "Axicabtagene ciloleucel"], [], CELL_THERAPY, "axicabtagene ciloleucel", "name"),
        (["axicabtagene-ciloleucel"], [], CELL_THERAPY, "axicabtagene ciloleucel", "name"),  # hyphen for space
        (["Kimmtrak (tebentafusp-tebn)"], [], BISPECIFIC, "tebentafusp", "name"),
        (["TECLISTAMAB 10 mg/mL"], [], BISPECIFIC, "teclistamab", "name"),
        (["glofitamab"], [], BISPECIFIC, "glofitamab", "name"),
        (["talimogene laherparepvec"], [], ONCOLYTIC_VIRUS, "talimogene laherparepvec", "name"),
        (["sipuleucel-T"], [], CANCER_VACCINE, "sipuleucel-t", "name"),
        # The longer name wins: peginterferon is not read as interferon.
        (["peginterferon alfa-2b"], [], CYTOKINE, "peginterferon alfa-2b", "name"),
        (["interferon alfa-2b"], [], CYTOKINE, "interferon alfa-2b", "name"),
        # Exact ATC code without a name, then the ATC 4th-level class prefix.
        ([""], ["L01FX07"], BISPECIFIC, "blinatumomab", "atc"),
        ([""], ["L03AC01"], CYTOKINE, "aldesleukin", "atc"),
        (["Some PD-1 antibody"], ["L01FF99"], ICI, "some pd-1 antibody", "atc-class"),
        # L01FX is a mixed group: an unknown L01FX code is not a checkpoint inhibitor.
        ([""], ["L01FX99"], UNCLASSIFIED, "L01FX99", "none"),
        # Unknown name, no code: kept as unclassified; an ATC code outside group L: concomitant.
        (["investigational drug XY-123"], [], UNCLASSIFIED, "investigational drug xy-123", "none"),
        (["paracetamol"], ["N02BE01"], CONCOMITANT, "paracetamol", "atc-group"),
        # A word that merely contains an INN is not that INN.
        (["prenivolumabx"], [], UNCLASSIFIED, "prenivolumabx", "none"),
    ],
)
def test_classify(names, atc, expected_class, agent, by):
    found = classify(names, atc)
    assert (found.therapy_class, found.agent, found.recognised_by) == (expected_class, agent, by)
    assert found.source


def _with_therapy(facts, *lines: TherapyLine):
    return dataclasses.replace(facts, therapy_lines=lines)


def test_an_unclassified_drug_is_kept_with_a_warning_and_never_sets_day_0():
    engine = get_engine()
    facts = K1_CASE.facts()
    car_t = TherapyLine("axicabtagene ciloleucel", K1_CASE.c1d1, "CD19 CAR-T", therapy_class=CELL_THERAPY)
    unknown = TherapyLine("drug xy", K1_CASE.c1d1.replace(day=1), therapy_class=UNCLASSIFIED)
    timeline = make_timeline(_with_therapy(facts, unknown, car_t), engine)
    # The unclassified drug started 4 days earlier, but day 0 is the CAR-T infusion.
    assert timeline.treatment_start == K1_CASE.c1d1
    assert timeline.therapy.agent == "axicabtagene ciloleucel"
    assessment = evaluate_patient(_with_therapy(facts, unknown, car_t))
    assert any("unclassified therapy 'drug xy' from 2024-02-01" in w for w in assessment.warnings)
    assert any("cell therapy" in w and "axicabtagene" in w for w in assessment.warnings)
    # Alone, an unclassified drug leaves the start unknown (stated), it does not become C1D1.
    alone = make_timeline(_with_therapy(facts, unknown), engine)
    assert alone.treatment_start is None


@pytest.mark.parametrize(
    ("therapy_class", "agent"), [(CELL_THERAPY, "axicabtagene ciloleucel"), (BISPECIFIC, "teclistamab")]
)
def test_kinetics_on_another_class_are_computed_and_say_they_were_validated_for_checkpoint_inhibitors(
    therapy_class, agent
):
    """K1 (kinetics spec §7): S 40 → 44 → 80 mm, C1D1 2024-02-05, E2 2024-03-18 (42 days): fast progression OAK
    met (42 ≤ 42 days and 80·2 = 160 ≥ 44·3 = 132), Kas 2020 met (+81.8 % > 20 %, ΔTGR 193.98 > 100). On a CAR-T
    or a bispecific the numbers and verdicts are the same; every definition's reason carries the validation note."""
    engine = get_engine()
    facts = K1_CASE.facts()
    ici = kinetics.assess_kinetics(
        engine,
        make_timeline(facts, engine),
        evaluate_patient(facts).criterion("RECIST-1.1"),
    )
    other = dataclasses.replace(
        facts,
        therapy_lines=(dataclasses.replace(facts.therapy_lines[0], agent=agent, therapy_class=therapy_class),),
    )
    result = kinetics.assess_kinetics(
        engine, make_timeline(other, engine), evaluate_patient(other).criterion("RECIST-1.1")
    )
    assert [d.status for d in result.definitions] == [d.status for d in ici.definitions]
    assert kinetics.definition(result, "fast-progression-oak").status == "met"
    assert kinetics.definition(result, "kas-2020").status == "met"
    assert round(result.tgr_difference, 2) == 193.98
    for d in result.definitions:
        assert "VALIDATION: this definition was validated in immune checkpoint inhibitor cohorts only" in d.reason
        assert agent in d.reason
        assert "VALIDATION" not in kinetics.definition(ici, d.code).reason
    assert "THERAPY_CLASS_NOT_VALIDATED" in result.flags and "THERAPY_CLASS_NOT_VALIDATED" not in ici.flags
