"""Confirmation scan due for every criterion with a confirmation rule (issue 15; contract §9.4), from the worked
examples evaluated as of each scan (what the report of that scan knows). One alert lists every open window."""

from __future__ import annotations

import datetime as dt

import pytest

from rules.evaluate import evaluate_patient, facts_as_of
from rules.findings.confirmation import open_windows
from rules.scenario import c
from tests.rules import cases
from tests.rules import pet_cases as pc
from tests.rules.criteria.test_irano import glioma

D = dt.date.fromisoformat


def as_of(facts, day):
    return evaluate_patient(facts_as_of(facts, day))


def windows(facts, day):
    return {w.criterion: (w.category, w.since, w.start, w.end) for w in open_windows(as_of(facts, day).criteria, day)}


def due(facts, day):
    found = [f for f in as_of(facts, day).findings if f.code == "confirmation-due"]
    assert len(found) <= 1, "one confirmation-due alert per patient"
    return found[0] if found else None


def test_e9_iupd_and_unconfirmed_irpd_one_alert_with_each_window():
    # E9 TP3 2024-07-29: iRECIST iUPD → 2024-07-29 + 28 d = 2024-08-26 to + 56 d = 2024-09-23 (4–8 weeks);
    # irRECIST, irRC, imRECIST unconfirmed progression → the next scan ≥ 28 days later: on or after 2024-08-26.
    day = D("2024-07-29")
    assert windows(cases.E9.facts(), day) == {
        "iRECIST": ("iUPD", day, D("2024-08-26"), D("2024-09-23")),
        "irRECIST": ("irPD", day, D("2024-08-26"), None),
        "irRC": ("irPD", day, D("2024-08-26"), None),
        "imRECIST": ("PD", day, D("2024-08-26"), None),
    }
    finding = due(cases.E9.facts(), day)
    assert finding.summary == (
        "Confirmation scan due: iRECIST between 2024-08-26 and 2024-09-23; "
        "irRECIST, irRC, imRECIST on or after 2024-08-26"
    )
    assert finding.scan_date == day and finding.window_end == D("2024-09-23")
    assert finding.severity == "warning" and finding.alert
    assert len(finding.summary) < 140  # a CDS card summary
    # Each window's source is named (the rule file thresholds).
    assert "iRECIST:" in finding.source and "irRC:" in finding.source and "28 days" in finding.source


def test_irrc_alone_when_only_the_products_progress():
    # E3 TP1 2024-04-29: the bidimensional products rise ≥ 25 % over the nadir (irPD, unconfirmed) while RECIST
    # 1.1 and iRECIST do not progress: irRC asks for confirmation on or after 2024-04-29 + 28 = 2024-05-27.
    day = D("2024-04-29")
    assert windows(cases.E3.facts(), day) == {"irRC": ("irPD", day, D("2024-05-27"), None)}
    assert due(cases.E3.facts(), day).summary == "Confirmation scan due: irRC on or after 2024-05-27"


def test_confirmed_progression_closes_every_window():
    # E3 TP3 2024-07-22 (28 days after the iUPD of 2024-06-24): iCPD, irPD confirmed — nothing is due.
    assert windows(cases.E3.facts(), D("2024-07-22")) == {}
    assert due(cases.E3.facts(), D("2024-07-22")) is None


def test_responder_has_no_confirmation_due():
    for day in evaluate_patient(cases.E1.facts()).followup_dates:
        assert due(cases.E1.facts(), day) is None


def test_irano_provisional_pd_window():
    # 20×20 = 400 → 25×20 = 500 (+25 %: RANO PD) on 2024-03-04, within 6 months of C1D1: provisional; confirm on
    # follow-up imaging ≥ 84 days later (12 weeks [U]): 2024-03-04 + 84 = 2024-05-27. Confirmed on 2024-06-03.
    scans = {"BL": D("2024-01-02"), "TP1": D("2024-03-04"), "TP2": D("2024-06-03")}
    facts = glioma(scans, [c(20, 20), c(25, 20), c(28, 22)])
    assert windows(facts, D("2024-03-04")) == {"iRANO": ("PD", D("2024-03-04"), D("2024-05-27"), None)}
    assert due(facts, D("2024-03-04")).summary == "Confirmation scan due: iRANO on or after 2024-05-27"
    assert due(facts, D("2024-06-03")) is None


def test_lyric_indeterminate_response_window():
    # L1 week 8 (2024-03-04): IR1; re-image within about 12 weeks [U]: 2024-03-04 + 84 = 2024-05-27. Week 16
    # resolves it as flare (SD): nothing due.
    facts = pc.l1()
    assert windows(facts, D("2024-03-04")) == {"LYRIC": ("IR1", D("2024-03-04"), None, D("2024-05-27"))}
    assert due(facts, D("2024-03-04")).summary == "Confirmation scan due: LYRIC by 2024-05-27"
    assert due(facts, D("2024-04-29")) is None


@pytest.mark.parametrize("case", cases.ALL, ids=lambda case: case.name)
def test_at_most_one_alert_per_finding(case):
    assessment = evaluate_patient(case.facts())
    identities = [f.identity for f in assessment.findings]
    assert len(identities) == len(set(identities))
