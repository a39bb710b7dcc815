"""Issue 7, in a real browser: the demo cohort (``service.demo.cohort.demo_cohort``) goes in through the real FHIR
interface (transaction Bundles: Patient and first dose, then the tumour-measurement Observations), the API and the
worker run as real processes (gunicorn, ``immunorad worker``) with an EHR stand-in, and headless Chromium opens the
patient pages and the quality dashboard. (The DICOM path into the same tables is covered by tests/e2e; leaving the
listener out keeps this test within its time budget on two cores.)

What is checked is what the pages draw, against the stored assessment read back from ``/api``: one spider-plot
polyline per target lesion with one point per measured scan and the right percent changes; the sum-of-diameters
curve with the therapy start and the growth-rate slopes; every criterion side by side; alerts with their trace;
one waterfall bar per patient per criterion, its height the best percent change; the discordance matrix with the
pseudoprogression patient as "RECIST 1.1 PD, iRECIST no PD"; turnaround and a delivery failure (the EHR is down
for the last patient). Screenshots land in ``tests/artifacts/``. Pages must load nothing from outside and never
show the patient's name (a distinctive one is sent in the FHIR Patient).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from fractions import Fraction

import pytest

from service.demo.cohort import case_bundle, case_measurements_bundle, demo_cohort
from tests.support.ehr import FakeEhr
from tests.support.processes import ServiceProcesses

pytestmark = pytest.mark.slow

SYSTEM = "urn:immunorad:mrn"
FAMILY, GIVEN = "Quintessa", "Zebulon"
COHORT = {mrn: case for mrn, _, case in demo_cohort()}
EHR_DOWN_FOR = "DEMO-0004"


# ---------------------------------------------------------------------------------------------------------------
# Loading the cohort and waiting for the service to settle
# ---------------------------------------------------------------------------------------------------------------
def send_patient(service, mrn: str) -> None:
    """The Patient (with a name) and the first dose, then the measurements: two transaction Bundles."""
    case = COHORT[mrn]
    bundle = case_bundle(case, mrn, SYSTEM)
    bundle["entry"][0]["resource"]["name"] = [{"family": FAMILY, "given": [GIVEN]}]
    for body in (bundle, case_measurements_bundle(case, mrn, SYSTEM)):
        status, reply, _ = service.request("POST", "/fhir", body)
        assert status == 200, reply


def followups(case) -> int:
    return sum(1 for day in case.scans.values() if day > case.scans["BL"])


def api(service, path: str):
    status, body, _ = service.request("GET", path)
    assert status == 200, body
    return body


def queued_jobs(service) -> float:
    _, text, _ = service.request("GET", "/metrics", token=None)
    return sum(float(v) for v in re.findall(r'immunorad_queue_depth\{[^}]*status="queued"[^}]*\} (\S+)', str(text)))


def settled(service, mrns: list[str], failing: set[str]) -> bool:
    """Every patient evaluated at all their follow-ups, nothing queued, every report delivered, except for the
    patients in ``failing``, whose deliveries have failed at least once."""
    by_mrn = {p["identifier"]: p for p in api(service, "/api/patients")["patients"]}
    if any(by_mrn.get(mrn, {}).get("followups") != followups(COHORT[mrn]) for mrn in mrns):
        return False
    if queued_jobs(service):
        return False
    mrn_of = {by_mrn[mrn]["id"]: mrn for mrn in mrns}
    deliveries = [d for d in api(service, "/api/deliveries")["deliveries"] if d["patient"] in mrn_of]
    for mrn in mrns:
        mine = [d for d in deliveries if mrn_of[d["patient"]] == mrn]
        if not mine:
            return False
        if mrn in failing and not any(d["status"] == "pending" and d["last_error"] for d in mine):
            return False
        if mrn not in failing and any(d["status"] != "delivered" for d in mine):
            return False
    return True


class RefusingEhr(FakeEhr):
    """The EHR stand-in, refusing every Bundle about one patient (400), as a misconfigured interface would."""

    refuse = f"|{EHR_DOWN_FOR}"

    def _check_bundle(self, bundle: dict) -> str | None:
        if self.refuse in json.dumps(bundle):
            return f"subject {EHR_DOWN_FOR} unknown to this EHR"
        return super()._check_bundle(bundle)


@pytest.fixture
def ehr():
    server = RefusingEhr()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def service(db_url, tmp_path, ehr):
    """The HTTP API (gunicorn) and the worker as real processes, delivering to the EHR stand-in."""
    # One gunicorn worker: the pages are requested one at a time, and two cores start three processes faster.
    processes = ServiceProcesses(
        db_url=db_url,
        var_dir=tmp_path / "var",
        ehr_url=ehr.base_url,
        roles=("api", "worker"),
        extra_env={"IMMUNORAD_GUNICORN_WORKERS": "1"},
    )
    processes.start()
    yield processes
    processes.stop()


@pytest.fixture
def demo(service, ehr):
    """The demo cohort, evaluated and delivered, except the last patient's reports, which the EHR refuses."""
    for mrn in COHORT:
        send_patient(service, mrn)
    service.wait_for(
        lambda: settled(service, list(COHORT), {EHR_DOWN_FOR}),
        timeout=90,
        message="cohort evaluated, delivered but for one patient",
    )
    patients = {p["identifier"]: p["id"] for p in api(service, "/api/patients")["patients"]}
    return {mrn: api(service, f"/api/patients/{patients[mrn]}") for mrn in COHORT}


# ---------------------------------------------------------------------------------------------------------------
# Expectations from the stored assessment (read back through /api, not through the page code)
# ---------------------------------------------------------------------------------------------------------------
def fraction(value) -> Fraction | None:
    return None if value is None else Fraction(str(value))


def expected_spider(assessment: dict) -> dict[str, list[float]]:
    """Target lesions: percent change of the RECIST diameter (short axis for nodes) from baseline, per scan."""
    days = [assessment["baseline_date"], *assessment["followup_dates"]]
    out = {}
    for row in assessment["lesion_table"]:
        if row["role"] != "target":
            continue
        axis = "short_axis_mm" if row["nodal"] else "long_axis_mm"
        start = fraction(row["cells"][days[0]][axis])
        values = []
        for day in days:
            cell = row["cells"].get(day)
            if cell is None or cell["status"] not in ("present", "absent"):
                continue
            now = Fraction(0) if cell["status"] == "absent" else fraction(cell[axis])
            values.append(float((now - start) / start * 100))
        out[row["lesion"]] = values
    return out


def best_change(criterion: dict) -> float | None:
    changes = [
        fraction(tp["percent_from_baseline"])
        for tp in criterion["timepoints"]
        if tp["percent_from_baseline"] is not None
    ]
    return float(min(changes)) if changes else None


# ---------------------------------------------------------------------------------------------------------------
# Page checks
# ---------------------------------------------------------------------------------------------------------------
def check_no_name_and_local_only(page, base_url: str) -> None:
    content = page.content()
    for part in (FAMILY, GIVEN, FAMILY.upper(), GIVEN.upper()):
        assert part not in content, f"patient name part {part!r} shown on {page.url}"
    outside = [url for url in page.requests if not url.startswith(base_url) and not url.startswith("data:")]
    assert outside == [], f"pages must not load anything from outside: {outside}"
    assert page.console_errors == [], page.console_errors


def check_patient_page(page, body: dict) -> None:
    assessment = body["assessment"]
    days = [assessment["baseline_date"], *assessment["followup_dates"]]
    page.wait_for_selector("#lesion-table")
    assert page.inner_text("#patient-mrn") == body["patient"]["identifier"]
    # Lesion table: one row per lesion, one column per timepoint, values as measured.
    rows = page.locator("#lesion-table tbody tr")
    assert rows.count() == len(assessment["lesion_table"])
    assert page.eval_on_selector_all("#lesion-table thead th[data-date]", "els => els.map(e => e.dataset.date)") == days
    for index, lesion in enumerate(assessment["lesion_table"]):
        row = rows.nth(index)
        assert row.get_attribute("data-lesion") == lesion["lesion"]
        cells = row.locator("td").all_inner_texts()[2:]
        for day, text in zip(days, cells, strict=True):
            cell = lesion["cells"].get(day)
            if cell and cell["status"] == "present" and cell["long_axis_mm"] is not None:
                assert text == f"{float(Fraction(cell['long_axis_mm'])):g} × {float(Fraction(cell['short_axis_mm'])):g}"
    # Spider plot: one polyline per target lesion, one point per measured scan, the right percent changes.
    expected = expected_spider(assessment)
    lines = page.eval_on_selector_all(
        "svg.spider polyline.lesion",
        """els => els.map(e => ({
        lesion: e.dataset.lesion, points: e.getAttribute('points').trim().split(/\\s+/).length,
        percent: e.dataset.percent.split(' ').map(Number)}))""",
    )
    assert sorted(line["lesion"] for line in lines) == sorted(expected)
    for line in lines:
        assert line["points"] == len(expected[line["lesion"]])
        assert line["percent"] == pytest.approx(expected[line["lesion"]], abs=0.006)
    # Sum of diameters: baseline and every graded follow-up, therapy start marked.
    primary = next(c for c in assessment["criteria"] if c["criterion"] == "iRECIST")
    sums = [float(fraction(primary["timepoints"][0]["baseline_sum"]))]
    sums += [float(fraction(tp["sum_mm"])) for tp in primary["timepoints"]]
    curve = page.locator("svg.burden polyline.primary")
    assert [float(v) for v in curve.get_attribute("data-values").split()] == pytest.approx(sums)
    assert page.locator("svg.burden line.therapy-start").get_attribute("data-date") == assessment["treatment_start"]
    # Every criterion side by side, as stored.
    for criterion in assessment["criteria"]:
        row = page.locator(f'#criteria-table tr[data-criterion="{criterion["criterion"]}"]')
        shown = row.locator("td.cat[data-category]").evaluate_all("els => els.map(e => e.dataset.category)")
        by_day = {tp["scan_date"]: tp["category"] for tp in criterion["timepoints"]}
        assert shown[: len(days) - 1] == [by_day.get(day, "—") for day in days[1:]]
    assert page.locator("#version-table tbody tr").count() >= 1


def test_patient_pages_and_dashboard_for_the_demo_cohort(service, demo, page, artifacts, backend):
    base = service.base_url
    ids = {mrn: body["patient"]["id"] for mrn, body in demo.items()}

    # The token arrives once in the address; the page moves it into a cookie and drops it from the URL.
    page.goto(f"{base}/ui/patients?token={service.token}")
    page.wait_for_selector("#patient-list")
    assert "token=" not in page.url
    assert page.locator("#patient-list tbody tr").count() == len(COHORT)
    page.screenshot(path=str(artifacts / f"patients-{backend}.png"), full_page=True)

    # E1-like partial response, by clicking through from the list.
    page.click("text=DEMO-0001")
    check_patient_page(page, demo["DEMO-0001"])
    page.screenshot(path=str(artifacts / f"patient-DEMO-0001-{backend}.png"), full_page=True)

    # Pseudoprogression: RECIST 1.1 PD at the first follow-up (then not graded), iRECIST iUPD then iPR.
    page.goto(f"{base}/ui/patients/{ids['DEMO-0002']}")
    check_patient_page(page, demo["DEMO-0002"])
    recist = page.locator('#criteria-table tr[data-criterion="RECIST-1.1"] td.cat[data-category]')
    assert recist.evaluate_all("els => els.map(e => e.dataset.category)")[:3] == ["PD", "—", "—"]
    irecist = page.locator('#criteria-table tr[data-criterion="iRECIST"] td.cat[data-category]')
    assert irecist.evaluate_all("els => els.map(e => e.dataset.category)")[:3] == ["iUPD", "iPR", "iPR"]
    assert page.locator('#alert-list li[data-code="pseudoprogression"]').count() == 1
    page.screenshot(path=str(artifacts / f"patient-DEMO-0002-{backend}.png"), full_page=True)

    # Hyperprogression with a pre-baseline scan: both growth-rate slopes, E0 point, critical alert with its trace.
    page.goto(f"{base}/ui/patients/{ids['DEMO-0004']}")
    check_patient_page(page, demo["DEMO-0004"])
    kinetics = demo["DEMO-0004"]["assessment"]["kinetics"]
    pre = page.locator("svg.burden line.slope-pre-treatment")
    on = page.locator("svg.burden line.slope-on-treatment")
    assert (pre.get_attribute("data-start"), pre.get_attribute("data-end")) == (
        kinetics["e0_date"],
        kinetics["e1_date"],
    )
    assert (on.get_attribute("data-start"), on.get_attribute("data-end")) == (kinetics["e1_date"], kinetics["e2_date"])
    labels = " ".join(page.locator("svg.burden text.slope-label").all_text_contents())
    assert (
        f"+{kinetics['tgr_reference']:.2f} %/month" in labels
        and f"+{kinetics['tgr_experimental']:.2f} %/month" in labels
    )
    # E0 sum recovered from TGK_ref: 44 − 4.0583 mm/month × 30 days × 12/365.25 = 40 mm (20 + 20 at E0).
    assert page.locator("svg.burden circle.extra-point").get_attribute("data-value") == "40"
    alert = page.locator('#alert-list li[data-code="hyperprogression"]')
    assert "critical" in alert.get_attribute("class")
    alert.locator("summary").click()
    assert alert.locator("code").inner_text().startswith("tumour-kinetics:")
    assert alert.locator(".trace li").count() >= 1
    assert page.locator('#definitions-table tr[data-definition="champiat-2017"] .pill').inner_text() == "met"
    page.screenshot(path=str(artifacts / f"patient-DEMO-0004-{backend}.png"), full_page=True)
    check_no_name_and_local_only(page, base)

    # The quality dashboard.
    page.goto(f"{base}/ui/quality")
    page.wait_for_selector("#discordance-matrix")
    check_dashboard(page, demo, ids)
    page.screenshot(path=str(artifacts / f"quality-{backend}.png"), full_page=True)
    check_no_name_and_local_only(page, base)
    content = page.content()
    for mrn in COHORT:
        assert mrn not in content, f"the dashboard is pseudonymous, yet shows {mrn}"

    # The CSV export, downloaded through the page's link.
    with page.expect_download() as download:
        page.click("#export-csv")
    text = download.value.path().read_bytes().decode("utf-8")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert len(rows) == sum(len(body["assessment"]["criteria"]) for body in demo.values())
    for secret in (FAMILY, GIVEN, *COHORT, *ids.values()):
        assert secret.lower() not in text.lower()


def check_dashboard(page, demo: dict, ids: dict) -> None:
    mrn_of = {patient_id: mrn for mrn, patient_id in ids.items()}
    assert "4 patients" in page.inner_text("#cohort-size")
    # Waterfall: one bar per patient per criterion, its value the best percent change, its height matching.
    bars = page.eval_on_selector_all(
        "svg.waterfall rect.bar",
        """els => els.map(e => ({
        criterion: e.dataset.criterion, value: Number(e.dataset.value), height: Number(e.getAttribute('height')),
        scale: Number(e.closest('svg').dataset.scale), href: e.closest('a').getAttribute('href')}))""",
    )
    criteria = [c["criterion"] for c in demo["DEMO-0001"]["assessment"]["criteria"]]
    assert page.locator("svg.waterfall").count() == len(criteria)
    for criterion in criteria:
        mine = [b for b in bars if b["criterion"] == criterion]
        expected = {}
        for mrn, body in demo.items():
            found = next(c for c in body["assessment"]["criteria"] if c["criterion"] == criterion)
            if best_change(found) is not None:
                expected[mrn] = best_change(found)
        assert sorted(mrn_of[b["href"].rsplit("/", 1)[1]] for b in mine) == sorted(expected)
        for bar in mine:
            mrn = mrn_of[bar["href"].rsplit("/", 1)[1]]
            assert bar["value"] == pytest.approx(expected[mrn], abs=0.005)
            assert bar["height"] == pytest.approx(abs(bar["value"]) * bar["scale"], abs=0.05)
        # Sorted from the largest increase to the deepest decrease.
        assert [b["value"] for b in mine] == sorted((b["value"] for b in mine), reverse=True)
    # E1: 90 → 58 mm at the second follow-up = −35.56 %, the deepest RECIST 1.1 bar.
    recist = [b for b in bars if b["criterion"] == "RECIST-1.1"]
    assert mrn_of[recist[-1]["href"].rsplit("/", 1)[1]] == "DEMO-0001" and recist[-1]["value"] == -35.56

    # Discordance: the pseudoprogression patient is RECIST 1.1 PD with no iRECIST progression; the
    # hyperprogression patient's iUPD is still awaiting confirmation.
    cell = page.locator('#discordance-matrix td[data-progressed-by="RECIST-1.1"][data-not-by="iRECIST"]')
    discordant = cell.locator("a[data-kind=discordant]").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    pending = cell.locator("a[data-kind=pending]").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    assert [mrn_of[h.rsplit("/", 1)[1]] for h in discordant] == ["DEMO-0002"]
    assert [mrn_of[h.rsplit("/", 1)[1]] for h in pending] == ["DEMO-0004"]
    reverse = page.locator('#discordance-matrix td[data-progressed-by="iRECIST"][data-not-by="RECIST-1.1"]')
    assert reverse.get_attribute("data-count") == "0"
    # Timepoint categories: RECIST PD met iUPD twice (pseudoprogression and hyperprogression patients).
    assert page.locator('#category-crosstab td[data-row="PD"][data-column="iUPD"]').inner_text() == "2"

    # Hyperprogression per definition: only DEMO-0004 meets Champiat 2017; three patients lack E0.
    champiat = page.locator('#incidence-table tr[data-definition="champiat-2017"] td')
    assert champiat.all_inner_texts()[:3] == ["1", "0", "3"]
    assert page.locator('svg.incidence rect[data-definition="champiat-2017"]').get_attribute("data-met") == "1"
    assert page.locator("#irae-empty").count() == 1  # the demo has no irAE

    # Turnaround over the delivered reports; the last patient's delivery is failing.
    delivered = sum(len(body["reports"]) for mrn, body in demo.items() if mrn != EHR_DOWN_FOR)
    assert page.inner_text('#turnaround-table td[data-key="count"]') == str(delivered)
    p50 = float(page.get_attribute('#turnaround-table td[data-key="p50"]', "data-seconds"))
    assert 0 < p50 < 120
    assert page.inner_text('#deliveries [data-key="failing"]') == "1"
    failing = page.locator('#delivery-failures tr[data-state="failing"]')
    assert failing.count() == 1
    assert mrn_of[failing.locator("a").get_attribute("href").rsplit("/", 1)[1]] == EHR_DOWN_FOR
    # The EHR's answer quotes the MRN: the pseudonymous page shows the status, not the body.
    assert "EHR answered 400" in failing.inner_text() and "unknown to this EHR" not in failing.inner_text()

    # A period that ends before the pseudoprogression patient's first follow-up leaves it out.
    start = dt.date.fromisoformat(demo["DEMO-0002"]["assessment"]["followup_dates"][0])
    page.goto(page.url.split("?")[0] + f"?to={start - dt.timedelta(days=1)}")
    page.wait_for_selector("#discordance-matrix")
    cell = page.locator('#discordance-matrix td[data-progressed-by="RECIST-1.1"][data-not-by="iRECIST"]')
    assert cell.get_attribute("data-count") == "0"
    page.go_back()
    page.wait_for_selector("#discordance-matrix")
