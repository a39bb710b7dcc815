"""Findings from the iRECIST assessment (kinetics spec §4.1; size spec §2.4–2.5): confirmation due,
pseudoprogression and late response after iCPD, built from the worked examples and the iRECIST timelines."""

from __future__ import annotations

import datetime as dt

from rules.findings.pseudoprogression import findings
from tests.rules import cases
from tests.rules.irecist_cases import (
    IUPD_THEN_NE,
    TWO_EPISODES,
    D,
    c,
    early_scan_case,
    new_lesion,
    run_both,
    single_target,
)


def found(case, overrides=None, *, with_recist=True):
    timeline, irecist, recist = run_both(case, overrides)
    return findings(timeline, irecist, recist if with_recist else None)


def by_code(result, code):
    return [f for f in result if f.code == code]


def test_e7_pseudoprogression_names_the_iupd_and_the_recist_pd():
    # E7: new lesion at TP1 2024-07-01 → RECIST PD, iRECIST iUPD; TP2 2024-08-26 reset to iPR (−12 mm).
    result = found(cases.E7)
    [pseudo] = by_code(result, "pseudoprogression")
    assert pseudo.scan_date == D("2024-08-26")
    assert pseudo.severity == "info" and pseudo.alert is True
    assert pseudo.rule == "irecist.pseudoprogression" and pseudo.source
    assert "iUPD on 2024-07-01" in pseudo.detail and "iPR on 2024-08-26" in pseudo.detail
    # 2024-07-01 → 2024-08-26 = 56 days.
    assert "56 days later" in pseudo.detail
    # The divergence to show: RECIST 1.1 called PD at the first assessment.
    assert "RECIST 1.1 called PD on 2024-07-01" in pseudo.detail
    assert pseudo.key == "2024-07-01"
    assert not by_code(result, "confirmation-due")


def test_pseudoprogression_without_recist():
    [pseudo] = by_code(found(cases.E7, with_recist=False), "pseudoprogression")
    assert "RECIST" not in pseudo.detail.replace("iRECIST", "")


def test_confirmed_progression_is_not_pseudoprogression():
    # E3, E5, E13: iUPD then iCPD — no reset, no finding; no confirmation due either (episode confirmed).
    for case in (cases.E3, cases.E5, cases.E13):
        assert findings(*run_both(case)) == [], case.name


def test_e9_open_iupd_at_the_latest_timepoint_needs_confirmation():
    # E9 TP3 2024-07-29 iUPD: confirm 4–8 weeks later, 2024-07-29 + 28 = 2024-08-26, + 56 = 2024-09-23.
    [due] = found(cases.E9)
    assert due.code == "confirmation-due" and due.severity == "warning" and due.alert
    assert due.scan_date == D("2024-07-29")
    assert due.window_end == D("2024-09-23")
    assert due.detail == "confirm 4–8 weeks after 2024-07-29: 2024-08-26–2024-09-23"
    assert due.rule == "irecist.confirmation-due" and due.source


def test_e9b_partial_sum_iupd_needs_confirmation():
    # E9b TP2 2024-06-03 iUPD from the partial sum 74: window 2024-07-01–2024-07-29.
    [due] = found(cases.E9B)
    assert due.scan_date == D("2024-06-03") and due.window_end == D("2024-07-29")


def test_ne_after_iupd_keeps_the_confirmation_due():
    # iUPD, NE, NE (Table 3 example 8): still open at the latest timepoint → due, dated to the iUPD.
    timeline, irecist, recist = run_both(IUPD_THEN_NE)
    [due] = findings(timeline, irecist, recist)
    assert due.scan_date == irecist.timepoints[0].scan_date
    assert "latest scan" in due.detail and "NE" in due.detail


def test_early_disregarded_scan_keeps_the_confirmation_due():
    # A scan 10 days after the iUPD is disregarded: confirmation still due from the iUPD date.
    case = early_scan_case(10, 70)
    [due] = found(case)
    assert due.scan_date == case.scans["TP1"]
    assert "too early" in due.detail


def test_window_flag_changes_the_wording():
    # irecist.confirm_window_warn_days = 63: "4–9 weeks", end = iUPD + 63 days.
    [due] = found(cases.E9, {"irecist.confirm_window_warn_days": 63})
    assert due.detail.startswith("confirm 4–9 weeks after 2024-07-29")
    assert due.window_end == D("2024-07-29") + dt.timedelta(days=63)


def test_each_reset_is_one_finding():
    # SD, SD, iUPD, iPR, iPR, iUPD, iCPD: the first episode resets (pseudoprogression), the second is confirmed.
    timeline, irecist, recist = run_both(TWO_EPISODES)
    [pseudo] = findings(timeline, irecist, recist)
    assert pseudo.code == "pseudoprogression"
    assert pseudo.scan_date == irecist.timepoints[3].scan_date
    assert pseudo.key == irecist.timepoints[2].scan_date.isoformat()
    # RECIST 1.1 ended with PD at the first iUPD date.
    assert f"RECIST 1.1 called PD on {irecist.timepoints[2].scan_date}" in pseudo.detail


def test_two_resets_two_findings_then_open_episode_due():
    # 100 → 120 (≥ 1.2 × 100, +20 → iUPD) → 90 (< 120 → reset; −10 % → iSD; nadir 90) → 110 (≥ 1.2 × 90 = 108,
    # +20 → iUPD) → 95 (< 108 → reset, iSD) → 120 (≥ 108, +30 → iUPD, still open at the latest timepoint).
    case = single_target("two-resets", [100, 120, 90, 110, 95, 120])
    timeline, irecist, recist = run_both(case)
    assert [tp.category for tp in irecist.timepoints] == ["iUPD", "iSD", "iUPD", "iSD", "iUPD"]
    result = findings(timeline, irecist, recist)
    assert [f.code for f in result] == ["pseudoprogression", "pseudoprogression", "confirmation-due"]
    assert len({f.key for f in result if f.code == "pseudoprogression"}) == 2
    assert result[-1].scan_date == irecist.timepoints[-1].scan_date


def test_late_response_after_icpd_is_recorded_never_alerted():
    # BL 50; 60 iUPD; 70 iCPD; 20 (−60 % from baseline) → iCPD stays, a late response is labelled.
    case = single_target("late", [50, 60, 70, 20])
    timeline, irecist, recist = run_both(case)
    [late] = findings(timeline, irecist, recist)
    assert late.code == "late-response-after-icpd"
    assert late.alert is False and late.severity == "info"
    assert late.scan_date == case.scans["TP3"]
    assert "LATE_RESPONSE_AFTER_iCPD" in late.detail and "iPR" in late.detail
    assert late.rule == "irecist.late-response-after-icpd" and late.source


def test_no_late_response_while_the_lesions_stay_progressed():
    assert findings(*run_both(single_target("no-late", [50, 60, 70, 75]))) == []


def test_a_new_lesion_after_icpd_is_not_a_late_response():
    # After iCPD the targets shrink to iPR, but a further new lesion appears: not a response.
    case = single_target("late-nl", [50, 60, 70, 20], None, new_lesion("N5 liver", {"TP3": c(15, 12)}, organ="liver"))
    assert by_code(findings(*run_both(case)), "late-response-after-icpd") == []


def test_no_findings_without_iupd():
    for case in (cases.E1, cases.E11, cases.E15):
        assert findings(*run_both(case)) == [], case.name
