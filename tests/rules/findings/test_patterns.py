"""Atypical response patterns (kinetics spec §4.2–§4.4): K9/K9b dissociated response, abscopal, durable response."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from fractions import Fraction

import pytest

from rules.criteria import recist11
from rules.engine import get_engine
from rules.evaluate import make_timeline
from rules.facts import LesionRole
from rules.findings import patterns
from rules.results import CriterionAssessment, TimepointResponse
from tests.rules import irae_cases as ic

D = dt.date.fromisoformat


@pytest.fixture(scope="module")
def engine():
    return get_engine()


def changes(facts, engine):
    tl = make_timeline(facts, engine)
    return {c.lesion.lesion_id: c.change for c in patterns.lesion_changes(tl, tl.followups[0], engine=engine)}


# --- K9 / K9b ----------------------------------------------------------------------------------------------


def test_k9_dissociated_response_with_recist_sd(engine):
    # L1 liver 30 → 15: −15 mm, −50.0 % ≤ −30 % → responding.
    # L2 lung 20 → 27: +7 mm, +35.0 % (≥ +20 % and ≥ 5 mm) → progressing.
    # L3 node SA 18 → 12: −6 mm, −33.3 % → responding.
    # Sum 68 → 54: −14 mm, −20.6 %: RECIST 1.1 SD (neither ≤ −30 % nor ≥ +20 %).
    tl = make_timeline(ic.k9(), engine)
    recist = recist11.assess(engine, tl)
    assert recist.timepoints[0].category == "SD"
    assert recist.timepoints[0].sum_mm == Decimal("54") and recist.timepoints[0].baseline_sum == Decimal("68")
    assert changes(ic.k9(), engine) == {"L1 liver": "responding", "L2 lung": "progressing", "L3 node": "responding"}
    (f,) = patterns.dissociated_response(tl)
    assert (f.code, f.severity, f.alert, f.scan_date) == ("dissociated-response", "warning", True, D(ic.K9_FU))
    assert f.summary.startswith(patterns.DISSOCIATED_WORDING)
    assert "discordant: L2 lung" in f.summary
    assert "L2 lung 20 mm → 27 mm (+7 mm, +35.00 %): progressing" in f.detail
    assert "L3 node 18 mm → 12 mm (-6 mm, -33.33 %): responding" in f.detail


def test_k9b_new_lesion_keeps_it_dissociated_and_recist_pd(engine):
    # K9b: a new 12 mm lung nodule at follow-up → RECIST 1.1 PD; still DISSOCIATED, with a new lesion.
    tl = make_timeline(ic.k9(with_new_lesion=True), engine)
    assert recist11.assess(engine, tl).timepoints[0].category == "PD"
    (f,) = patterns.dissociated_response(tl)
    assert "N1 lung (new)" in f.summary
    assert "new lesion(s), counted as progressing: N1 lung" in f.detail


def test_only_new_lesion_besides_responders_is_dissociated(engine):
    # L2 stable instead: L1/L3 respond, the new nodule alone makes it dissociated (§4.2 '∃ new lesion').
    facts = ic.k9(with_new_lesion=True)
    facts = type(facts)(
        **{
            **facts.__dict__,
            "measurements": tuple(
                ic.m("L2 lung", ic.K9_FU, 21, 15) if (m.lesion_id == "L2 lung" and m.scan_date == D(ic.K9_FU)) else m
                for m in facts.measurements
            ),
        }
    )
    (f,) = patterns.dissociated_response(make_timeline(facts, engine))
    assert "discordant: N1 lung (new)" in f.summary


# --- boundaries of §4.2 ----------------------------------------------------------------------------------


def test_minus_30_percent_exactly_is_responding(engine):
    # A 30 → 21: (21 − 30)/30 = −9/30 = −30 % exactly ≤ −30 % (inclusive) → responding.
    # A 30 → 21.1: −29.67 % → neither.
    assert changes(ic.two_lesions((30, 20), (21, 20)), engine)["A liver"] == "responding"
    assert changes(ic.two_lesions((30, 20), (21.1, 20)), engine)["A liver"] == "neither"


def test_plus_20_percent_needs_5_mm(engine):
    # B 20 → 24: +20 % exactly but +4 mm < 5 mm → neither; B 25 → 30: +20 % and +5 mm → progressing.
    assert changes(ic.two_lesions((30, 20), (21, 24)), engine)["B lung"] == "neither"
    assert changes(ic.two_lesions((30, 25), (21, 30)), engine)["B lung"] == "progressing"
    tl = make_timeline(ic.two_lesions((30, 20), (21, 24)), engine)
    assert patterns.dissociated_response(tl) == []
    tl = make_timeline(ic.two_lesions((30, 25), (21, 30)), engine)
    assert len(patterns.dissociated_response(tl)) == 1


def test_disappeared_lesion_counts_as_responding_and_measured_nontargets_are_included(engine):
    facts = ic.facts(
        "DR-nontarget",
        "2024-01-15",
        [
            ic.m("A liver", "2024-01-10", 30, role=LesionRole.TARGET, organ="liver"),
            ic.m("A liver", "2024-03-06", 0, 0, organ="liver", status=ic.LesionStatus.ABSENT),
            ic.m("NT adrenal", "2024-01-10", 20, role=LesionRole.NON_TARGET, organ="adrenal"),
            ic.m("NT adrenal", "2024-03-06", 26, organ="adrenal"),
        ],
    )
    # A: 30 → 0 (−100 %) responding; NT adrenal 20 → 26: +30 %, +6 mm → progressing.
    assert changes(facts, engine) == {"A liver": "responding", "NT adrenal": "progressing"}


def test_locally_treated_lesion_is_left_out(engine):
    facts = ic.two_lesions((30, 25), (21, 30))
    facts = type(facts)(
        **{
            **facts.__dict__,
            "local_therapies": (ic.LocalTherapy(ic.LocalTherapyKind.RADIOTHERAPY, D("2024-02-01"), ("A liver",)),),
        }
    )
    assert "A liver" not in changes(facts, engine)
    assert patterns.dissociated_response(make_timeline(facts, engine)) == []


def test_irae_coded_new_lesion_is_not_progressing(engine):
    # A sarcoid-like node is not a tumour (is_tumour, §5.3 Q1): E1 responders alone are not dissociated.
    tl = make_timeline(ic.sarcoid_like(), engine)
    assert patterns.dissociated_response(tl) == []


# --- abscopal (§4.3) -------------------------------------------------------------------------------------


def test_abscopal_candidate_at_30_percent(engine):
    # RT of L1 on 2024-03-15. L2 (untreated) last pre-T 20 mm (2024-03-06) → 14 mm on 2024-06-10:
    # (14 − 20)/20 = −30 % exactly ≤ −30 % → candidate; 87 days = 2.86 months ≤ 12.
    (f,) = patterns.abscopal_response(make_timeline(ic.abscopal(14), engine))
    assert (f.code, f.severity, f.alert, f.scan_date) == ("abscopal-response", "info", True, D("2024-06-10"))
    # Issue 15: no reason codes in what a person reads; the summary says "possible", never a causal claim.
    assert "ABSCOPAL_RESPONSE_CANDIDATE" not in f.summary and f.summary.startswith("Possible abscopal response")
    assert "L2 liver: 20 mm on 2024-03-06 → 14 mm on 2024-06-10 (-30.00 %)" in f.detail
    assert "L1 lung" not in f.detail  # the irradiated lesion itself shrank 32 → 12 but is in Λ
    # Wording must not assert causation (§4.3).
    assert "not a causal attribution" in f.detail
    for word in ("caused by", "due to radiotherapy", "induced"):
        assert word not in (f.summary + f.detail).lower()


@pytest.mark.parametrize(
    "facts",
    [
        ic.abscopal(15),  # −25 %: not enough
        ic.abscopal(10, flag_irradiated_l2=True),  # L2 inside the field (flagged irradiated): local response
        ic.abscopal(10, after_day="2025-03-16"),  # 366 days = 12.02 months > 12: outside the window
    ],
)
def test_abscopal_negative_cases(engine, facts):
    assert patterns.abscopal_response(make_timeline(facts, engine)) == []


def test_abscopal_window_is_inclusive(engine):
    # 2024-03-15 → 2025-03-15 = 365 days = 11.99 months ≤ 12.
    assert len(patterns.abscopal_response(make_timeline(ic.abscopal(10, after_day="2025-03-15"), engine))) == 1


def test_no_local_therapy_no_abscopal(engine):
    assert patterns.abscopal_response(make_timeline(ic.k9(), engine)) == []


# --- durable response (§4.4) -----------------------------------------------------------------------------

C1D1 = D("2024-01-15")


def assessment(criterion, points):
    return CriterionAssessment(
        criterion, "test", "test", {}, tuple(TimepointResponse(criterion, D(day), category) for day, category in points)
    )


@pytest.mark.parametrize("end, durable", [("2024-09-09", False), ("2024-09-10", True)])
def test_durable_response_six_month_boundary(engine, end, durable):
    # PR from 2024-03-11 (day 56): to 2024-09-09 = 182 days = 5.98 months < 6; to 2024-09-10 = 183 days = 6.01.
    a = assessment("RECIST-1.1", [("2024-03-11", "PR"), ("2024-06-10", "PR"), (end, "CR")])
    found = patterns.durable_response([a], C1D1)
    assert bool(found) is durable
    if durable:
        (f,) = found
        assert (f.code, f.alert, f.severity, f.key, f.scan_date) == (
            "durable-response",
            False,
            "info",
            "RECIST-1.1",
            D(end),
        )
        assert "lasted 183 days (6.01 months)" in f.detail


@pytest.mark.parametrize("start, durable", [("2025-01-14", True), ("2025-01-15", False)])
def test_durable_response_must_begin_within_12_months(engine, start, durable):
    # C1D1 2024-01-15 → 2025-01-14 = 365 days = 11.99 months ≤ 12; 2025-01-15 = 366 days = 12.02 > 12.
    s = D(start)
    a = assessment("RECIST-1.1", [(start, "PR"), ((s + dt.timedelta(days=200)).isoformat(), "PR")])
    assert bool(patterns.durable_response([a], C1D1)) is durable


def test_durable_response_on_irecist_and_interruptions(engine):
    irecist = assessment(
        "iRECIST",
        [
            ("2024-03-11", "iPR"),
            ("2024-05-06", "iUPD"),
            ("2024-07-01", "iPR"),
            ("2024-09-01", "NE"),
            ("2025-01-06", "iCR"),
        ],
    )
    # The iUPD breaks the first run; the second (07-01 → 2025-01-06, NE inside) lasts 189 days ≥ 6 months.
    (f,) = patterns.durable_response([irecist], C1D1)
    assert f.key == "iRECIST" and "lasted 189 days" in f.detail
    # With patterns.drr_ne_interrupts on, the NE ends the run (07-01 → 07-01): not durable.
    assert patterns.durable_response([irecist], C1D1, overrides={"patterns.drr_ne_interrupts": True}) == []
    # Other criteria are not counted (DRR is defined on RECIST/iRECIST timepoints).
    assert patterns.durable_response([assessment("irRC", [("2024-03-11", "irPR"), ("2024-12-01", "irPR")])], C1D1) == []


def test_durable_response_needs_treatment_start(engine):
    a = assessment("RECIST-1.1", [("2024-03-11", "PR"), ("2024-12-01", "PR")])
    assert patterns.durable_response([a]) == []
    assert len(patterns.durable_response([a], C1D1)) == 1


def test_months_use_365_25_days_per_year(engine):
    ruleset = engine.rulebase[patterns.CRITERION]
    assert patterns.months_between(D("2024-01-01"), D("2024-07-01"), ruleset) == Fraction(182 * 12, 1) / Fraction(
        "365.25"
    )
