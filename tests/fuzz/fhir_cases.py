"""Malformed and hostile FHIR input for the fuzz tests: valid seeds of every accepted resource type, and
Hypothesis strategies that mutate them (JSON tree edits), wrap them in Bundles, or replace them entirely.

There is no OpenAPI description of /fhir to drive schemathesis with, so the strategies are written from
contract §4 (the resources and shapes the endpoint accepts) and R4's rules (types, references, Bundles).
"""

from __future__ import annotations

import copy
import datetime as dt
import json

from hypothesis import strategies as st

SYSTEM = "urn:immunorad:mrn"
OWN = "http://immunorad.org/fhir/CodeSystem/immunorad"
LOINC = "http://loinc.org"
SCT = "http://snomed.info/sct"


def subject(mrn: str = "FUZZ-FHIR-1") -> dict:
    return {"identifier": {"system": SYSTEM, "value": mrn}}


def seed_resources() -> list[dict]:
    mrn = "FUZZ-FHIR-1"
    lesion = {
        "resourceType": "BodyStructure",
        "id": "l1",
        "identifier": [
            {"system": "urn:dicom:uid", "value": "urn:oid:1.2.826.0.1.3680043.10.511.90.1"},
            {"value": "T1"},
        ],
        "patient": subject(mrn),
    }
    return [
        {
            "resourceType": "Patient",
            "identifier": [{"system": SYSTEM, "value": mrn}],
            "gender": "female",
            "birthDate": "1960-01-01",
        },
        {
            "resourceType": "Observation",
            "status": "final",
            "identifier": [{"system": "urn:fuzz:obs", "value": "o1"}],
            "code": {"coding": [{"system": LOINC, "code": "21889-1"}]},
            "subject": subject(mrn),
            "effectiveDateTime": "2024-03-11",
            "contained": [lesion],
            "focus": [{"reference": "#l1"}],
            "bodySite": {"coding": [{"system": SCT, "code": "10200004"}]},
            "component": [
                {
                    "code": {"coding": [{"system": LOINC, "code": "33728-7"}]},
                    "valueQuantity": {"value": 31.5, "unit": "mm", "system": "http://unitsofmeasure.org", "code": "mm"},
                },
                {
                    "code": {"coding": [{"system": LOINC, "code": "33729-5"}]},
                    "valueQuantity": {"value": 2.2, "unit": "cm", "system": "http://unitsofmeasure.org", "code": "cm"},
                },
                {
                    "code": {"coding": [{"system": OWN, "code": "lesion-role"}]},
                    "valueCodeableConcept": {"coding": [{"system": OWN, "code": "target"}]},
                },
                {"code": {"coding": [{"system": OWN, "code": "nodal"}]}, "valueBoolean": False},
            ],
        },
        {
            "resourceType": "Observation",
            "status": "final",
            "identifier": [{"system": "urn:fuzz:obs", "value": "nt1"}],
            "code": {"coding": [{"system": LOINC, "code": "21889-1"}]},
            "subject": subject(mrn),
            "effectiveDateTime": "2024-05-06",
            "focus": [{"identifier": {"value": "NT bone"}}],
            "component": [
                {
                    "code": {"coding": [{"system": OWN, "code": "non-target-status"}]},
                    "valueCodeableConcept": {"coding": [{"system": OWN, "code": "present"}]},
                },
                {
                    "code": {"coding": [{"system": OWN, "code": "non-target-change"}]},
                    "valueCodeableConcept": {"coding": [{"system": OWN, "code": "INC"}]},
                },
            ],
        },
        {
            "resourceType": "Observation",
            "status": "final",
            "identifier": [{"system": "urn:fuzz:obs", "value": "ecog"}],
            "code": {"coding": [{"system": LOINC, "code": "89247-1"}]},
            "subject": subject(mrn),
            "effectiveDateTime": "2024-01-10",
            "valueInteger": 1,
        },
        {
            "resourceType": "Observation",
            "status": "final",
            "identifier": [{"system": "urn:fuzz:obs", "value": "ldh"}],
            "code": {"coding": [{"system": LOINC, "code": "2532-0"}]},
            "subject": subject(mrn),
            "effectiveDateTime": "2024-01-10",
            "valueQuantity": {"value": 310, "unit": "U/L"},
            "referenceRange": [{"high": {"value": 250, "unit": "U/L"}}],
        },
        {
            "resourceType": "MedicationAdministration",
            "status": "completed",
            "identifier": [{"system": "urn:fuzz:ma", "value": "c1d1"}],
            "medicationCodeableConcept": {
                "coding": [{"system": "http://www.whocc.no/atc", "code": "L01FF02"}],
                "text": "pembrolizumab",
            },
            "subject": subject(mrn),
            "effectiveDateTime": "2024-01-15",
        },
        {
            "resourceType": "MedicationStatement",
            "status": "stopped",
            "identifier": [{"system": "urn:fuzz:ms", "value": "stop"}],
            "medicationCodeableConcept": {"text": "nivolumab"},
            "subject": subject(mrn),
            "effectivePeriod": {"start": "2024-01-15", "end": "2024-06-01"},
        },
        {
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "identifier": [{"system": "urn:fuzz:mr", "value": "r1"}],
            "medicationCodeableConcept": {"text": "ipilimumab"},
            "subject": subject(mrn),
            "authoredOn": "2024-01-02",
        },
        {
            "resourceType": "Procedure",
            "status": "completed",
            "identifier": [{"system": "urn:fuzz:proc", "value": "rt1"}],
            "code": {"coding": [{"system": SCT, "code": "108290001"}]},
            "subject": subject(mrn),
            "performedDateTime": "2024-02-01",
            "contained": [lesion],
            "extension": [
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/procedure-targetBodyStructure",
                    "valueReference": {"reference": "#l1"},
                }
            ],
        },
        {
            "resourceType": "ImagingStudy",
            "status": "available",
            "identifier": [{"system": "urn:dicom:uid", "value": "urn:oid:1.2.826.0.1.3680043.10.511.90.2"}],
            "subject": subject(mrn),
            "started": "2024-03-11T09:00:00Z",
        },
        {
            "resourceType": "Condition",
            "identifier": [{"system": "urn:fuzz:cond", "value": "irae1"}],
            "code": {"coding": [{"system": SCT, "code": "233703007"}]},
            "subject": subject(mrn),
            "onsetDateTime": "2024-04-01",
        },
        {k: v for k, v in lesion.items() if k != "id"},
    ]


ODD_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            " ",
            "2024-13-45",
            "2024-02-30T25:61:00Z",
            "1e999",
            "-0",
            "NaN",
            "x" * 5000,
            "Patient/",
            "Patient?identifier=",
            "#",
            "#missing",
            "urn:uuid:nope",
            "\u0000",
            "\ud7ff\ue000",
            "../../etc/passwd",
            "<script>",
            "Observation/../Patient/1",
        ]
    ),
)

JSON = st.recursive(
    ODD_SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def _paths(value, prefix=()) -> list[tuple]:
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out += _paths(item, prefix + (index,))
    return out


def _get(value, path):
    for step in path:
        value = value[step]
    return value


@st.composite
def mutated_resource(draw) -> dict:
    resource = copy.deepcopy(draw(st.sampled_from(seed_resources())))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(resource) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, key = _get(resource, path[:-1]), path[-1]
        op = draw(st.sampled_from(["delete", "replace", "retype", "add", "duplicate", "resource-type"]))
        try:
            if op == "delete":
                del parent[key]
            elif op == "replace":
                parent[key] = draw(JSON)
            elif op == "retype":
                value = parent[key]
                parent[key] = [value] if not isinstance(value, list) else (value[0] if value else {})
            elif op == "add" and isinstance(parent, dict):
                parent[
                    draw(
                        st.sampled_from(
                            [
                                "_" + str(key),
                                "extension",
                                "modifierExtension",
                                "id",
                                "meta",
                                "contained",
                                "unknownElement",
                            ]
                        )
                    )
                ] = draw(JSON)
            elif op == "duplicate" and isinstance(parent, list):
                parent.append(copy.deepcopy(parent[key]))
            elif op == "resource-type":
                resource["resourceType"] = draw(
                    st.sampled_from(
                        [
                            "Patient",
                            "Observation",
                            "Bundle",
                            "DiagnosticReport",
                            "Flag",
                            "Basic",
                            "",
                            "patient",
                            "Observation ",
                        ]
                    )
                )
        except (KeyError, IndexError, TypeError):
            pass
    return resource


def entry(resource: dict, method: str, url: str | None, full_url: str | None) -> dict:
    out: dict = {"resource": resource, "request": {"method": method}}
    if url is not None:
        out["request"]["url"] = url
    if full_url is not None:
        out["fullUrl"] = full_url
    return out


@st.composite
def bundles(draw) -> dict:
    """A transaction or batch of 1–5 entries, each valid or mutated, with plausible or broken requests."""
    entries = []
    for n in range(draw(st.integers(1, 5))):
        resource = draw(st.one_of(st.sampled_from(seed_resources()), mutated_resource()))
        kind = resource.get("resourceType") if isinstance(resource, dict) else None
        ident = (
            (resource.get("identifier") or [{}])[0]
            if isinstance(resource, dict) and isinstance(resource.get("identifier"), list)
            else {}
        )
        conditional = (
            f"{kind}?identifier={ident.get('system', '')}|{ident.get('value', '')}"
            if isinstance(ident, dict)
            else f"{kind}"
        )
        method, url = draw(
            st.sampled_from(
                [
                    ("PUT", conditional),
                    ("POST", str(kind)),
                    ("PUT", f"{kind}/x{n}"),
                    ("DELETE", f"{kind}/x"),
                    ("GET", str(kind)),
                    ("PATCH", conditional),
                    ("PUT", None),
                    ("POST", "Patient?identifier=a|b"),
                    ("PUT", "?identifier="),
                ]
            )
        )
        full_url = draw(
            st.sampled_from(
                [
                    None,
                    f"urn:uuid:00000000-0000-4000-8000-00000000000{n}",
                    "urn:uuid:00000000-0000-4000-8000-000000000000",
                    "not-a-url",
                ]
            )
        )
        entries.append(entry(resource, method, url, full_url))
    bundle = {
        "resourceType": "Bundle",
        "type": draw(st.sampled_from(["transaction", "batch", "collection", "searchset", ""])),
        "entry": entries,
    }
    if draw(st.booleans()):
        bundle = draw(mutated_value(bundle))
    return bundle


@st.composite
def mutated_value(draw, value) -> object:
    value = copy.deepcopy(value)
    paths = [p for p in _paths(value) if p]
    if paths:
        path = draw(st.sampled_from(paths))
        parent = _get(value, path[:-1])
        try:
            parent[path[-1]] = draw(JSON)
        except (TypeError, IndexError, KeyError):
            pass
    return value


def raw_bodies() -> st.SearchStrategy[bytes]:
    """Bytes that are not (quite) JSON: cut, mis-encoded, huge numbers, odd constants, duplicated keys."""
    valid = [json.dumps(r).encode() for r in seed_resources()[:3]]
    return st.one_of(
        st.binary(max_size=512),
        st.builds(lambda data, cut: data[:cut], st.sampled_from(valid), st.integers(0, 400)),
        st.sampled_from(
            [
                b"",
                b"null",
                b"[]",
                b"{}",
                b"0",
                b'"Patient"',
                b"NaN",
                b'{"resourceType":"Patient","birthDate":1e999}',
                b'{"resourceType":"Patient","resourceType":"Observation"}',
                b'\xef\xbb\xbf{"resourceType":"Patient"}',
                b'{"resourceType":"Patient","gender":"\xff\xfe"}',
                b'{"resourceType":"Patient"' + b" " * 100000 + b"}",
                b'{"resourceType":"Bundle","type":"transaction","entry":[' + b"{}," * 2000 + b"{}]}",
            ]
        ),
    )


# -- plausibility edges (contract §9.2) ------------------------------------------------------------------------

TODAY = dt.datetime.now(dt.UTC).date()
"""The service's "today" (service/ops/config.py ``today``: the UTC date)."""
LENGTH_EDGES = [
    -12,
    -0.1,
    0,
    0.0,
    500,
    500.0,
    500.1,
    1e9,
    1e308,
    float("nan"),
    float("inf"),
    float("-inf"),
    "NaN",
    "abc",
    "1e999",
    "-0",
    None,
]
"""Values of the longest dimension in mm: negative, zero, the limit, huge, NaN-like (JSON NaN/Infinity as Python
clients write them, and strings)."""
SUV_EDGES = [-1, 0, 100, 100.01, 1e6, float("nan")]
DATE_EDGES = [
    "1989-12-31",
    "1990-01-01",
    "1800-01-01",
    "2200-01-01",
    TODAY.isoformat(),
    (TODAY + dt.timedelta(days=1)).isoformat(),
    (TODAY + dt.timedelta(days=2)).isoformat(),
]


def _finite(value) -> float | None:
    """The value as the gate sees it: a finite number, or ``None``. (A numeric string such as ``"-0"`` is read as
    its number by the validation layer, fhir.resources, so the gate judges its value.)"""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number == number and abs(number) != float("inf") else None


def _date_ok(day: str, earliest: str | None = "1990-01-01") -> bool:
    parsed = dt.date.fromisoformat(day)
    return (earliest is None or parsed >= dt.date.fromisoformat(earliest)) and parsed <= TODAY + dt.timedelta(days=1)


@st.composite
def plausibility_edges(draw) -> tuple[str, str, dict, bool]:
    """(what, resource type, resource, plausible?) for one edge: the seed tumour Observation with an edge length,
    SUV or scan date, or a new Patient with an edge birth date (the oracle is contract §9.2 with the defaults)."""
    seeds = seed_resources()
    observation = copy.deepcopy(seeds[1])
    observation.pop("identifier", None)
    kind = draw(st.sampled_from(["length", "suv", "scan-date", "birth-date"]))
    if kind == "length":
        value = draw(st.sampled_from(LENGTH_EDGES))
        observation["component"][0]["valueQuantity"]["value"] = value
        number = _finite(value)
        return f"length {value!r}", "Observation", observation, number is not None and 0 <= number <= 500
    if kind == "suv":
        value = draw(st.sampled_from(SUV_EDGES))
        observation["component"].append(
            {
                "code": {
                    "coding": [
                        {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "126401"},
                        {"system": SCT, "code": "56851009"},
                    ]
                },
                "valueQuantity": {
                    "value": value,
                    "unit": "g/mL",
                    "system": "http://unitsofmeasure.org",
                    "code": "g/mL",
                },
            }
        )
        number = _finite(value)
        return f"SUV {value!r}", "Observation", observation, number is not None and 0 <= number <= 100
    day = draw(st.sampled_from(DATE_EDGES))
    if kind == "scan-date":
        observation["effectiveDateTime"] = day
        return f"scan {day}", "Observation", observation, _date_ok(day)
    patient = copy.deepcopy(seeds[0])
    patient["identifier"] = [{"system": SYSTEM, "value": f"FUZZ-BIRTH-{draw(st.integers(0, 10**9))}"}]
    patient["birthDate"] = day
    return f"birth {day}", "Patient", patient, _date_ok(day, earliest=None) and day <= TODAY.isoformat()


# -- transaction shapes (contract §9.1, FHIR R4 http.html#trules) -----------------------------------------------

ID_CHARS = "ABCXYZabcxyz0189-."
"""Characters a FHIR id may hold (R4 datatypes.html#id: [A-Za-z0-9\\-\\.]{1,64})."""
BAD_CONDITIONS = [
    "",
    "identifier=",
    "identifier",
    f"identifier={SYSTEM}|",
    "identifier=|",
    "identifier=a&identifier=",
    "=x",
    "&",
    "_id=x",
    "identifier=a&_sort=x",
    "Observation?identifier=a|b",
]
"""Conditions that are empty, malformed, on another type or on a parameter other than identifier: 400."""


def _urn(n: int, oid: bool = False) -> str:
    return f"urn:oid:1.2.826.0.1.3680043.10.511.77.{n}" if oid else f"urn:uuid:00000000-0000-4000-8000-{n:012d}"


@st.composite
def transaction_shapes(draw) -> tuple[str, dict, int]:
    """``(what, bundle, expected status)``: a Patient entry with a urn:uuid or urn:oid fullUrl (conditional PUT,
    POST with ifNoneExist in both forms, or PUT Patient/{id}) and 1–3 Observations referring to the urn, in any
    order; then possibly one defect: a duplicated fullUrl (bdl-7), a bad condition, a bad id, two entries writing
    one identity."""
    patient_id = draw(st.text(ID_CHARS, min_size=1, max_size=64))
    mrn = f"FUZZ-TX-{patient_id}"
    patient = {"resourceType": "Patient", "identifier": [{"system": SYSTEM, "value": mrn}], "gender": "male"}
    shape = draw(st.sampled_from(["put-conditional", "post-if-none-exist", "post-if-none-exist-typed", "put-id"]))
    request = {
        "put-conditional": {"method": "PUT", "url": f"Patient?identifier={SYSTEM}|{mrn}"},
        "post-if-none-exist": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={SYSTEM}|{mrn}"},
        "post-if-none-exist-typed": {
            "method": "POST",
            "url": "Patient",
            "ifNoneExist": f"Patient?identifier={SYSTEM}|{mrn}",
        },
        "put-id": {"method": "PUT", "url": f"Patient/{patient_id}"},
    }[shape]
    placeholder = _urn(0, oid=draw(st.booleans()))  # a urn:uuid or a urn:oid fullUrl
    entries = [
        {
            "fullUrl": placeholder,
            "resource": patient | ({"id": patient_id} if shape == "put-id" else {}),
            "request": request,
        }
    ]
    for n in range(1, draw(st.integers(1, 3)) + 1):
        observation = copy.deepcopy(seed_resources()[1])
        del observation["identifier"]
        observation["subject"] = {"reference": placeholder}
        observation["contained"][0]["patient"] = {"reference": placeholder}
        observation["effectiveDateTime"] = f"2024-0{n}-11"
        entries.append(
            {"fullUrl": _urn(n), "resource": observation, "request": {"method": "POST", "url": "Observation"}}
        )
    entries = draw(st.permutations(entries))
    defect = draw(st.sampled_from(["none", "duplicate-fullUrl", "bad-condition", "bad-id", "overlap"]))
    expected = 200
    patient_entry = next(e for e in entries if e["resource"]["resourceType"] == "Patient")
    if defect == "duplicate-fullUrl":
        first, second = draw(st.permutations(range(len(entries))))[:2]
        entries[second] = dict(entries[second], fullUrl=entries[first]["fullUrl"])
        expected = 400
    elif defect == "bad-condition":
        condition = draw(st.sampled_from(BAD_CONDITIONS))
        if draw(st.booleans()):
            patient_entry["request"] = {"method": "PUT", "url": f"Patient?{condition}"}
        else:
            patient_entry["request"] = {"method": "POST", "url": "Patient", "ifNoneExist": condition}
        patient_entry["resource"].pop("id", None)
        expected = 400
    elif defect == "bad-id":
        bad = draw(
            st.one_of(
                st.text(ID_CHARS, min_size=65, max_size=100),
                st.builds(
                    lambda head, char, tail: head + char + tail,
                    st.text(ID_CHARS, max_size=30),
                    st.sampled_from(list("_ *é~:@!+,;")),
                    st.text(ID_CHARS, max_size=30),
                ),
            )
        )
        if draw(st.booleans()):
            patient_entry["request"] = {"method": "PUT", "url": f"Patient/{bad}"}
            patient_entry["resource"]["id"] = bad
        else:
            patient_entry["request"] = {"method": "POST", "url": "Patient"}
            patient_entry["resource"]["id"] = bad
        expected = 400
    elif defect == "overlap":
        entries.append(dict(copy.deepcopy(patient_entry), fullUrl=_urn(99)))
        expected = 400
    return f"{shape}/{defect}", {"resourceType": "Bundle", "type": "transaction", "entry": entries}, expected
