"""irAE imaging (kinetics spec §5): the new-lesion hook (Q1–Q10), irAE findings, onset, CTCAE hooks, codes."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from rules import codes
from rules.criteria import recist11
from rules.engine import get_engine
from rules.evaluate import make_timeline
from rules.facts import ClinicalObservation, LesionRole
from rules.findings import irae
from rules.findings.irae import SARCOID_WORDING, is_tumour
from tests.rules import irae_cases as ic

D = dt.date.fromisoformat


@pytest.fixture(scope="module")
def engine():
    return get_engine()


def timeline(facts, engine):
    return make_timeline(facts, engine)


def new_lesion(tl, lesion_id="N1 finding", day=ic.E1_SCANS["TP2"]):
    lesion = tl.lesions[lesion_id]
    point = next(tp for tp in tl.followups if tp.scan_date == D(day))
    return lesion, point.of(lesion_id)


# --- code tables (§5.5) ----------------------------------------------------------------------------------


def test_only_verified_codes_are_recognised():
    # §5.5: thyroiditis 82119001 [U] and hepatitis 128241005 (conflicting labels) are kept but never used.
    assert codes.pattern_for_code("82119001") is None
    assert codes.pattern_for_code("128241005") is None
    assert codes.pattern_for_code("40930008").key == "thyroiditis"  # Hypothyroidism [V:MII-CM]
    assert codes.pattern_for_code("408335007").key == "hepatitis"  # Autoimmune hepatitis [V:FSH-VS]
    assert {c.code for c in codes.unusable_codes()} >= {"82119001", "128241005", "D86", "K52.1", "K71"}
    # Adapters may pass a system-qualified code.
    assert codes.pattern_for_code("http://snomed.info/sct|31541009").key == "sarcoid-like"
    assert codes.pattern_for_code("99IMMRAD:hypophysitis").key == "hypophysitis"


def test_every_pattern_has_a_coding_and_an_organ_and_the_rule_file_covers_it(engine):
    ruleset = engine.rulebase[irae.CRITERION]
    domain = set(ruleset.tables["new_lesion_action"].inputs["pattern"])
    assert domain == set(codes.PATTERN_KEYS) | {codes.NO_PATTERN}
    assert set(ruleset.tables["alert_severity"].inputs["pattern"]) == set(codes.PATTERN_KEYS)
    for pattern in codes.IRAE_PATTERNS:
        assert pattern.primary_coding.usable
        assert pattern.organ in codes.SITES_BY_KEY
    # Hypophysitis has no SNOMED CT concept (§5.5 'Not found'): the Flag carries the local code.
    assert codes.IRAE_PATTERNS_BY_KEY["hypophysitis"].primary_coding.system == codes.IMMUNORAD_LOCAL
    assert codes.IRAE_PATTERNS_BY_KEY["pneumonitis"].primary_coding.as_fhir() == {
        "system": "http://snomed.info/sct",
        "code": "205237003",
        "display": "Pneumonitis",
    }
    assert set(ruleset.parameters["onset"]["patterns"]) <= set(codes.PATTERN_KEYS)


def test_sites_match_codes_and_free_text():
    assert codes.site_for("right hilar lymph node").key == "hilar-lymph-node"
    assert codes.site_for("62683002").key == "mediastinal-lymph-node"
    assert codes.site_for("Liver").visceral is True
    assert codes.site_for("lung").visceral is False
    assert irae.site_class("lymph node") == "unknown"
    assert irae.site_class("59441001") == "unknown"
    assert irae.site_class(None) == "unknown"
    assert irae.site_class("inguinal lymph node") == "other"
    assert irae.site_class("mediastinum") == "hilar-mediastinal"
    assert irae.site_class("liver") == "other"


# --- Q1: the sarcoid-like case ----------------------------------------------------------------------------


def test_sarcoid_like_nodes_in_a_responding_patient_are_not_progression(engine):
    # Size spec E1 targets: SoD BL 40+30+20 = 90; TP1 28+21+14 = 63 (−30.0 % → PR); TP2 26+20+12 = 58; TP3 61.
    # At TP2 (day 112 after C1D1 = 3.68 months, inside MSK-SLR's 1.8–9.1 months) three new hilar/mediastinal
    # nodes appear, coded Sarcoidosis 31541009 / Mediastinal lymphadenopathy 52324001.
    tl = timeline(ic.sarcoid_like(), engine)
    for node in ("N1 right hilar node", "N2 left hilar node", "N3 subcarinal node"):
        lesion, measurement = new_lesion(tl, node)
        assert lesion.role is LesionRole.NEW
        assert is_tumour(lesion, measurement) is False
    with_hook = recist11.assess(engine, tl, is_tumour=is_tumour)
    assert [tp.category for tp in with_hook.timepoints] == ["PR", "PR", "PR"]
    assert all(tp.new_lesions == "absent" for tp in with_hook.timepoints)
    # Without the hook, RECIST 1.1 would call PD at TP2 (an unequivocal new lesion).
    assert [tp.category for tp in recist11.assess(engine, tl).timepoints] == ["PR", "PD"]

    found = irae.findings(tl, [with_hook])
    sarcoid = [f for f in found if f.code == "sarcoid-like-reaction"]
    assert len(sarcoid) == 1 and not [f for f in found if f.code == "irae"]
    f = sarcoid[0]
    assert f.summary == SARCOID_WORDING
    assert (
        "possible sarcoid-like reaction — not counted as progression; consider tissue sampling or follow-up" in f.detail
    )
    assert f.severity == "warning" and f.alert and f.key == "sarcoid-like"
    assert f.scan_date == D("2024-05-06")
    assert "Not counted as new lesions by: RECIST-1.1 (PR)" in f.detail
    assert "within the typical window 1.8–9.1 months" in f.detail
    assert f.codings == ({"system": "http://snomed.info/sct", "code": "31541009", "display": "Sarcoidosis"},)


def test_sarcoid_finding_says_which_criteria_counted_the_nodes(engine):
    tl = timeline(ic.sarcoid_like(), engine)
    f = next(f for f in irae.findings(tl, [recist11.assess(engine, tl)]) if f.code == "sarcoid-like-reaction")
    assert "Counted as new lesions by: RECIST-1.1 (PD)" in f.detail


@pytest.mark.parametrize(
    "organ, counts",
    [
        ("right hilar lymph node", False),  # Q1 station
        ("lymph node", False),  # station not stated: treated as thoracic [D]
        ("59441001", False),  # the bare SNOMED CT lymph node site: station unknown
        ("inguinal lymph node", True),  # explicitly another station: Q10, an ordinary new lesion [D]
        ("liver", True),
    ],
)
def test_plain_lymphadenopathy_code_depends_on_the_station(engine, organ, counts):
    tl = timeline(ic.with_irae_lesion(ic.LYMPHADENOPATHY, organ, nodal=True), engine)
    assert is_tumour(*new_lesion(tl)) is counts


# --- Q2–Q10 and §5.1: one decision per pattern ------------------------------------------------------------

PATTERN_CASES = [
    # code, organ, counts as a new lesion, action, rule, severity
    ("205237003", "lung", False, "qualify", "Q2", "warning"),  # Pneumonitis
    ("719218000", "lung", False, "qualify", "Q2", "warning"),  # Cryptogenic organizing pneumonia
    ("129452008", "lung", False, "qualify", "Q2", "warning"),  # NSIP
    ("37471005", "lung", False, "qualify", "Q2", "warning"),  # HP-like
    ("236302005", "lung", False, "qualify", "Q2", "critical"),  # AIP: always urgent (§5.4)
    ("67782005", "lung", False, "qualify", "Q2", "critical"),  # ARDS
    ("40930008", "thyroid", False, "suppress", "Q3", "warning"),  # thyroid dysfunction
    ("hypophysitis", "pituitary", False, "suppress", "Q4", "warning"),  # local code: no SNOMED concept
    ("75694006", "pancreas", False, "qualify", "Q5", "warning"),  # Pancreatitis
    ("64226004", "colon", False, "suppress", "Q6", "warning"),  # Colitis
    ("26889001", "skeletal muscle", False, "suppress", "Q7", "warning"),  # Myositis
    ("3723001", "joint", False, "suppress", "Q7", "warning"),  # Arthritis
    ("408335007", "liver", False, "qualify", "§5.1-hepatitis", "warning"),
    ("50920009", "heart", False, "suppress", "§5.1-myocarditis", "critical"),
    ("41370002", "spinal cord", True, "count", "§5.1-myelitis", "warning"),  # needs neurology input
    ("386584007", "adrenal gland", True, "count", "Q10", "warning"),  # no suppression rule in the spec
]


@pytest.mark.parametrize("code, organ, counts, action, rule, severity", PATTERN_CASES)
def test_each_irae_pattern_decision_and_finding(engine, code, organ, counts, action, rule, severity):
    tl = timeline(ic.with_irae_lesion(code, organ), engine)
    lesion, measurement = new_lesion(tl)
    decision = irae.classify(lesion, measurement)
    assert (decision.counts_as_new_lesion, decision.action, decision.rule) == (counts, action, rule)
    assert is_tumour(lesion, measurement) is counts
    recist = recist11.assess(engine, tl, is_tumour=is_tumour)
    # E1 numbers: PR at TP2 unless the coded finding counts as a new lesion (then PD).
    assert recist.timepoints[1].category == ("PD" if counts else "PR")

    found = [f for f in irae.findings(tl, [recist]) if f.code == "irae"]
    assert len(found) == 1
    f = found[0]
    pattern = codes.pattern_for_code(code)
    assert (f.severity, f.alert, f.key, f.scan_date) == (severity, True, pattern.key, D("2024-05-06"))
    assert f.codings[0]["code"] == (code if pattern.snomed else pattern.primary_coding.code)
    assert "onset day 112 after C1D1" in f.detail
    assert "CTCAE grade: not determinable from imaging" in f.detail
    assert ("URGENT" in f.summary) is (severity == "critical")


def test_ordinary_new_lesion_still_counts_q10(engine):
    tl = timeline(ic.with_irae_lesion(None, "liver"), engine)
    decision = irae.classify(*new_lesion(tl))
    assert (decision.pattern, decision.counts_as_new_lesion, decision.rule) == ("none", True, "Q10")
    assert irae.findings(tl, []) == []


def test_unverified_code_is_an_ordinary_lesion(engine):
    # 82119001 'Thyroiditis' is [U] in §5.5: not recognised, so the finding counts (safe default, Q10).
    tl = timeline(ic.with_irae_lesion("82119001", "thyroid"), engine)
    assert is_tumour(*new_lesion(tl)) is True
    assert irae.findings(tl, []) == []


@pytest.mark.parametrize("code, rule", [("draining-node", "Q9"), ("marrow-spleen-uptake", "Q8")])
def test_flare_confounders_are_recorded_never_alerted(engine, code, rule):
    tl = timeline(ic.with_irae_lesion(code, "axillary lymph node" if rule == "Q9" else "bone marrow"), engine)
    decision = irae.classify(*new_lesion(tl))
    assert (decision.counts_as_new_lesion, decision.rule, decision.alert) == (False, rule, "none")
    (f,) = irae.findings(tl, [])
    assert (f.code, f.alert, f.severity) == (irae.FLARE_CONFOUNDER, False, "info")


def test_q2_flag_off_counts_pneumonitis_but_still_alerts(engine):
    tl = timeline(ic.with_irae_lesion("205237003", "lung"), engine)
    off = {"irae.q2_exclude_pneumonitis_from_new_lesions": False}
    decision = irae.classify(*new_lesion(tl), overrides=off)
    assert decision.counts_as_new_lesion and decision.alert == "irae"
    assert irae.tumour_hook(off)(*new_lesion(tl)) is True
    assert irae.tumour_hook(None) is is_tumour and is_tumour(*new_lesion(tl)) is False


# --- findings reported without a lesion (FHIR Observation / Condition) ------------------------------------


def test_reported_colitis_onset_inside_the_generic_window(engine):
    # C1D1 2024-01-15 → 2024-03-01 = day 46 = 6.57 weeks: inside the pooled 2.2–14.8 weeks (TANG21).
    tl = timeline(ic.with_finding_report("64226004", "2024-03-01", body_site="colon"), engine)
    (f,) = irae.findings(tl, [])
    assert f.code == "irae" and f.key == "colitis" and f.scan_date == D("2024-03-01")
    assert "onset day 46 after C1D1 (6.57 weeks" in f.detail
    assert "within the generic pooled irAE window 2.2–14.8 weeks" in f.detail
    assert f.codings == ({"system": "http://snomed.info/sct", "code": "64226004", "display": "Colitis"},)


@pytest.mark.parametrize("day, inside", [("2024-01-31", False), ("2024-02-01", True)])
def test_onset_window_bounds_are_inclusive(engine, day, inside):
    # Arthritis window 17–716 days (RMD-T2): C1D1 2024-01-15 + 16 days = 01-31 (outside), + 17 = 02-01 (inside).
    tl = timeline(ic.with_finding_report("3723001", day), engine)
    ruleset = engine.rulebase[irae.CRITERION]
    assert irae.onset("arthritis", D(day), tl, ruleset).in_window is inside


def test_hepatitis_window_is_flagged_unverified(engine):
    tl = timeline(ic.with_finding_report("408335007", "2024-03-15"), engine)
    (f,) = irae.findings(tl, [])
    # day 60 = 8.57 weeks, inside the [U] 6–14 weeks.
    assert "within the typical window 6–14 weeks" in f.detail and "[U] unverified" in f.detail


def test_several_scans_of_one_pattern_give_one_finding_dated_to_the_first(engine):
    facts = ic.with_finding_report("205237003", "2024-04-01")
    facts = type(facts)(
        **{
            **facts.__dict__,
            "findings": facts.findings + (ic.FindingReport("205237003", D("2024-05-06"), source="test"),),
        }
    )
    found = irae.findings(timeline(facts, engine), [])
    assert [(f.key, f.scan_date) for f in found] == [("pneumonitis", D("2024-04-01"))]


# --- CTCAE hooks (§5.4) -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "observations, grade",
    [
        ((), "not determinable from imaging"),
        ((("irae-symptomatic", "0"),), "1"),
        ((("irae-symptomatic", "1"),), "not determinable from imaging"),
        ((("ctcae-grade", "3"),), "as recorded clinically"),
    ],
)
def test_ctcae_grade_needs_clinical_fields(engine, observations, grade):
    obs = tuple(ClinicalObservation(code, D("2024-03-20"), Decimal(v), source="test") for code, v in observations)
    tl = timeline(ic.with_finding_report("205237003", "2024-03-15", observations=obs), engine)
    (f,) = irae.findings(tl, [])
    assert f"CTCAE grade: {grade}" in f.detail
    assert f.summary.endswith(f"CTCAE grade {grade}")


def test_clinical_fields_before_onset_are_ignored(engine):
    obs = (ClinicalObservation("irae-symptomatic", D("2024-02-01"), Decimal("0"), source="test"),)
    tl = timeline(ic.with_finding_report("205237003", "2024-03-15", observations=obs), engine)
    (f,) = irae.findings(tl, [])
    assert "CTCAE grade: not determinable from imaging" in f.detail


def test_aip_ards_is_critical_from_a_report_too(engine):
    tl = timeline(ic.with_finding_report("67782005", "2024-03-15"), engine)
    (f,) = irae.findings(tl, [])
    assert f.severity == "critical" and f.key == "aip-ards"
    assert "median CTCAE grade is 3" in f.detail


def test_onset_without_c1d1_is_not_determinable(engine):
    facts = ic.with_finding_report("64226004", "2024-03-01")
    facts = type(facts)(**{**facts.__dict__, "therapy_lines": ()})
    (f,) = irae.findings(timeline(facts, engine), [])
    assert "onset not determinable: immunotherapy start (C1D1) unknown" in f.detail
