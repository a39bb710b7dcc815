"""The dashboard's arithmetic (``service.dashboard.quality``), as pure functions over stored assessments.

Cohorts are built from the real evaluations of the worked examples and the demo cases, stored the way the
service stores them (``to_jsonable``), so the tests read exactly the shapes ``Assessment.result`` holds.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from fractions import Fraction

import pytest

from rules.evaluate import evaluate_patient, to_jsonable
from service.dashboard import quality
from service.dashboard.quality import (
    AlertRecord,
    Cohort,
    DeliveryRecord,
    Filters,
    PatientRecord,
    ReportRecord,
)
from service.demo.cohort import demo_cohort
from tests.rules import cases

D = dt.date.fromisoformat
T0 = dt.datetime(2024, 8, 1, 9, 0, tzinfo=dt.UTC)
_RESULTS: dict[str, dict] = {}


def stored(case) -> dict:
    if case.name not in _RESULTS:
        _RESULTS[case.name] = to_jsonable(evaluate_patient(case.facts()))
    return _RESULTS[case.name]


def record(case, label: str, *, cancer_type: str | None = None, mrn: str | None = None) -> PatientRecord:
    return PatientRecord(f"id-{label}", label, mrn or f"MRN-{label}", cancer_type, 1, stored(case))


NO_FILTERS = Filters()


def cohort(*records: PatientRecord, filters: Filters = NO_FILTERS, **kw) -> Cohort:
    return Cohort(filters, tuple(records), **kw)


DEMO = {mrn: case for mrn, _, case in demo_cohort()}


# -- waterfall -----------------------------------------------------------------------------------------------------
def test_waterfall_takes_the_lowest_percent_change_per_criterion():
    # E1: SoD 90 → 63 (−30 %) → 58 (−35.56 %) → 61 (−32.22 %): best −35.56 % at 2024-05-06, PR.
    # irRC (SPD) 2450 → 1246 (−49.14 %) → 1056 (−56.90 %) → 1144: best at 2024-05-06 too.
    bars = quality.waterfall(cohort(record(cases.E1, "p-e1"), record(cases.E3, "p-e3")))
    recist = {b.label: b for b in bars["RECIST-1.1"]}
    assert recist["p-e1"].percent == Fraction(-320, 9) and recist["p-e1"].scan_date == D("2024-05-06")
    assert recist["p-e1"].category == "PR"
    # E3: 20 → 24 (+20 %) → 25 (+25 %): the lowest is +20 %, SD; sorted from the largest increase down.
    assert recist["p-e3"].percent == Fraction(20) and recist["p-e3"].category == "SD"
    assert [b.label for b in bars["RECIST-1.1"]] == ["p-e3", "p-e1"]
    assert bars["irRC"][-1].percent == Fraction(1056 - 2450, 2450) * 100


def test_waterfall_respects_the_period():
    # Only E1's first follow-up (2024-03-11) in the period: −30 %.
    bars = quality.waterfall(cohort(record(cases.E1, "p-e1"), filters=Filters(end=D("2024-03-31"))))
    assert bars["RECIST-1.1"][0].percent == Fraction(-30)


# -- discordance ---------------------------------------------------------------------------------------------------
def test_pseudoprogression_is_recist_pd_without_irecist_progression():
    # E7: RECIST 1.1 PD at TP1 (new lesion); iRECIST iUPD, then iPR (reset): never iCPD.
    # E5: RECIST PD; iRECIST iUPD confirmed iCPD: concordant.
    result = quality.discordance(cohort(record(cases.E7, "p-e7"), record(cases.E5, "p-e5")))
    cell = result.cell("RECIST-1.1", "iRECIST")
    assert cell.discordant == (("id-p-e7", "p-e7"),) and cell.pending == ()
    assert result.cell("iRECIST", "RECIST-1.1").discordant == ()
    assert result.status["id-p-e5"]["iRECIST"] == "progressed"
    assert result.status["id-p-e7"]["iRECIST"] == "not-progressed"


def test_an_iupd_awaiting_confirmation_is_pending_not_discordant():
    # Demo hyperprogression: RECIST PD at its only follow-up, iRECIST iUPD (unconfirmed) there.
    result = quality.discordance(cohort(record(DEMO["DEMO-0004"], "p-hpd")))
    assert result.cell("RECIST-1.1", "iRECIST").pending == (("id-p-hpd", "p-hpd"),)
    assert result.cell("RECIST-1.1", "iRECIST").discordant == ()
    assert result.status["id-p-hpd"]["irRECIST"] == "unconfirmed"  # irPD, confirmed False


def test_category_crosstab_counts_timepoints_and_not_graded_scans():
    # E7: RECIST PD / iUPD at TP1; RECIST not graded (—) at TP2 and TP3 while iRECIST says iPR.
    table = quality.category_crosstab(cohort(record(cases.E7, "p-e7")), "RECIST-1.1", "iRECIST")
    assert table.count("PD", "iUPD") == 1 and table.count("—", "iPR") == 2
    assert sum(table.counts.values()) == 3
    assert table.rows[-1] == "—"


def test_progression_status_reads_the_criterion_categories():
    assert quality.progression_status([{"category": "iUPD", "confirmed": False}]) == "unconfirmed"
    assert (
        quality.progression_status([{"category": "iUPD", "confirmed": False}, {"category": "iPR", "confirmed": None}])
        == "not-progressed"
    )
    assert quality.progression_status([{"category": "irPD", "confirmed": True}]) == "progressed"
    assert quality.progression_status([{"category": "irPD", "confirmed": False}]) == "unconfirmed"
    assert quality.progression_status([]) == "not-progressed"


# -- hyperprogression, irAE ----------------------------------------------------------------------------------------
def test_hyperprogression_incidence_counts_met_among_evaluable():
    # DEMO-0004 (K1-like, E0 present): Champiat 2017 met; DEMO-0001 has no E0: not evaluable.
    rows = {
        i.code: i
        for i in quality.hyperprogression_incidence(
            cohort(record(DEMO["DEMO-0004"], "p-hpd"), record(DEMO["DEMO-0001"], "p-pr"))
        )
    }
    champiat = rows["champiat-2017"]
    assert champiat.met == (("id-p-hpd", "p-hpd"),) and champiat.not_met == 0 and champiat.not_evaluable == 1
    assert champiat.proportion == 1.0
    assert rows["early-death"].met == () and rows["early-death"].not_met == 2 and rows["early-death"].proportion == 0
    assert list(rows)[0] == "champiat-2017"  # the rule base's order (contract §5)
    # E2 of DEMO-0004 is 2024-03-18: a period after it leaves the patient out.
    later = quality.hyperprogression_incidence(
        cohort(record(DEMO["DEMO-0004"], "p-hpd"), filters=Filters(start=D("2024-04-01")))
    )
    assert later == []


def test_irae_alerts_are_the_irae_and_sarcoid_like_flags():
    alerts = (
        AlertRecord("a", "p-a", "irae", "pneumonitis", "active", "warning", D("2024-03-11"), "pneumonitis"),
        AlertRecord("a", "p-a", "hyperprogression", "", "active", "critical", D("2024-03-11"), "HPD"),
        AlertRecord("b", "p-b", "sarcoid-like-reaction", "", "inactive", "warning", D("2024-02-11"), "SLR"),
        AlertRecord("b", "p-b", "irae", "colitis", "entered-in-error", "warning", D("2024-02-11"), "x"),
    )
    found = quality.irae_alerts(cohort(alerts=alerts))
    assert [(a.code, a.key) for a in found] == [("sarcoid-like-reaction", ""), ("irae", "pneumonitis")]


# -- turnaround, deliveries ----------------------------------------------------------------------------------------
def test_percentile_interpolates_between_closest_ranks():
    # Type 7: position (n − 1)·q = 3·0.5 = 1.5 → halfway between 20 and 30.
    assert quality.percentile([40, 10, 30, 20], 50) == 25
    assert quality.percentile([10, 20, 30, 40], 90) == pytest.approx(37)
    assert quality.percentile([5], 95) == 5 and quality.percentile([], 50) is None


def test_turnaround_from_first_input_to_first_delivery():
    def report(received, delivered):
        return ReportRecord("p", "p-x", D("2024-03-11"), "r", 1, "preliminary", received, delivered)

    reports = (
        report(T0, T0 + dt.timedelta(seconds=30)),
        report(T0, T0 + dt.timedelta(minutes=5)),
        report(T0, None),
        report(None, T0),
    )
    result = quality.turnaround(cohort(reports=reports))
    assert result.seconds == (30.0, 300.0) and result.undelivered == 1 and result.no_input_time == 1
    assert result.percentile(50) == 165.0 and result.maximum == 300.0
    assert quality.format_duration(result.percentile(50)) == "2.8 min"
    assert quality.format_duration(30) == "30 s" and quality.format_duration(7200) == "2.0 h"


def test_delivery_failures_failing_now_and_recovered():
    def delivery(status, attempts, error=None):
        return DeliveryRecord(
            "p",
            "p-x",
            D("2024-03-11"),
            1,
            status,
            attempts,
            503 if error else 200,
            error,
            T0,
            T0 if status == "delivered" else None,
            T0,
        )

    result = quality.delivery_failures(
        cohort(
            deliveries=(
                delivery("pending", 3, "EHR answered 503"),
                delivery("delivered", 2),
                delivery("delivered", 1),
                delivery("pending", 0),
            )
        )
    )
    assert len(result.failing) == 1 and len(result.recovered) == 1
    assert result.failed_attempts == 3 + 1 and result.delivered == 2 and result.total == 4


# -- filters -------------------------------------------------------------------------------------------------------
def test_filters_from_query_parameters():
    filters = Filters.from_args({"from": "2024-01-01", "to": "2024-06-30", "cancer_type": " melanoma "})
    assert filters == Filters(D("2024-01-01"), D("2024-06-30"), "melanoma")
    assert filters.contains(D("2024-06-30")) and not filters.contains(D("2024-07-01"))
    assert filters.as_args() == {"from": "2024-01-01", "to": "2024-06-30", "cancer_type": "melanoma"}
    assert Filters.from_args({}) == Filters()
    with pytest.raises(quality.FilterError, match="from must be a date"):
        Filters.from_args({"from": "01/02/2024"})
    with pytest.raises(quality.FilterError, match="is after"):
        Filters.from_args({"from": "2024-02-01", "to": "2024-01-01"})


# -- export ----------------------------------------------------------------------------------------------------------
def test_export_is_rfc4180_round_trips_and_is_pseudonymous():
    records = (
        record(cases.E1, "p-e1", cancer_type='=HYPERLINK("http://x")', mrn="MRN-SECRET-1"),
        record(cases.E7, "p-e7", cancer_type='melanoma, "cutaneous"\r\nstage IV', mrn="MRN-SECRET-7"),
    )
    rows = quality.export_rows(cohort(*records))
    text = quality.export_csv(rows)
    assert text.startswith(",".join(quality.EXPORT_COLUMNS) + "\r\n")
    parsed = list(csv.DictReader(io.StringIO(text, newline="")))
    assert parsed == rows  # every field survives quoting: commas, quotes, a CRLF inside a field
    again = io.StringIO()
    writer = csv.DictWriter(again, fieldnames=quality.EXPORT_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(parsed)
    assert again.getvalue() == text
    assert "MRN-SECRET" not in text and "id-p-e1" not in text
    # A spreadsheet must not run a cell: a formula-like free text gets a leading apostrophe.
    assert parsed[0]["cancer_type"] == '\'=HYPERLINK("http://x")'
    e1 = next(r for r in parsed if r["patient"] == "p-e1" and r["criterion"] == "RECIST-1.1")
    assert e1["best_percent_change"] == "-35.56" and e1["best_response"] == "PR"
    assert e1["categories"] == "2024-03-11 PR; 2024-05-06 PR; 2024-07-01 PR"
    e7 = next(r for r in parsed if r["patient"] == "p-e7" and r["criterion"] == "iRECIST")
    assert e7["categories"].startswith("2024-07-01 iUPD") and e7["progression_status"] == "not-progressed"


def test_export_with_identifiers_when_asked():
    rows = quality.export_rows(cohort(record(cases.E1, "p-e1", mrn="MRN-1")), pseudonymise=False)
    text = quality.export_csv(rows, pseudonymise=False)
    header = next(csv.reader(io.StringIO(text)))
    assert header[-2:] == ["patient_id", "mrn"]
    assert rows[0]["mrn"] == "MRN-1" and rows[0]["patient_id"] == "id-p-e1"


def test_summary_is_json_ready_and_pseudonymous():
    import json

    data = quality.summary(cohort(record(cases.E7, "p-e7", mrn="MRN-SECRET")))
    text = json.dumps(data)
    assert "MRN-SECRET" not in text and "id-p-e7" not in text
    assert data["discordance"][0] == {
        "progressed_by": "RECIST-1.1",
        "not_by": "iRECIST",
        "patients": ["p-e7"],
        "pending_confirmation": [],
    }
