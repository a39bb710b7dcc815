"""Malformed, truncated and oversized DICOM for the fuzz tests: seeds and Hypothesis strategies.

Seeds are real objects: CT and PET images from our builders, TID 1500 reports from highdicom (three SR
classes), and the OHIF/dcmjs producer output in tests/fixtures/ohif-dcmjs. Two mutators:

- ``byte_mutations``: the Part 10 bytes are cut, flipped, spliced, and element headers (tags, VRs,
  lengths) are overwritten — biased towards the header and content tree, where the parsers work;
- ``tree_mutations``: a data set attribute anywhere in the SR content tree (or the header) is deleted or
  replaced by an odd value (NaN, 1e309, empty, wrong VR, wrong value type, unknown code…), then encoded.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import io
import itertools
import struct
from pathlib import Path

import pydicom
from hypothesis import strategies as st
from pydicom.config import settings as pydicom_settings
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from service.demo.sr_writer import LesionSpec, build_ct_image, build_measurement_report, build_pet_image

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ohif-dcmjs"
UID_ROOT = "1.2.826.0.1.3680043.10.511.88."
SEED_SOP = "999999999999"
"""Seed SOP Instance UIDs end with these 12 digits; each case gets its own 12 (same length: same bytes)."""


def _encode(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    with lenient_writing():
        ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@contextlib.contextmanager
def lenient_writing():
    """Let pydicom write values it would refuse (the point is to send them)."""
    previous = pydicom_settings.writing_validation_mode
    pydicom_settings.writing_validation_mode = pydicom.config.IGNORE
    try:
        yield
    finally:
        pydicom_settings.writing_validation_mode = previous


@functools.lru_cache(maxsize=1)
def seed_datasets() -> dict[str, Dataset]:
    study = UID_ROOT + "1"
    day = dt.date(2024, 3, 11)
    ct = build_ct_image(
        patient_id="FUZZ-1",
        patient_name="FUZZ^CT",
        study_instance_uid=study,
        study_date=day,
        sop_instance_uid=UID_ROOT + "2." + SEED_SOP,
        pixel_spacing_mm=0.7,
        accession_number="A1",
    )
    pet = build_pet_image(
        patient_id="FUZZ-1",
        patient_name="FUZZ^PET",
        study_instance_uid=UID_ROOT + "3",
        study_date=day,
        sop_instance_uid=UID_ROOT + "4." + SEED_SOP,
    )
    lesions = [
        LesionSpec(
            tracking_uid=UID_ROOT + "10",
            label="T1 liver",
            site=codes.SCT.Liver,
            long_axis_mm=31.5,
            short_axis_mm=22.0,
            baseline_category="target",
        ),
        LesionSpec(
            tracking_uid=UID_ROOT + "11",
            label="T2 node",
            nodal=True,
            long_axis_mm=18.0,
            short_axis_mm=12.5,
            baseline_category="target",
        ),
        LesionSpec(
            tracking_uid=UID_ROOT + "12",
            label="NT bone",
            nontarget_status="present",
            baseline_category="non-target",
            nontarget_change="INC",
        ),
        LesionSpec(tracking_uid=UID_ROOT + "13", label="N1 lung", long_axis_mm=12.0, equivocal=True),
        LesionSpec(tracking_uid=UID_ROOT + "14", label="T3 small", too_small=True, baseline_category="target"),
    ]
    seeds = {"ct": ct, "pet": pet}
    for n, document_class in enumerate(("comprehensive-3d", "comprehensive", "enhanced")):
        seeds[f"sr-{document_class}"] = build_measurement_report(
            evidence=[ct],
            lesions=lesions,
            document_class=document_class,
            sop_instance_uid=UID_ROOT + f"5{n}." + SEED_SOP,
            series_instance_uid=UID_ROOT + f"6{n}",
        )
    seeds["sr-pet"] = build_measurement_report(
        evidence=[pet],
        lesions=[
            LesionSpec(
                tracking_uid=UID_ROOT + "20",
                label="L1",
                long_axis_mm=25.0,
                suv_max=9.1,
                sul_peak=6.2,
                baseline_category="target",
            )
        ],
        sop_instance_uid=UID_ROOT + "57." + SEED_SOP,
        series_instance_uid=UID_ROOT + "67",
    )
    return seeds


@functools.lru_cache(maxsize=1)
def seeds() -> tuple[tuple[str, bytes], ...]:
    out = [(name, _encode(ds)) for name, ds in seed_datasets().items()]
    for path in fixture_files():
        out.append((f"ohif-{path.parent.name}-{path.stem}", path.read_bytes()))
    return tuple(out)


FIXTURE_COUNTS = {"images": 6, "sr": 4}
"""What tests/fixtures/ohif-dcmjs/README.md lists: six CT slices and four reports."""


def fixture_files(folder: Path = FIXTURES) -> list[Path]:
    """The OHIF/dcmjs producer files; raises (never an empty list) when the folder is missing or incomplete.

    A glob over a missing folder yields nothing, and the fuzzer would quietly run without its only real
    third-party seeds; a test error says what is wrong instead.
    """
    found = {sub: sorted((folder / sub).glob("*.dcm")) for sub in FIXTURE_COUNTS}
    counts = {sub: len(paths) for sub, paths in found.items()}
    if counts != FIXTURE_COUNTS:
        raise FileNotFoundError(
            f"OHIF/dcmjs fixtures incomplete in {folder}: found {counts}, expected {FIXTURE_COUNTS}"
        )
    return [path for paths in found.values() for path in paths]


class Blob(bytes):
    """Bytes with a short repr (Hypothesis prints failing cases: a hash, not 10 kB of escapes)."""

    seed = ""

    def __repr__(self) -> str:
        import hashlib

        return f"<{self.seed or 'bytes'}: {len(self)} bytes, sha256 {hashlib.sha256(self).hexdigest()[:16]}>"


def blob(seed: str, data: bytes) -> Blob:
    out = Blob(data)
    out.seed = seed
    return out


def with_fresh_uid(data: bytes, number: int) -> bytes:
    """Give a seed's bytes their own SOP Instance UID (file meta and data set), same length."""
    return data.replace(SEED_SOP.encode(), str(10**11 + number % (9 * 10**11 - 1)).encode())


def sop_uid_of(data: bytes, fallback: str) -> str:
    """The SOP Instance UID as a lenient reader sees it (what the C-STORE request would carry)."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
        value = str(ds.get("SOPInstanceUID", "") or "").strip()
        return value or fallback
    except Exception:  # noqa: BLE001 -- fuzzed bytes: whatever the lenient reader raises, fall back
        return fallback


# -- byte-level mutations -------------------------------------------------------------------------------

VRS = [
    b"AE",
    b"AS",
    b"AT",
    b"CS",
    b"DA",
    b"DS",
    b"DT",
    b"FL",
    b"FD",
    b"IS",
    b"LO",
    b"LT",
    b"OB",
    b"OD",
    b"OF",
    b"OL",
    b"OW",
    b"PN",
    b"SH",
    b"SL",
    b"SQ",
    b"SS",
    b"ST",
    b"TM",
    b"UC",
    b"UI",
    b"UL",
    b"UN",
    b"UR",
    b"US",
    b"UT",
    b"\x00\x00",
    b"ZZ",
]
INTERESTING_LENGTHS = [0, 1, 2, 3, 0xFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFF0]
TAGS = [
    (0x0002, 0x0010),
    (0x0008, 0x0016),
    (0x0008, 0x0018),
    (0x0008, 0x0020),
    (0x0008, 0x0060),
    (0x0010, 0x0020),
    (0x0020, 0x000D),
    (0x0020, 0x000E),
    (0x0028, 0x0010),
    (0x0028, 0x0011),
    (0x0028, 0x0030),
    (0x0028, 0x0100),
    (0x7FE0, 0x0010),
    (0x0040, 0xA730),
    (0x0040, 0xA040),
    (0x0040, 0xA010),
    (0x0040, 0xA043),
    (0x0008, 0x0100),
    (0x0008, 0x0102),
    (0x0040, 0xA30A),
    (0x0040, 0xA300),
    (0x0040, 0x08EA),
    (0x0040, 0xA124),
    (0x0040, 0xA160),
    (0xFFFE, 0xE000),
    (0xFFFE, 0xE00D),
    (0xFFFE, 0xE0DD),
    (0x0054, 0x0016),
    (0x0018, 0x1074),
]


def _tag_bytes(tag: tuple[int, int]) -> bytes:
    return struct.pack("<HH", *tag)


def _mutate(draw, data: bytearray) -> bytearray:
    for _ in range(draw(st.integers(1, 4))):
        size = len(data)
        # Most of an image is Pixel Data: aim at the first 8 KB (the header) about half the time.
        hot = min(size, 8192)
        position = draw(st.one_of(st.integers(0, max(hot - 1, 0)), st.integers(0, max(size - 1, 0)))) if size else 0
        op = draw(st.sampled_from(["truncate", "flip", "insert", "delete", "length", "vr", "tag", "splice", "grow"]))
        if op == "truncate":
            del data[draw(st.integers(0, size)) :]
        elif op == "flip" and size:
            for offset in range(draw(st.integers(1, 8))):
                if position + offset < size:
                    data[position + offset] = draw(st.integers(0, 255))
        elif op == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            del data[position : position + draw(st.integers(1, 256))]
        elif op in ("length", "vr", "tag"):
            tag = _tag_bytes(draw(st.sampled_from(TAGS)))
            hits = []
            at = data.find(tag)
            while at != -1 and len(hits) < 32:
                hits.append(at)
                at = data.find(tag, at + 1)
            if not hits:
                continue
            at = draw(st.sampled_from(hits))
            if op == "length":
                # Explicit VR short form: tag(4) VR(2) len(2); long form: tag VR 00 00 len(4); items: tag len(4).
                value = draw(st.one_of(st.sampled_from(INTERESTING_LENGTHS), st.integers(0, 2**32 - 1)))
                width = draw(st.sampled_from([2, 4]))
                start = at + draw(st.sampled_from([4, 6, 8]))
                data[start : start + width] = struct.pack("<I" if width == 4 else "<H", value % (2 ** (8 * width)))
            elif op == "vr":
                data[at + 4 : at + 6] = draw(st.sampled_from(VRS))
            else:
                data[at : at + 4] = _tag_bytes(draw(st.sampled_from(TAGS)))
        elif op == "splice":
            _, other = draw(st.sampled_from(seeds()))
            start = draw(st.integers(0, max(len(other) - 1, 0)))
            data[position : position + draw(st.integers(0, 512))] = other[start : start + draw(st.integers(1, 2048))]
        elif op == "grow":
            data += draw(st.sampled_from([b"\x00" * 1024, b"\xff" * 4096, bytes(range(256)) * 64]))
    return data


@st.composite
def byte_mutations(draw) -> tuple[str, bytes]:
    """A seed's whole Part 10 encoding, mutated (what the ingest would see whatever the transport did)."""
    name, data = draw(st.sampled_from(seeds()))
    return name, blob(name, bytes(_mutate(draw, bytearray(with_fresh_uid(data, draw(st.integers(1, 10**12 - 1)))))))


def meta_length(data: bytes) -> int:
    """Bytes of preamble + File Meta (the part a C-STORE does not carry)."""
    fp = io.BytesIO(data)
    pydicom.filereader.read_preamble(fp, False)
    pydicom.filereader.read_dataset(
        fp, is_implicit_VR=False, is_little_endian=True, stop_when=lambda tag, vr, length: tag.group != 2
    )
    return fp.tell()


@st.composite
def wire_mutations(draw) -> tuple[str, bytes]:
    """A seed whose data set (not its File Meta) is mutated: what a broken sender puts in its P-DATA."""
    name, data = draw(st.sampled_from(seeds()))
    data = with_fresh_uid(data, draw(st.integers(1, 10**12 - 1)))
    head = meta_length(data)
    return name, blob(name, data[:head] + bytes(_mutate(draw, bytearray(data[head:]))))


# -- data-set-level mutations ---------------------------------------------------------------------------

ODD_VALUES = [
    "",
    " ",
    "NaN",
    "nan",
    "inf",
    "-inf",
    "1e309",
    "-1e309",
    "1e-400",
    "0",
    "-0",
    "-1",
    "99999999999999999999",
    "1,5",
    "abc",
    "12.5.3",
    "\\",
    "\x00",
    "é" * 70,
    "x" * 1100,
    "2.25.1",
    "19000101",
    "20241301",
    "00000000",
]
TREE_KEYWORDS = [
    "ValueType",
    "RelationshipType",
    "ConceptNameCodeSequence",
    "ConceptCodeSequence",
    "ContentSequence",
    "MeasuredValueSequence",
    "NumericValue",
    "MeasurementUnitsCodeSequence",
    "CodeValue",
    "CodingSchemeDesignator",
    "CodeMeaning",
    "UID",
    "TextValue",
    "GraphicData",
    "GraphicType",
    "ReferencedSOPSequence",
    "ReferencedSOPInstanceUID",
    "ContentTemplateSequence",
    "TemplateIdentifier",
]
HEADER_KEYWORDS = [
    "PatientID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "StudyDate",
    "Modality",
    "SOPClassUID",
    "PixelSpacing",
    "SliceThickness",
    "Rows",
    "Columns",
    "BitsAllocated",
    "PatientBirthDate",
    "PatientSex",
    "CurrentRequestedProcedureEvidenceSequence",
    "CodingSchemeIdentificationSequence",
    "PatientWeight",
    "RadiopharmaceuticalInformationSequence",
    "NumberOfFrames",
    "SpecificCharacterSet",
    "AccessionNumber",
]
ODD_SOP_CLASSES = [
    "1.2.840.10008.5.1.4.1.1.88.11",
    "1.2.840.10008.5.1.4.1.1.88.35",
    "1.2.840.10008.5.1.4.1.1.88.22",
    "1.2.840.10008.5.1.4.1.1.2",
    "1.2.840.10008.5.1.4.1.1.128",
    "1.2.3",
    "",
]


def _nodes(ds: Dataset, depth: int = 0) -> list[Dataset]:
    out = [ds]
    if depth > 12:
        return out
    for element in ds:
        if element.VR == "SQ":
            for item in element.value:
                out += _nodes(item, depth + 1)
    return out


@st.composite
def tree_mutations(draw) -> tuple[str, bytes]:
    names = [name for name in seed_datasets()]
    name = draw(st.sampled_from(names))
    ds = pydicom.dcmread(io.BytesIO(with_fresh_uid(dict(seeds())[name], draw(st.integers(1, 10**12 - 1)))))
    for _ in range(draw(st.integers(1, 3))):
        nodes = _nodes(ds)
        node = nodes[draw(st.integers(0, len(nodes) - 1))]
        keyword = draw(st.sampled_from(TREE_KEYWORDS + HEADER_KEYWORDS))
        op = draw(st.sampled_from(["delete", "odd", "empty-seq", "duplicate", "sop-class", "type"]))
        target = ds if keyword in HEADER_KEYWORDS else node
        with lenient_writing():
            try:
                if op == "delete" and keyword in target:
                    del target[keyword]
                elif op == "odd" and keyword in target and target[keyword].VR != "SQ":
                    target[keyword].value = draw(st.sampled_from(ODD_VALUES))
                elif op == "empty-seq" and keyword in target and target[keyword].VR == "SQ":
                    target[keyword].value = []
                elif (
                    op == "duplicate"
                    and keyword in target
                    and target[keyword].VR == "SQ"
                    and len(target[keyword].value)
                ):
                    items = list(target[keyword].value)
                    target[keyword].value = items + items[: draw(st.integers(1, len(items)))]
                elif op == "sop-class":
                    ds.SOPClassUID = draw(st.sampled_from(ODD_SOP_CLASSES))
                    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
                elif op == "type" and keyword in target and target[keyword].VR != "SQ":
                    target[keyword].value = draw(
                        st.sampled_from(
                            [
                                "CONTAINER",
                                "NUM",
                                "CODE",
                                "TEXT",
                                "UIDREF",
                                "SCOORD",
                                "IMAGE",
                                "DATE",
                                "CONTAINS",
                                "HAS PROPERTIES",
                                "?",
                            ]
                        )
                    )
            except (TypeError, ValueError, AttributeError, OverflowError):
                pass
    try:
        return name, blob(name, _encode(ds))
    except Exception:  # noqa: BLE001 - pydicom cannot write this combination: send the unmutated seed
        return name, blob(name, with_fresh_uid(dict(seeds())[name], draw(st.integers(1, 10**12 - 1))))


# -- oversized ------------------------------------------------------------------------------------------


def big_ct(megabytes: int, number: int) -> bytes:
    """A valid single-frame CT of about ``megabytes`` MB (square, 16 bit)."""
    side = int((megabytes * 1024 * 1024 / 2) ** 0.5)
    ds = build_ct_image(
        patient_id="FUZZ-BIG",
        patient_name="FUZZ^BIG",
        study_instance_uid=UID_ROOT + "7",
        study_date=dt.date(2024, 3, 11),
        sop_instance_uid=UID_ROOT + f"8.{number}",
        rows=side,
        columns=side,
    )
    return _encode(ds)


def many_groups_sr(groups: int, number: int) -> bytes:
    """A TID 1500 report with ``groups`` measurement groups (the first group copied)."""
    ds = pydicom.dcmread(io.BytesIO(dict(seeds())["sr-comprehensive-3d"]))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = UID_ROOT + f"9.{number}"
    for item in ds.ContentSequence:
        if item.ConceptNameCodeSequence[0].CodeValue == "126010":
            first = item.ContentSequence[0]
            copies = []
            for _ in range(groups):
                copy = Dataset()
                copy.update(first)
                copies.append(copy)
            item.ContentSequence = copies
    return _encode(ds)


# -- plausibility edges (contract §9.2) ------------------------------------------------------------------------

TODAY = dt.datetime.now(dt.UTC).date()
"""The listener's "today" (service/ops/config.py ``today``: the UTC date)."""
LENGTH_EDGES = ["-12", "-0.1", "0", "0.0", "500", "500.0", "500.1", "1e9", "1e308", "NaN", "nan", "inf", "-inf"]
"""Numeric Values written for T1's Long Axis (31.5 mm in the seed): negative, zero, the limit, huge, NaN-like."""
LENGTH_TEXT_EDGES = ["abc", "1,5", "--1"]
"""Not numbers at all: pydicom will not set them as DS, so they are written into the bytes."""
DATE_EDGES = [
    dt.date(1989, 12, 31),
    dt.date(1990, 1, 1),
    dt.date(1800, 1, 1),
    dt.date(2200, 1, 1),
    TODAY,
    TODAY + dt.timedelta(days=1),
    TODAY + dt.timedelta(days=2),
]


def plausible_length(raw: str) -> bool:
    """The oracle: a finite number from 0 to 500 mm (IMMUNORAD_MAX_LESION_MM's default), both inclusive."""
    try:
        value = float(raw)
    except ValueError:
        return False
    return value == value and abs(value) != float("inf") and 0 <= value <= 500


def plausible_dates(study_date: dt.date, birth_date: dt.date | None) -> bool:
    """The oracle: a study from 1990-01-01 to tomorrow, a birth on or before today and the study."""
    scan_ok = dt.date(1990, 1, 1) <= study_date <= TODAY + dt.timedelta(days=1)
    return scan_ok and (birth_date is None or (birth_date <= TODAY and birth_date <= study_date))


def _long_axis_item(ds: Dataset) -> Dataset:
    """T1's Long Axis NUM (the first group's 31.5 mm) in the SR seed."""
    stack = [ds]
    while stack:
        node = stack.pop(0)
        for item in node.get("ContentSequence", []) or []:
            if item.get("ValueType") == "NUM" and str(item.MeasuredValueSequence[0].NumericValue) == "31.5":
                return item.MeasuredValueSequence[0]
            stack.append(item)
    raise LookupError("the seed SR has no 31.5 mm Long Axis")


_EDGE_CASES = itertools.count(5 * 10**11)


@st.composite
def plausibility_edges(draw) -> tuple[str, bytes, dict]:
    """The comprehensive SR seed with one plausibility edge (T1's length, the study date or the birth date) and
    a patient of its own; returns (what, bytes, expectation) where the expectation says whether the instance
    is stored and whether T1's group is rejected."""
    number = next(_EDGE_CASES)  # every case its own instance, patient and study: no case sees another's data
    ds = pydicom.dcmread(io.BytesIO(with_fresh_uid(dict(seeds())["sr-comprehensive-3d"], number)))
    ds.PatientID = f"FZP{number % 10**9:09d}"
    ds.StudyInstanceUID = f"{UID_ROOT}13.{number}"  # a study of its own too (a study belongs to one patient)
    kind = draw(st.sampled_from(["length", "length-text", "study-date", "birth-date"]))
    expect = {"stored": True, "t1_rejected": False}
    with lenient_writing():
        if kind == "length":
            raw = draw(st.sampled_from(LENGTH_EDGES))
            _long_axis_item(ds)["NumericValue"].value = raw
            expect["t1_rejected"] = not plausible_length(raw)
            return f"length {raw}", _encode(ds), expect
        if kind == "length-text":
            raw = draw(st.sampled_from(LENGTH_TEXT_EDGES))
            _long_axis_item(ds)["NumericValue"].value = "99999"  # a unique placeholder, then the bytes
            data = _encode(ds)
            assert data.count(b"99999 ") == 1
            expect["t1_rejected"] = True
            return f"length {raw}", data.replace(b"99999 ", raw.encode().ljust(6)), expect
        study_date = draw(st.sampled_from(DATE_EDGES)) if kind == "study-date" else dt.date(2024, 3, 11)
        birth_date = draw(st.sampled_from(DATE_EDGES + [dt.date(2024, 3, 11), dt.date(2024, 3, 12)]))
        ds.StudyDate = study_date.strftime("%Y%m%d")
        if kind == "birth-date":
            ds.PatientBirthDate = birth_date.strftime("%Y%m%d")
        expect["stored"] = plausible_dates(study_date, birth_date if kind == "birth-date" else None)
        return f"{kind} {study_date} / {birth_date if kind == 'birth-date' else '-'}", _encode(ds), expect
