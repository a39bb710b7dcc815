"""Kinetics alerts of ``clinical/criteria-kinetics-irae.md`` §3.4 on the worked examples K1, K3, K5, K7, K11."""

from __future__ import annotations

import datetime as dt

from rules.criteria import recist11
from rules.engine import get_engine
from rules.evaluate import make_timeline
from rules.findings.kinetics_alerts import CONFLICT_NOTE, findings
from rules.kinetics.assess import assess_kinetics
from rules.results import CriterionAssessment, TimepointResponse
from tests.rules.test_kinetics import K1, K3, K5, K7, K11, SHRINKING, KCase, KLesion, T, days_after

D = dt.date.fromisoformat


def alerts(case: KCase, overrides=None, irecist=None):
    engine = get_engine()
    timeline = make_timeline(case.facts(), engine, overrides)
    kinetics = assess_kinetics(engine, timeline, recist11.assess(engine, timeline, overrides), overrides)
    return {f.code: f for f in findings(kinetics, timeline, overrides, engine=engine, irecist=irecist)}


# Acceleration without RECIST PD: E0 50 mm (2024-01-02), E1 52 mm (2024-03-01), C1D1 2024-03-04, E2 62 mm
# (2024-03-29, day 25). Reference 59 days: TGR_ref 6.26. Experimental 28 days = 0.9199 months:
# ln(62/52) = 0.17589 → TG 0.5736 → TGR_exp 77.47; ΔTGR 71.21 > 50. %Δ = 10/52 = +19.2 % → RECIST SD.
ACCELERATION = KCase(
    "acceleration",
    D("2024-03-04"),
    {"E0": D("2024-01-02"), "E1": D("2024-03-01"), "E2": D("2024-03-29")},
    (
        KLesion("T1 liver", T, "liver", {"E0": 30, "E1": 31, "E2": 37}),
        KLesion("T2 lung", T, "lung", {"E0": 20, "E1": 21, "E2": 25}),
    ),
)


def test_k1_hyperprogression_names_every_definition_and_fast_progression():
    out = alerts(K1)
    assert set(out) == {"hyperprogression", "fast-progression"}
    hpd = out["hyperprogression"]
    assert hpd.severity == "critical" and hpd.alert and hpd.scan_date == D("2024-03-18")
    assert hpd.key == "kas-2020" and "Kas 2020" in hpd.summary  # never a bare "HPD" (spec §1.2)
    for title in (
        "Champiat 2017",
        "Saâda-Bouzid 2017",
        "Kato 2017",
        "Ferrara 2018",
        "Kanjanapan 2019",
        "Lo Russo 2019",
        "Matos 2020",
        "Kim 2019",
        "Kas 2020",
        "Fast progression (OAK",
    ):
        assert title in hpd.detail, title
    assert "Not met: Fast progression (Ferrara 2020), Early death" in hpd.detail
    assert "ΔTGR 193.98" in hpd.detail
    # RECIST PD at E2 is iUPD under iRECIST: the conflict note is in the HPD finding.
    assert CONFLICT_NOTE in hpd.detail
    assert "alert_hyperprogression row HPD" in hpd.rule
    fp = out["fast-progression"]
    # 42 days ≤ 42 and 80·2 = 160 ≥ 44·3 = 132.
    assert fp.severity == "critical" and fp.scan_date == D("2024-03-18") and fp.key == "fast-progression-oak"
    assert "160 vs 44·3 = 132" in fp.detail


def test_conflict_note_follows_irecist_when_given():
    e2 = D("2024-03-18")
    irecist = CriterionAssessment("iRECIST", "1.0", "test", {}, (TimepointResponse("iRECIST", e2, "iUPD"),))
    assert CONFLICT_NOTE in alerts(K1, irecist=irecist)["hyperprogression"].detail
    not_iupd = CriterionAssessment("iRECIST", "1.0", "test", {}, (TimepointResponse("iRECIST", e2, "iSD"),))
    assert CONFLICT_NOTE not in alerts(K1, irecist=not_iupd)["hyperprogression"].detail


def test_fast_progression_anchor_flag():
    # FP_ANCHOR = E1 (Ferrara 2020): E1 → E2 is 46 days > 42 → no fast-progression alert for K1.
    assert "fast-progression" not in alerts(K1, {"kinetics.FP_ANCHOR": "E1"})


def test_k3_and_k5_raise_nothing():
    # K3: Kas not met (ΔTGR 11.3 ≤ 100) at an in-window E2; ΔTGR ≤ 50 → no acceleration; FP not met.
    assert alerts(K3) == {}
    # K5: "informational Observation only" — ΔTGR 25.3 ≤ 50, so no KINETICS_ACCELERATION.
    assert alerts(K5) == {}


def test_kinetics_acceleration_without_recist_pd():
    out = alerts(ACCELERATION)
    assert set(out) == {"kinetics-acceleration"}
    finding = out["kinetics-acceleration"]
    assert finding.severity == "warning" and finding.scan_date == D("2024-03-29")
    assert "71.21" in finding.summary and "RECIST 1.1 at E2: SD" in finding.detail


def test_k7_hpd_not_evaluable_without_e0():
    out = alerts(K7)
    assert set(out) == {"hpd-not-evaluable"}
    finding = out["hpd-not-evaluable"]
    assert finding.severity == "info" and finding.key == "E0_MISSING"
    # Issue 15 / contract §9.4: recorded for the report, never an active alert; the reason code stays out of the
    # summary a person reads (it is in the detail and the key).
    assert finding.alert is False
    assert "E0_MISSING" not in finding.summary and "could not be evaluated" in finding.summary
    assert "E0_MISSING" in finding.detail and "Lo Russo 2019" in finding.detail  # the secondary ones that fired


def test_k11_fast_progression_death_branch_and_early_death():
    out = alerts(K11)
    assert set(out) == {"fast-progression", "early-death"}  # no E2: no hpd-not-evaluable
    fp = out["fast-progression"]
    assert fp.severity == "critical" and fp.scan_date == D("2024-06-10")
    assert "Retrospective" in fp.detail
    ed = out["early-death"]
    assert ed.severity == "info" and ed.alert is True and ed.scan_date == D("2024-06-10")
    assert "69 days after E1" in ed.detail


def test_early_death_from_the_fp_death_branch_alone():
    # Death 83 days after C1D1 (86 after E1): ED (E1 anchor) not met, OAK death branch met → early-death raised.
    out = alerts(K11.replace(deceased=days_after(K11.c1d1, 83)))
    assert {"fast-progression", "early-death"} <= set(out)


def test_primary_definition_flag():
    # Shrinking before therapy: Kas (default primary) met → hyperprogression.
    assert "hyperprogression" in alerts(SHRINKING)
    # Champiat as primary: ratio undefined → hpd-not-evaluable with UNDEFINED_RATIO, no hyperprogression.
    out = alerts(SHRINKING, {"kinetics.PRIMARY_HPD_DEFINITION": "champiat-2017"})
    assert "hyperprogression" not in out
    assert out["hpd-not-evaluable"].key == "UNDEFINED_RATIO"


def test_atypical_window_negative_is_not_evaluable():
    # K3 with E2 130 days after C1D1: Kas not met, but outside the 21-120-day window → hpd-not-evaluable.
    late = K3.replace(scans={**K3.scans, "E2": days_after(K3.c1d1, 130)})
    out = alerts(late)
    assert out["hpd-not-evaluable"].key == "WINDOW_ATYPICAL"
