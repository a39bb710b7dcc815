"""Alerts for action at the rules level (issue 15; contract §9.4): only findings that hold raise an alert, "not
evaluable" is recorded and never alerted, and a patient has one finding per alert identity."""

from __future__ import annotations

import dataclasses

import pytest

from rules.evaluate import current_findings, evaluate_patient
from tests.rules import cases
from tests.rules import irae_cases as ic


def alerting(facts):
    return [f for f in evaluate_patient(facts).findings if f.alert]


@pytest.mark.parametrize("case", (cases.E1, cases.E11, cases.E15), ids=lambda case: case.name)
def test_responders_raise_no_alert(case):
    # E1 PR (−30 %), E11 CR, E15 PR then durable response: nothing to act on.
    assert alerting(case.facts()) == []


@pytest.mark.parametrize("case", cases.ALL, ids=lambda case: case.name)
def test_hyperprogression_not_evaluable_is_recorded_never_an_alert(case):
    # None of the worked examples has a pre-baseline scan (E0): the primary definition (Kas 2020) cannot be
    # evaluated. The finding is kept for the report, with the reason code in its key and detail only.
    [finding] = [f for f in evaluate_patient(case.facts()).findings if f.code == "hpd-not-evaluable"]
    assert finding.alert is False and finding.key == "E0_MISSING"
    assert "E0_MISSING" not in finding.summary and "E0_MISSING" in finding.detail


def test_durable_response_is_shown_not_alerted():
    # E15: continuous PR from 2024-03-04, lasting ≥ 6 months within 12 months of C1D1 (DRR, Kaufman 2017).
    durable = [f for f in evaluate_patient(cases.E15.facts()).findings if f.code == "durable-response"]
    assert [(f.key, f.alert) for f in durable] == [("RECIST-1.1", False), ("iRECIST", False)]  # one per criterion


def k9_with_later_scan(day: str, l2_ld: float):
    """K9, then a later scan where L1 and L3 still respond and L2 lung measures ``l2_ld``."""
    later = [
        ic.m("L1 liver", day, 14, 12, organ="liver"),
        ic.m("L2 lung", day, l2_ld, 15, organ="lung"),
        ic.m("L3 node", day, 19, 11, organ="lymph node", nodal=True),
    ]
    facts = ic.k9()
    return dataclasses.replace(facts, measurements=facts.measurements + tuple(later))


def test_dissociated_response_holds_only_while_the_latest_scan_shows_it():
    # K9 at 2024-03-06: L2 lung 20 → 27 mm (+35 %, +7 mm) against responding L1/L3 → dissociated response.
    [dissociated] = [f for f in alerting(ic.k9()) if f.code == "dissociated-response"]
    assert str(dissociated.scan_date) == ic.K9_FU
    # Still dissociated at a later scan (L2 28 mm = +40 %, +8 mm): ONE finding, dated to the latest scan (the
    # same alert, updated), not one per scan.
    still = [f for f in alerting(k9_with_later_scan("2024-05-06", 28)) if f.code == "dissociated-response"]
    assert [str(f.scan_date) for f in still] == ["2024-05-06"]
    # L2 back to 21 mm (+5 %, +1 mm: neither progressing nor responding): no longer dissociated → no finding, so
    # the service resolves the alert.
    assert [f for f in alerting(k9_with_later_scan("2024-05-06", 21)) if f.code == "dissociated-response"] == []


def test_current_findings_keeps_the_latest_per_identity():
    first, second = (
        dataclasses.replace(
            evaluate_patient(cases.E7.facts()).findings[-1], scan_date=day, key=day.isoformat(), summary=str(day)
        )
        for day in (cases.E7.scans["TP1"], cases.E7.scans["TP2"])
    )
    assert first.code == "pseudoprogression" and first.identity == second.identity == "pseudoprogression"
    assert current_findings([second, first], cases.E7.scans["TP2"]) == (second,)
    # Findings that are distinct per key (one irAE per organ pattern) are kept apart.
    a, b = (dataclasses.replace(first, code="irae", key=k, distinct_by_key=True) for k in ("colitis", "hepatitis"))
    assert len(current_findings([a, b], None)) == 2
