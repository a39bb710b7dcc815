"""Contract §9.3 through the real interfaces, with every role running as a process (gunicorn API, DICOM listener,
worker): TID 1500 SRs and images sent with DCMTK's storescu, FHIR transactions over HTTP, results read from
``/api`` and ``/fhir`` over HTTP.

- a merge and a fragmentation (RECIST 1.1 and irRC, the arithmetic below) through DICOM and through FHIR;
- a symptom-driven early scan confirming iUPD → iCPD (iRECIST, size spec §2.4) through DICOM and FHIR;
- a PET scan with a non-FDG tracer → PERCIST 1.0 NE naming the tracer, through DICOM (and FHIR);
- an 89Zr-atezolizumab PET → the tracer-uptake Observation on ``/fhir`` (contract §9.6) and PERCIST 1.0 NE.
"""

from __future__ import annotations

import datetime as dt
import itertools
import urllib.parse
from pathlib import Path

import pytest
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from rules.scenario import Case
from service.demo.cohort import case_bundle
from service.demo.sr_writer import (
    LesionSpec,
    ReferenceRegionSpec,
    build_ct_image,
    build_measurement_report,
    build_pet_image,
)
from tests.support.dcmtk import storescu

pytestmark = pytest.mark.slow

SYSTEM = "urn:immunorad:mrn"
CANONICAL = "http://immunorad.org/fhir"
OWN = f"{CANONICAL}/CodeSystem/immunorad"
D = dt.date.fromisoformat
C1D1 = D("2024-01-08")
BL, FU = D("2024-01-02"), D("2024-03-04")
LIVER = Code("10200004", "SCT", "Liver")
LUNG = Code("39607008", "SCT", "Lung")
_uids = itertools.count(1)


def uid(prefix: str = "1.2.826.0.1.3680043.10.511.13") -> str:
    return f"{prefix}.{next(_uids)}"


def start_therapy(service, mrn: str) -> None:
    status, body, _ = service.request("POST", "/fhir", case_bundle(Case(mrn, C1D1, {}, ()), mrn, SYSTEM))
    assert status == 200, body


def send_scan(service, folder: Path, mrn: str, day: dt.date, lesions: list[LesionSpec], **report) -> None:
    image = build_ct_image(patient_id=mrn, patient_name="TEST^V2", study_instance_uid=uid(), study_date=day)
    sr = build_measurement_report(evidence=[image], lesions=lesions, **report)
    send(service, folder, [image, sr])


def send(service, folder: Path, datasets) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in datasets:
        path = folder / f"{next(_uids):04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    result = storescu("127.0.0.1", service.dicom_port, paths)
    assert result.returncode == 0, result.stderr


def assessment(service, mrn: str, followups: list[dt.date], criterion: str) -> dict:
    """The latest assessment once it covers every follow-up (the worker runs asynchronously)."""

    def ready():
        status, body, _ = service.request("GET", "/api/patients")
        found = [p for p in body.get("patients", []) if p["identifier"] == mrn] if status == 200 else []
        if not found:
            return None
        status, body, _ = service.request("GET", f"/api/patients/{found[0]['id']}")
        result = body.get("assessment") or {}
        dates = [d for d in result.get("followup_dates", [])]
        crit = next((c for c in result.get("criteria", []) if c["criterion"] == criterion), None)
        if dates != [d.isoformat() for d in followups] or crit is None:
            return None
        if {tp["scan_date"] for tp in crit["timepoints"]} < {d.isoformat() for d in followups}:
            return None
        return result

    return service.wait_for(ready, timeout=90, message=f"{mrn}'s assessment over {followups}")


def at(result: dict, criterion: str, day: dt.date) -> dict:
    crit = next(c for c in result["criteria"] if c["criterion"] == criterion)
    return next(tp for tp in crit["timepoints"] if tp["scan_date"] == day.isoformat())


def lesion(label: str, tracking: str, site: Code, ld: float, sa: float, **kw) -> LesionSpec:
    return LesionSpec(tracking_uid=tracking, label=label, site=site, long_axis_mm=ld, short_axis_mm=sa, **kw)


# --- merge and fragments through DICOM -----------------------------------------------------------------------
# Merge: baseline T1 30×20, T2 20×15 (liver targets): RECIST 30 + 20 = 50 mm; irRC 600 + 300 = 900 mm².
#   Follow-up: T1 and T2 coalesced, measured on T1 as 35×20; T2 sent with 0 mm and merged-into = T1's UID.
#   RECIST 35 + 0 = 35 → (35 − 50)/50 = −30.0 % → PR (≥ 30 %, inclusive); irRC 700 + 0 = 700 → −22.22 % → irSD.
# Fragments: baseline T1 lung 40×30, T2 liver 20×10: RECIST 60 mm; irRC 1200 + 200 = 1400 mm².
#   Follow-up: T1 in two fragments 30×20 and 22×10 (same Tracking UID, fragment = Yes); T2 20×10.
#   RECIST (30 + 22) + 20 = 72 → +12 mm, +20.0 % → PD (both thresholds inclusive).
#   irRC 30×20 + 22×10 + 20×10 = 600 + 220 + 200 = 1020 → −27.14 % from 1400 → irSD (the product of the summed
#   diameters, 52×30 + 200 = 1760, would be +25.7 % → irPD).
def test_merge_and_fragments_through_dicom(service, tmp_path):
    merge, split = "MRN-V2-MERGE-DICOM", "MRN-V2-SPLIT-DICOM"
    for mrn in (merge, split):
        start_therapy(service, mrn)
    t1, t2 = uid(), uid()
    send_scan(
        service,
        tmp_path / "m0",
        merge,
        BL,
        [
            lesion("T1 liver", t1, LIVER, 30, 20, baseline_category="target"),
            lesion("T2 liver", t2, LIVER, 20, 15, baseline_category="target"),
        ],
    )
    send_scan(
        service,
        tmp_path / "m1",
        merge,
        FU,
        [lesion("T1 liver", t1, LIVER, 35, 20), lesion("T2 liver", t2, LIVER, 0, 0, merged_into=t1)],
    )
    s1, s2 = uid(), uid()
    send_scan(
        service,
        tmp_path / "s0",
        split,
        BL,
        [
            lesion("T1 lung", s1, LUNG, 40, 30, baseline_category="target"),
            lesion("T2 liver", s2, LIVER, 20, 10, baseline_category="target"),
        ],
    )
    send_scan(
        service,
        tmp_path / "s1",
        split,
        FU,
        [
            lesion("T1 lung", s1, LUNG, 30, 20, fragment=True),
            lesion("T1 lung", s1, LUNG, 22, 10, fragment=True),
            lesion("T2 liver", s2, LIVER, 20, 10),
        ],
    )
    merged = assessment(service, merge, [FU], "irRC")
    recist = at(merged, "RECIST-1.1", FU)
    assert (recist["category"], recist["sum_mm"], recist["percent_from_baseline"]) == ("PR", "35.0", "-30")
    assert any("merged into" in line and "(0 mm)" in line for line in recist["trace"])
    irrc = at(merged, "irRC", FU)
    assert (irrc["category"], irrc["sum_mm"]) == ("irSD", "700.00")

    fragmented = assessment(service, split, [FU], "irRC")
    recist = at(fragmented, "RECIST-1.1", FU)
    assert (recist["category"], recist["sum_mm"]) == ("PD", "72.0")
    assert any("fragments 30 mm + 22 mm = 52 mm" in line for line in recist["trace"])
    irrc = at(fragmented, "irRC", FU)
    assert (irrc["category"], irrc["sum_mm"]) == ("irSD", "1020.00")
    row = next(r for r in fragmented["lesion_table"] if r["lesion"] == "T1 lung")
    assert [f["long_axis_mm"] for f in row["cells"][FU.isoformat()]["fragments"]] == ["30.0", "22.0"]


def test_two_groups_without_the_fragment_marker_through_dicom_are_a_conflict(service, tmp_path):
    mrn = "MRN-V2-CONFLICT"
    start_therapy(service, mrn)
    s1, s2 = uid(), uid()
    send_scan(
        service,
        tmp_path / "c0",
        mrn,
        BL,
        [
            lesion("T1 lung", s1, LUNG, 40, 30, baseline_category="target"),
            lesion("T2 liver", s2, LIVER, 20, 10, baseline_category="target"),
        ],
    )
    send_scan(
        service,
        tmp_path / "c1",
        mrn,
        FU,
        [
            lesion("T1 lung", s1, LUNG, 30, 20),
            lesion("T1 lung", s1, LUNG, 22, 10),
            lesion("T2 liver", s2, LIVER, 20, 10),
        ],
    )
    result = assessment(service, mrn, [FU], "RECIST-1.1")
    recist = at(result, "RECIST-1.1", FU)
    # T1 not assessed; the partial sum 0 + 20 = 20 mm cannot show PD → NE, with the reason.
    assert recist["category"] == "NE"
    assert any("without the fragment marker" in line for line in recist["trace"])
    assert any("without the fragment marker" in w for w in result["warnings"])


# --- merge and fragments through FHIR ------------------------------------------------------------------------
def tumour_size(mrn: str, ident: str, label: str, day: dt.date, ld: float, sa: float, *extra: dict, role=None) -> dict:
    components = [
        {"code": {"coding": [{"system": "http://loinc.org", "code": "33728-7"}]}, "valueQuantity": q(ld)},
        {"code": {"coding": [{"system": "http://loinc.org", "code": "33729-5"}]}, "valueQuantity": q(sa)},
    ]
    if role:
        components.append(
            {
                "code": {"coding": [{"system": OWN, "code": "lesion-role"}]},
                "valueCodeableConcept": {"coding": [{"system": OWN, "code": role}]},
            }
        )
    components += list(extra)
    return {
        "fullUrl": f"urn:uuid:{ident}",
        "resource": {
            "resourceType": "Observation",
            "identifier": [{"system": "urn:test:v2", "value": ident}],
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "21889-1"}]},
            "subject": {"identifier": {"system": SYSTEM, "value": mrn}},
            "effectiveDateTime": day.isoformat(),
            "focus": [{"identifier": {"system": "urn:test:lesion", "value": label}, "display": label}],
            "bodySite": {"coding": [{"system": "http://snomed.info/sct", "code": "39607008"}]},
            "component": components,
        },
        "request": {"method": "PUT", "url": f"Observation?identifier=urn:test:v2|{ident}"},
    }


def q(mm: float) -> dict:
    return {"value": mm, "unit": "mm", "system": "http://unitsofmeasure.org", "code": "mm"}


def flag(code: str, value) -> dict:
    key = "valueBoolean" if isinstance(value, bool) else "valueString"
    return {"code": {"coding": [{"system": OWN, "code": code}]}, key: value}


def post(service, entries: list[dict]) -> None:
    status, body, _ = service.request(
        "POST", "/fhir", {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    )
    assert status == 200, body


def test_merge_and_fragments_through_fhir(service):
    """The same two worked examples as Observations: merged-into (valueString, the label) and fragment
    (valueBoolean) components."""
    merge, split = "MRN-V2-MERGE-FHIR", "MRN-V2-SPLIT-FHIR"
    for mrn in (merge, split):
        start_therapy(service, mrn)
    post(
        service,
        [
            tumour_size(merge, "m-t1-bl", "T1 liver", BL, 30, 20, role="target"),
            tumour_size(merge, "m-t2-bl", "T2 liver", BL, 20, 15, role="target"),
            tumour_size(merge, "m-t1-fu", "T1 liver", FU, 35, 20),
            tumour_size(merge, "m-t2-fu", "T2 liver", FU, 0, 0, flag("merged-into", "T1 liver")),
            tumour_size(split, "s-t1-bl", "T1 lung", BL, 40, 30, role="target"),
            tumour_size(split, "s-t2-bl", "T2 liver", BL, 20, 10, role="target"),
            tumour_size(split, "s-t1-fu-a", "T1 lung", FU, 30, 20, flag("fragment", True)),
            tumour_size(split, "s-t1-fu-b", "T1 lung", FU, 22, 10, flag("fragment", True)),
            tumour_size(split, "s-t2-fu", "T2 liver", FU, 20, 10),
        ],
    )
    merged = assessment(service, merge, [FU], "irRC")
    assert (at(merged, "RECIST-1.1", FU)["category"], at(merged, "RECIST-1.1", FU)["sum_mm"]) == ("PR", "35.0")
    assert any("merged into 'T1 liver' (0 mm)" in line for line in at(merged, "RECIST-1.1", FU)["trace"])
    assert (at(merged, "irRC", FU)["category"], at(merged, "irRC", FU)["sum_mm"]) == ("irSD", "700.00")
    fragmented = assessment(service, split, [FU], "irRC")
    assert (at(fragmented, "RECIST-1.1", FU)["category"], at(fragmented, "RECIST-1.1", FU)["sum_mm"]) == ("PD", "72.0")
    assert (at(fragmented, "irRC", FU)["category"], at(fragmented, "irRC", FU)["sum_mm"]) == ("irSD", "1020.00")
    # A merged-into without a value is refused with the element named, nothing stored.
    status, body, _ = service.request(
        "POST",
        "/fhir",
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [tumour_size(merge, "m-bad", "T3 liver", FU, 0, 0, flag("merged-into", " "))],
        },
    )
    assert status == 422 and "merged-into" in str(body)


# --- symptom-driven early scan -------------------------------------------------------------------------------
# iRECIST (size spec §2.4; engine rule irecist.early_scan_min_days = 26): BL T1 50 mm; TP1 (C1D1 + 56 d) 60 mm →
# +20 % and +10 mm → iUPD; TP2 10 days later (< 26), done for a new symptom, shows a new lung lesion N9 12 mm →
# an additional new lesion on a symptom-driven early scan confirms: iCPD, progression dated at TP1. The same scan
# not flagged symptom-driven is disregarded for confirmation: iUPD.
TP1, TP2 = C1D1 + dt.timedelta(days=56), C1D1 + dt.timedelta(days=66)


@pytest.mark.parametrize("symptom_driven", [True, False])
def test_symptom_driven_early_scan_confirms_iupd_through_dicom(service, tmp_path, symptom_driven):
    mrn = f"MRN-V2-SYMPTOM-{symptom_driven}"
    start_therapy(service, mrn)
    t1 = uid()
    send_scan(service, tmp_path / "0", mrn, BL, [lesion("T1 liver", t1, LIVER, 50, 40, baseline_category="target")])
    send_scan(service, tmp_path / "1", mrn, TP1, [lesion("T1 liver", t1, LIVER, 60, 45)])
    send_scan(
        service,
        tmp_path / "2",
        mrn,
        TP2,
        [lesion("T1 liver", t1, LIVER, 60, 45), lesion("N9 lung", uid(), LUNG, 12, 10)],
        symptom_driven=symptom_driven,
    )
    result = assessment(service, mrn, [TP1, TP2], "iRECIST")
    assert at(result, "iRECIST", TP1)["category"] == "iUPD"
    assert at(result, "iRECIST", TP2)["category"] == ("iCPD" if symptom_driven else "iUPD")


def test_symptom_driven_early_scan_confirms_iupd_through_fhir(service):
    mrn = "MRN-V2-SYMPTOM-FHIR"
    start_therapy(service, mrn)
    post(
        service,
        [
            tumour_size(mrn, "y-t1-bl", "T1 liver", BL, 50, 40, role="target"),
            tumour_size(mrn, "y-t1-1", "T1 liver", TP1, 60, 45),
            tumour_size(mrn, "y-t1-2", "T1 liver", TP2, 60, 45),
            # The component is on one of the scan's Observations and applies to the whole scan.
            tumour_size(mrn, "y-n9-2", "N9 lung", TP2, 12, 10, flag("symptom-driven", True), role="new"),
        ],
    )
    result = assessment(service, mrn, [TP1, TP2], "iRECIST")
    assert [at(result, "iRECIST", d)["category"] for d in (TP1, TP2)] == ["iUPD", "iCPD"]


# --- PET tracer ----------------------------------------------------------------------------------------------
# Worked example P1 (size spec §11) baseline and FU1: liver 2.0/0.25 and 2.1/0.25; hottest A 8.0 → B 5.5:
# −31.25 %, Δ −2.5 → PMR on FDG. With FU1 acquired with 18F-PSMA-1007 (DCM 126758) PERCIST is NE naming it.
P1 = {"A lung": ("39607008", 8.0, 5.0), "B node": ("59441001", 5.0, 5.5), "C bone": ("3138006", 4.2, 3.0)}


def pet_scan(service, folder, mrn, day, index, tracks, liver_mean, **tracer) -> None:
    image = build_pet_image(patient_id=mrn, patient_name="PET^V2", study_instance_uid=uid(), study_date=day, **tracer)
    lesions = [
        LesionSpec(
            tracking_uid=tracks[label],
            label=label,
            site=Code(site, "SCT", label.split()[1]),
            nodal=label.endswith("node"),
            long_axis_mm=20.0,
            short_axis_mm=16.0,
            baseline_category="target" if index == 0 else None,
            sul_peak=values[index],
        )
        for label, (site, *values) in P1.items()
    ]
    report = build_measurement_report(
        evidence=[image], lesions=lesions, references=[ReferenceRegionSpec(region="liver", mean=liver_mean, sd=0.25)]
    )
    send(service, folder, [image, report])


@pytest.mark.parametrize(
    ("tracer", "category", "named"),
    [
        ({"radiopharmaceutical": codes.DCM.PSMA1007F18, "radiopharmaceutical_text": "PSMA-1007"}, "NE", "PSMA-1007"),
        ({}, "PMR", None),
    ],
)
def test_non_fdg_pet_through_dicom_makes_percist_ne_naming_the_tracer(service, tmp_path, tracer, category, named):
    mrn = f"MRN-V2-PET-{category}"
    start_therapy(service, mrn)
    tracks = {label: uid() for label in P1}
    fu1 = D("2024-04-01")
    pet_scan(service, tmp_path / "0", mrn, BL, 0, tracks, 2.0)
    pet_scan(service, tmp_path / "1", mrn, fu1, 1, tracks, 2.1, **tracer)
    result = assessment(service, mrn, [fu1], "PERCIST-1.0")
    tp = at(result, "PERCIST-1.0", fu1)
    assert tp["category"] == category
    if named:
        assert "18F-PSMA-1007 (DCM 126758)" in tp["trace"][0] and "defined on 18F-FDG" in tp["trace"][0]
        cell = next(r for r in result["lesion_table"] if r["lesion"] == "B node")["cells"][fu1.isoformat()]
        assert (cell["tracer"], cell["sul_peak"]) == ("psma-1007", "5.50")


def test_pet_tracer_assumed_when_stated_nowhere_and_stated_through_fhir(service):
    """FHIR reference-region Observations: one without a tracer (FDG assumed, said in the trace), one scan with
    the radiopharmaceutical component (SNOMED CT 724025002, 68Ga-DOTATATE) → PERCIST NE naming it."""
    mrn = "MRN-V2-PET-FHIR"
    start_therapy(service, mrn)
    fu1, fu2 = D("2024-04-01"), D("2024-06-03")
    dotatate = {
        "code": {"coding": [{"system": OWN, "code": "radiopharmaceutical"}]},
        "valueCodeableConcept": {
            "coding": [{"system": "http://snomed.info/sct", "code": "724025002"}],
            "text": "Ga-68 DOTATATE",
        },
    }

    def pet(ident, label, day, sul, *extra, role=None):
        entry = tumour_size(mrn, ident, label, day, 20, 16, *extra, role=role)
        entry["resource"]["component"].append(
            {
                "code": {
                    "coding": [
                        {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "126402"},
                        {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "126031"},
                    ]
                },
                "valueQuantity": {
                    "value": sul,
                    "unit": "g/ml{SUVlbm}",
                    "system": "http://unitsofmeasure.org",
                    "code": "g/ml{SUVlbm}",
                },
            }
        )
        return entry

    post(
        service,
        [
            pet("p-a-0", "A lung", BL, 8.0, role="target"),
            pet("p-b-0", "B node", BL, 5.0, role="target"),
            pet("p-a-1", "A lung", fu1, 5.0),
            pet("p-b-1", "B node", fu1, 5.5),
            pet("p-a-2", "A lung", fu2, 5.0, dotatate),
            pet("p-b-2", "B node", fu2, 5.5),
        ],
    )
    result = assessment(service, mrn, [fu1, fu2], "PERCIST-1.0")
    assert any("18F-FDG — assumed: no tracer stated" in line for line in at(result, "PERCIST-1.0", fu1)["trace"])
    fu2_tp = at(result, "PERCIST-1.0", fu2)
    assert fu2_tp["category"] == "NE" and "68Ga-DOTATATE (SCT 724025002)" in fu2_tp["trace"][0]


# --- immuno-PET: tracer-specific uptake (contract §9.6) -------------------------------------------------------
# P1's FU1 acquired with 89Zr-atezolizumab (PD-L1; header coded DCM 126511 "Monoclonal Antibody 89Zr", the text
# naming the antibody): SUL peak A 5.0, B 5.5, C 3.0 → n 3, min 3.0, median 5.0, max 5.5, max/min 5.5 / 3.0 = 1.83;
# mean 4.5, population SD sqrt((0.25 + 1 + 2.25) / 3) = 1.080 → CV 24.0 %. PERCIST 1.0 is NE naming the tracer.
def test_immuno_pet_uptake_is_a_tracer_fact_on_fhir_and_percist_is_ne(service, tmp_path):
    mrn = "MRN-V2-PET-ZR89"
    start_therapy(service, mrn)
    tracks = {label: uid() for label in P1}
    fu1 = D("2024-04-01")
    atezolizumab = {
        "radiopharmaceutical": codes.DCM.MonoclonalAntibody89Zr,
        "radiopharmaceutical_text": "89Zr-atezolizumab",
    }
    pet_scan(service, tmp_path / "0", mrn, BL, 0, tracks, 2.0)
    pet_scan(service, tmp_path / "1", mrn, fu1, 1, tracks, 2.1, **atezolizumab)
    result = assessment(service, mrn, [fu1], "PERCIST-1.0")
    tp = at(result, "PERCIST-1.0", fu1)
    assert tp["category"] == "NE" and "89Zr-atezolizumab (PD-L1) (DCM 126511)" in tp["trace"][0]
    (uptake,) = result["tracer_uptake"]
    assert (uptake["tracer"], uptake["metric"], uptake["count"], uptake["median"]) == (
        "zr89-atezolizumab",
        "SULpeak",
        3,
        "5.00",
    )

    status, body, _ = service.request("GET", f"/api/patients/{mrn}")
    assert status == 200, body
    code = urllib.parse.quote(f"{OWN}|tracer-uptake", safe="")

    def observation():
        status, bundle, _ = service.request("GET", f"/fhir/Observation?code={code}&patient={body['patient']['id']}")
        found = [e["resource"] for e in bundle.get("entry", [])] if status == 200 else []
        return found[0] if found else None

    o = service.wait_for(observation, timeout=90, message=f"{mrn}'s tracer-uptake Observation")
    assert o["effectiveDateTime"] == fu1.isoformat() and "89Zr-atezolizumab (PD-L1)" in o["method"]["text"]
    by_code = {c["code"]["coding"][0]["code"]: c for c in o["component"]}
    tracer = by_code["radiopharmaceutical"]["valueCodeableConcept"]
    assert tracer["coding"][0]["code"] == "126511" and tracer["text"] == "89Zr-atezolizumab (PD-L1)"
    assert {k: by_code[k]["valueQuantity"]["value"] for k in ("uptake-min", "uptake-median", "uptake-max")} == {
        "uptake-min": 3,
        "uptake-median": 5,
        "uptake-max": 5.5,
    }
    assert by_code["uptake-max-min-ratio"]["valueQuantity"]["value"] == 1.83
    assert by_code["uptake-cv"]["valueQuantity"]["value"] == 24.0
    assert by_code["lesion-count"]["valueInteger"] == 3
