"""The plausibility gate through the DICOM listener (contract §9.2), pynetdicom and DCMTK as peers.

An SR group with an implausible value is rejected with its reason (in the assessment's warnings and the audit
log), the rest of the SR is used, and the lesion is *not assessed* at that scan: RECIST 1.1 §4.3 makes the
timepoint NE (a target missing, the partial sum not showing PD), never PR/PD from the refused value. An SR with
nothing usable, or an image whose study or birth date is implausible, is refused with a 0xC000-range status.
"""

from __future__ import annotations

import datetime as dt
import io
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from sqlalchemy import select

from service.assessment.worker import Worker
from service.demo.sr_writer import LesionSpec, build_ct_image, build_measurement_report
from service.persistence.models import Assessment, AuditEvent, Instance, Measurement, Patient
from tests.dicom_listener.test_scp import count, listener, pynetdicom_store, save  # noqa: F401 -- pytest fixtures: imported to be used by name as test arguments
from tests.fuzz.dicom_cases import lenient_writing
from tests.support.dcmtk import storescu

ROOT = "1.2.826.0.1.3680043.10.511.13."
PLACEHOLDER = "77.7"
"""highdicom refuses negative lengths: the SR is built with this value, which is then overwritten as written."""
BASELINE, FOLLOWUP = dt.date(2024, 1, 8), dt.date(2024, 3, 11)


def _num_items(ds: Dataset) -> Iterator[Dataset]:
    for item in ds.get("ContentSequence", []) or []:
        if item.get("ValueType") == "NUM":
            yield item
        yield from _num_items(item)


def overwrite(ds: Dataset, raw: str) -> Dataset:
    """Write ``raw`` as the Numeric Value of every NUM that holds the placeholder (as a sender's bytes would)."""
    hits = 0
    for item in _num_items(ds):
        measured = item.MeasuredValueSequence[0]
        if str(measured.NumericValue) == PLACEHOLDER:
            with lenient_writing():
                measured["NumericValue"].value = raw
            hits += 1
    assert hits == 1
    return ds


def image(mrn: str, study: str, day: dt.date, sop: str, **kw) -> Dataset:
    return build_ct_image(
        patient_id=mrn, patient_name="PLAUS^TEST", study_instance_uid=study, study_date=day, sop_instance_uid=sop, **kw
    )


def report(evidence: Dataset, t1: dict, t2_mm: float | None = 20.0, baseline: bool = False) -> Dataset:
    category = "target" if baseline else None
    lesions = [LesionSpec(tracking_uid=ROOT + "1", label="T1", baseline_category=category, **t1)]
    if t2_mm is not None:
        lesions.append(LesionSpec(tracking_uid=ROOT + "2", label="T2", long_axis_mm=t2_mm, baseline_category=category))
    return build_measurement_report(evidence=[evidence], lesions=lesions)


def send(port: int, ds: Dataset) -> int:
    with lenient_writing():
        return pynetdicom_store(port, ds).Status


def assessment(db, mrn: str) -> dict:
    with db.read() as session:
        patient = session.scalars(select(Patient).where(Patient.mrn == mrn)).one()
        return (
            session.scalars(
                select(Assessment).where(Assessment.patient_id == patient.id).order_by(Assessment.version.desc())
            )
            .first()
            .result
        )


def recist_timepoint(result: dict, day: dt.date) -> dict:
    recist = next(c for c in result["criteria"] if c["criterion"] == "RECIST-1.1")
    return next(tp for tp in recist["timepoints"] if tp["scan_date"] == day.isoformat())


def baseline_and_followup(
    port: int, mrn: str, tag: str, t1: dict, raw: str | None = None, folder: Path | None = None
) -> tuple[int, Dataset]:
    """Baseline T1 30 mm + T2 20 mm (SoD 50), then the follow-up with T1 as given (``raw`` overwrites the
    placeholder as written) and T2 20 mm. Returns the follow-up SR's C-STORE status and the SR."""
    base_image = image(mrn, ROOT + tag + ".1", BASELINE, ROOT + tag + ".2")
    assert send(port, base_image) == 0x0000
    assert send(port, report(base_image, {"long_axis_mm": 30.0}, baseline=True)) == 0x0000
    follow_image = image(mrn, ROOT + tag + ".3", FOLLOWUP, ROOT + tag + ".4")
    assert send(port, follow_image) == 0x0000
    follow = report(follow_image, t1)
    if raw == "abc":
        # Not a DS value pydicom will set: the sender's bytes are edited (same length) and DCMTK sends them.
        data = io.BytesIO()
        follow.save_as(data, enforce_file_format=True)
        assert data.getvalue().count(PLACEHOLDER.encode()) == 1
        path = folder / "abc.dcm"
        path.write_bytes(data.getvalue().replace(PLACEHOLDER.encode(), b"abc "))
        result = storescu("127.0.0.1", port, [path])
        return (0x0000 if result.returncode == 0 else 0xC000), follow
    if raw is not None:
        overwrite(follow, raw)
    return send(port, follow), follow


def stored_groups(db, sop_uid: str) -> tuple[list[Measurement], AuditEvent]:
    with db.read() as session:
        rows = list(
            session.scalars(
                select(Measurement).where(Measurement.source_ref == sop_uid).order_by(Measurement.group_index)
            )
        )
        audit = session.scalars(
            select(AuditEvent).where(AuditEvent.kind == "dicom-store").order_by(AuditEvent.id.desc())
        ).first()
    return rows, audit


@pytest.mark.parametrize(
    ("field", "raw", "reason"),
    [
        # On a 30 mm baseline, −12 mm would have read "PR (−140 %)": (−12 − 30) / 30 = −140 %.
        ("long_axis_mm", "-12", "Long Axis is negative"),
        # On a 31.5 mm baseline, 1e9 mm would have read "PD (+3 174 603 074 %)": (1e9 − 31.5) / 31.5.
        ("long_axis_mm", "1e9", "Long Axis is above 500 mm"),
        ("long_axis_mm", "500.1", "Long Axis is above 500 mm"),
        ("short_axis_mm", "-0.1", "Short Axis is negative"),
        ("long_axis_mm", "NaN", "Long Axis is not a finite number"),
        ("long_axis_mm", "Infinity", "Long Axis is not a finite number"),
        ("long_axis_mm", "abc", "Long Axis is not a finite number"),
    ],
)
def test_an_implausible_length_rejects_its_group_and_the_lesion_is_not_assessed(
    field, raw, reason, listener, settings, db, tmp_path
):
    mrn = f"PL-{field[:1]}{raw}"
    t1 = {"long_axis_mm": 25.0, field: float(PLACEHOLDER)}
    status, follow = baseline_and_followup(
        listener.port, mrn, str(zlib.crc32(mrn.encode()) % 10_000), t1, raw, tmp_path
    )
    assert status == 0x0000  # T2 is usable: the rest of the SR is kept
    rows, audit = stored_groups(db, follow.SOPInstanceUID)
    assert [bool(r.rejected_reason) for r in rows] == [True, False]
    assert reason in rows[0].rejected_reason
    assert rows[0].long_axis_mm is None and rows[0].short_axis_mm is None
    assert audit.detail["rejected"] == [{"group": 0, "reason": rows[0].rejected_reason}]
    assert raw not in rows[0].rejected_reason  # the reason names the element, never the value
    Worker(settings, db).drain()
    result = assessment(db, mrn)
    tp = recist_timepoint(result, FOLLOWUP)
    # T1 not assessed, T2 20 mm: partial sum 20 vs baseline 50 (−60 %, no PD) → NE, never PR/PD from T1's value.
    assert tp["category"] == "NE", tp
    assert any(reason in w for w in result["warnings"])


@pytest.mark.parametrize("raw", ["0", "500"])
def test_zero_and_the_maximum_are_plausible(raw, listener, settings, db):
    mrn = f"PL-OK-{raw}"
    status, follow = baseline_and_followup(listener.port, mrn, f"9{raw}", {"long_axis_mm": float(PLACEHOLDER)}, raw)
    assert status == 0x0000
    rows, _ = stored_groups(db, follow.SOPInstanceUID)
    assert [r.rejected_reason for r in rows] == [None, None]
    assert rows[0].long_axis_mm == int(raw)
    Worker(settings, db).drain()
    tp = recist_timepoint(assessment(db, mrn), FOLLOWUP)
    # 0 mm: SoD 0 + 20 = 20 vs 50 → −60 % → PR. 500 mm: 520 vs nadir 50 → +940 % and +470 mm → PD.
    assert tp["category"] == ("PR" if raw == "0" else "PD")


@pytest.mark.parametrize(
    ("spec", "raw", "reason"),
    [
        ({"suv_max": 77.7}, "-1", "SUVbw Maximum is negative"),
        ({"suv_max": 77.7}, "100.01", "SUVbw Maximum is above 100"),
        ({"sul_peak": 77.7}, "1e6", "SUVlbm Peak is above 100"),
        ({"metabolic_volume_ml": 77.7}, "-5", "Metabolic Volume is negative"),
        ({"tlg": 77.7}, "-5", "Total Lesion Glycolysis is negative"),
    ],
)
def test_implausible_pet_values_reject_their_group(spec, raw, reason, listener, db):
    mrn = "PL-PET"
    ct = image(mrn, ROOT + "50.1", FOLLOWUP, ROOT + "50.2." + str(zlib.crc32(reason.encode()) % 1000))
    assert send(listener.port, ct) == 0x0000
    sr = overwrite(report(ct, {"long_axis_mm": 25.0, **spec}), raw)
    assert send(listener.port, sr) == 0x0000
    rows, audit = stored_groups(db, sr.SOPInstanceUID)
    assert reason in (rows[0].rejected_reason or "") and rows[1].rejected_reason is None
    assert audit.detail["rejected"][0]["group"] == 0


def test_an_sr_with_nothing_plausible_is_refused_and_nothing_is_stored(listener, db, tmp_path):
    ct = image("PL-ALL", ROOT + "60.1", FOLLOWUP, ROOT + "60.2")
    assert send(listener.port, ct) == 0x0000
    sr = overwrite(report(ct, {"long_axis_mm": float(PLACEHOLDER)}, t2_mm=None), "-12")
    with lenient_writing():
        path = save(sr, tmp_path, "sr.dcm")
    result = storescu("127.0.0.1", listener.port, [path])  # DCMTK as the sender
    assert result.returncode != 0 or "0xc003" in (result.stdout + result.stderr).lower()
    with db.read() as session:
        assert session.scalars(select(Instance).where(Instance.sop_uid == sr.SOPInstanceUID)).first() is None
    assert count(db, Measurement) == 0
    status = send(listener.port, sr)
    assert status == 0xC003


TODAY = dt.datetime.now(dt.UTC).date()


@pytest.mark.parametrize(
    ("study_date", "birth_date", "accepted"),
    [
        (dt.date(1990, 1, 1), None, True),
        (dt.date(1989, 12, 31), None, False),
        (TODAY + dt.timedelta(days=1), None, True),
        (TODAY + dt.timedelta(days=2), None, False),
        (dt.date(1800, 1, 1), None, False),
        (dt.date(2200, 1, 1), None, False),
        (FOLLOWUP, FOLLOWUP, True),  # a scan on the day of birth
        (FOLLOWUP, FOLLOWUP + dt.timedelta(days=1), False),  # born after the scan
        (TODAY + dt.timedelta(days=1), TODAY + dt.timedelta(days=1), False),  # born in the future
    ],
)
def test_image_headers_with_implausible_dates_are_refused(study_date, birth_date, accepted, listener, db):
    ct = image("PL-DATE", ROOT + "70." + study_date.strftime("%Y%m%d"), study_date, None, birth_date=birth_date)
    status = send(listener.port, ct)
    with db.read() as session:
        stored = session.scalars(select(Instance).where(Instance.sop_uid == ct.SOPInstanceUID)).first()
    if accepted:
        assert status == 0x0000 and stored is not None
    else:
        assert status == 0xC003 and stored is None


def test_a_study_before_the_stored_birth_date_is_refused(listener, db):
    first = image("PL-BIRTH", ROOT + "80.1", FOLLOWUP, ROOT + "80.2", birth_date=dt.date(2020, 5, 1))
    assert send(listener.port, first) == 0x0000
    earlier = image("PL-BIRTH", ROOT + "80.3", dt.date(2019, 1, 1), ROOT + "80.4")
    assert send(listener.port, earlier) == 0xC003


def test_a_birth_date_first_stated_after_an_earlier_study_is_refused(listener, db):
    first = image("PL-BIRTH2", ROOT + "81.1", dt.date(2024, 1, 8), ROOT + "81.2")  # no birth date
    assert send(listener.port, first) == 0x0000
    # A later study's header says the patient was born after the first study: refused, nothing changes.
    later = image("PL-BIRTH2", ROOT + "81.3", FOLLOWUP, ROOT + "81.4", birth_date=dt.date(2024, 2, 1))
    assert send(listener.port, later) == 0xC003
    with db.read() as session:
        assert session.scalars(select(Patient).where(Patient.mrn == "PL-BIRTH2")).one().birth_date is None
    # Born on the day of the first study: plausible.
    same_day = image("PL-BIRTH2", ROOT + "81.5", FOLLOWUP, ROOT + "81.6", birth_date=dt.date(2024, 1, 8))
    assert send(listener.port, same_day) == 0x0000
