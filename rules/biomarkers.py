"""Prognostic imaging (and lab) biomarkers at baseline (kinetics spec §6, worked example K13).

BLR and SLR (§6.1), TMTV (§6.2), SMI and the Prado / Martin / Dercle-53 sarcopenia flags (§6.3), SAT/VAT
indices (§6.4, no threshold), dNLR and LIPI (§6.5), PS3-CT and PS7 (§6.7). The iMPI score is **not**
implemented (§6.6: formula unverified); NLR, dNLR and TMTV are kept so that it can be computed later.

Every cut-off is cohort-derived and says so in ``method``; results are informational Observations only and
never raise an alert (§6.8). A biomarker that cannot be evaluated has ``interpretation=None`` and says what is
``missing``; a value that has no cut-off of its own (SMI, BMI, NLR, SAT/VAT) has ``interpretation=None`` and
nothing missing. Thresholds and tables: ``rules/rulesets/biomarkers.yaml`` (criterion ``imaging-biomarkers``).

"Baseline" is the latest value on or before the start of immunotherapy (C1D1), or on or before the baseline
scan when C1D1 is unknown [D: the spec names no window].
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any

from rules import codes
from rules.engine import Decision, Engine, RuleSet, Threshold, get_engine
from rules.facts import ClinicalObservation, LesionRole, LesionStatus, ReferenceRegion
from rules.results import BiomarkerResult, CriterionAssessment
from rules.timeline import Timeline, TrackedLesion, lesion_name

CRITERION = "imaging-biomarkers"
RECIST = "RECIST-1.1"
COHORT_NOTE = "cut-off is cohort-derived (COHORT_MEDIAN_THRESHOLD where a median); prognostic, informational only"


def _decimal(value: Fraction, places: str) -> Decimal:
    """Display value at the given resolution; categories were decided on the exact fraction."""
    return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(Decimal(places), rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Value:
    """One input value with where and when it was found."""

    value: Fraction
    day: dt.date
    origin: str

    def describe(self) -> str:
        return f"{_decimal(self.value, '0.01').normalize()} ({self.origin}, {self.day})"


class Panel:
    """The baseline inputs of one patient, looked up once."""

    def __init__(self, timeline: Timeline, engine: Engine, overrides: Mapping[str, Any] | None) -> None:
        self.timeline = timeline
        self.engine = engine
        self.ruleset: RuleSet = engine.rulebase[CRITERION]
        self.overrides = overrides
        self.codes: Mapping[str, str] = self.ruleset.parameters["observation_codes"]
        self.anchor: dt.date | None = timeline.treatment_start or (
            timeline.baseline.scan_date if timeline.baseline else None
        )

    def observation(self, name: str) -> ClinicalObservation | None:
        """The latest observation named ``name`` (a key of ``observation_codes``) on or before the anchor."""
        if self.anchor is None:
            return None
        code = self.codes[name]
        found = [
            o
            for o in self.timeline.facts.observations
            if o.code == code and o.value is not None and o.effective_date <= self.anchor
        ]
        return max(found, key=lambda o: o.effective_date) if found else None

    def value(self, name: str) -> Value | None:
        o = self.observation(name)
        if o is None or o.value is None:  # observation() returns only observations with a value
            return None
        return Value(Fraction(o.value), o.effective_date, f"observation {o.code}")

    def suv_max(self, region: ReferenceRegion, name: str) -> Value | None:
        """SUVmax of a PET reference region at the baseline PET (contract §3 reference groups), else an observation."""
        if self.anchor is not None:
            found = [
                (r.scan_date, r.suv_max)
                for r in self.timeline.facts.references
                if r.region is region and r.suv_max is not None and r.scan_date <= self.anchor
            ]
            if found:
                day, suv_max = max(found, key=lambda pair: pair[0])
                return Value(Fraction(suv_max), day, f"PET reference region {region.value}")
        return self.value(name)

    def height_m(self) -> tuple[Value | None, str]:
        """Height in metres from ``height`` in m or cm (no unit: ≤ 3 read as m, else cm [D])."""
        o = self.observation("height")
        if o is None or o.value is None:  # observation() returns only observations with a value
            return None, ""
        unit = (o.unit or "").strip().lower()
        raw = Fraction(o.value)
        if unit == "cm" or (not unit and raw > 3):
            return Value(raw / 100, o.effective_date, f"observation {o.code} {o.value} cm"), ""
        if unit in ("m", ""):
            return Value(raw, o.effective_date, f"observation {o.code} {o.value} m"), ""
        return None, f"height unit {o.unit!r} not understood (m or cm)"

    def sex(self) -> str:
        text = (self.timeline.facts.sex or "").strip().lower()
        return {"male": "male", "m": "male", "female": "female", "f": "female"}.get(text, "unknown")

    def threshold(self, name: str) -> Threshold:
        return self.ruleset.threshold(name)

    def flag(self, name: str) -> Any:
        return self.ruleset.flag(name, self.overrides)

    def result(
        self,
        code: str,
        name: str,
        value: Any,
        unit: str | None,
        interpretation: str | None,
        method: str,
        source: str,
        inputs: Mapping[str, Any] | None = None,
        missing: Sequence[str] = (),
        scan_date: dt.date | None = None,
    ) -> BiomarkerResult:
        return BiomarkerResult(
            code=code,
            name=name,
            value=value,
            unit=unit,
            interpretation=interpretation,
            method=f"{method} [{CRITERION} {self.ruleset.version}]",
            source=source,
            inputs=dict(inputs or {}),
            missing=tuple(missing),
            scan_date=scan_date,
        )


def baseline_biomarkers(
    timeline: Timeline,
    criteria: Sequence[CriterionAssessment],
    *,
    engine: Engine | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> tuple[BiomarkerResult, ...]:
    """The §6 panel at baseline. Never alerts."""
    panel = Panel(timeline, engine or get_engine(), overrides)
    results: list[BiomarkerResult] = []
    results += pet_ratios(panel)
    results += tmtv(panel)
    smi_results, smi = sarcopenia(panel)
    results += smi_results
    results += fat_indices(panel)
    results += muscle_change(panel)
    dnlr_results, dnlr_high = dnlr(panel)
    results += dnlr_results
    results.append(lipi(panel, dnlr_high))
    results.append(ps3_ct(panel, criteria, smi))
    results.append(ps7(panel, criteria, smi))
    return tuple(results)


# --- §6.1 BLR / SLR -------------------------------------------------------------------------------------


def pet_ratios(panel: Panel) -> list[BiomarkerResult]:
    liver = panel.suv_max(ReferenceRegion.LIVER, "suvmax_liver")
    marrow = panel.suv_max(ReferenceRegion.BONE_MARROW, "suvmax_bone_marrow")
    spleen = panel.suv_max(ReferenceRegion.SPLEEN, "suvmax_spleen")
    setting = panel.flag("blr_slr_thresholds")
    if setting != "seban-2019-melanoma":
        raise ValueError(
            f"{panel.ruleset.flag_prefix}.blr_slr_thresholds={setting!r}: only 'seban-2019-melanoma' is defined"
        )
    specs = (
        (
            "blr",
            "Bone-marrow-to-liver SUVmax ratio (BLR)",
            marrow,
            "bone marrow",
            "blr_seban_2019",
            "Seban 2019 melanoma anti-PD-1 median",
        ),
        (
            "slr",
            "Spleen-to-liver SUVmax ratio (SLR)",
            spleen,
            "spleen",
            "slr_seban_2019",
            "Seban 2019 melanoma anti-PD-1 median",
        ),
        (
            "slr-wong-2020",
            "Spleen-to-liver SUVmax ratio (SLR), Wong 2020 cut-off",
            spleen,
            "spleen",
            "slr_wong_2020",
            "Wong 2020 melanoma ipilimumab cohort",
        ),
    )
    out = []
    for code, name, numerator, organ, threshold_name, cohort in specs:
        threshold = panel.threshold(threshold_name)
        method = (
            f"SUVmax({organ}) / SUVmax(liver) on the baseline FDG PET (SUV type: max; EARL harmonisation as "
            f"recorded with the PET); high = {threshold.describe()} ({cohort}); {COHORT_NOTE}"
        )
        missing = [
            f"SUVmax {label} at baseline PET" for label, v in ((organ, numerator), ("liver", liver)) if v is None
        ]
        if liver is not None and liver.value <= 0:
            missing.append("a positive liver SUVmax")
        if missing or numerator is None or liver is None:
            out.append(panel.result(code, name, None, "1", None, method, threshold.source, missing=missing))
            continue
        ratio = numerator.value / liver.value
        high = threshold.holds(numerator.value, liver.value)  # SUV_organ > cut-off × SUV_liver, exact
        out.append(
            panel.result(
                code,
                name,
                _decimal(ratio, "0.01"),
                "1",
                "high" if high else "low",
                method,
                threshold.source,
                {f"suvmax_{organ.replace(' ', '_')}": numerator.describe(), "suvmax_liver": liver.describe()},
                scan_date=numerator.day,
            )
        )
    return out


# --- §6.2 TMTV ------------------------------------------------------------------------------------------


def tmtv(panel: Panel) -> list[BiomarkerResult]:
    volume = panel.value("tmtv")
    origin = "observation tmtv (segmentation method as recorded with it)"
    if volume is None and panel.anchor is not None:
        by_day: dict[dt.date, list[Decimal]] = {}
        for m in panel.timeline.facts.measurements:
            if m.metabolic_volume_ml is not None and m.scan_date <= panel.anchor and m.status is LesionStatus.PRESENT:
                by_day.setdefault(m.scan_date, []).append(m.metabolic_volume_ml)
        if by_day:
            day = max(by_day)
            total = sum((Fraction(volume_ml) for volume_ml in by_day[day]), Fraction(0))
            volume = Value(total, day, f"sum of {len(by_day[day])} lesion metabolic volumes (126032, DCM)")
            origin = volume.origin + " — only the reported lesions; the segmentation method changes TMTV [D]"
    out = []
    for code, threshold_name, cohort in (
        ("tmtv", "tmtv_seban_2019", "Seban 2019 melanoma median"),
        ("tmtv-seban-2020", "tmtv_seban_2020", "Seban 2020 advanced NSCLC on ICI"),
    ):
        threshold = panel.threshold(threshold_name)
        method = f"total metabolic tumour volume at baseline FDG PET ({origin}); high = {threshold.describe()} ({cohort}); {COHORT_NOTE}"
        if volume is None:
            out.append(
                panel.result(
                    code,
                    "Total metabolic tumour volume (TMTV)",
                    None,
                    "cm3",
                    None,
                    method,
                    threshold.source,
                    missing=("TMTV observation or lesion metabolic volumes at baseline PET",),
                )
            )
            continue
        out.append(
            panel.result(
                code,
                "Total metabolic tumour volume (TMTV)",
                _decimal(volume.value, "0.1"),
                "cm3",
                "high" if threshold.holds(volume.value) else "low",
                method,
                threshold.source,
                {"tmtv": volume.describe()},
                scan_date=volume.day,
            )
        )
    return out


# --- §6.3 SMI and sarcopenia ----------------------------------------------------------------------------


def sarcopenia(panel: Panel) -> tuple[list[BiomarkerResult], Fraction | None]:
    """SMI = L3 skeletal muscle area / height², and the flags of the configured criteria (§8 SMI_CRITERIA)."""
    area = panel.value("muscle_area")
    height, height_problem = panel.height_m()
    weight = panel.value("weight")
    missing = []
    if area is None:
        missing.append("skeletal muscle area at L3 (cm2)")
    if height is None:
        missing.append(height_problem or "height")
    smi_value = area.value / (height.value**2) if area is not None and height is not None else None
    bmi = weight.value / (height.value**2) if weight is not None and height is not None else None
    inputs = {
        "skeletal_muscle_area_l3": area.describe() if area else None,
        "height_m": height.describe() if height else None,
        "weight_kg": weight.describe() if weight else None,
        "bmi": str(_decimal(bmi, "0.1")) if bmi is not None else None,
        "sex": panel.sex(),
    }
    day = area.day if area else None
    smi_display = _decimal(smi_value, "0.1") if smi_value is not None else None
    out = [
        panel.result(
            "smi",
            "Skeletal muscle index at L3 (SMI)",
            smi_display,
            "cm2/m2",
            None,
            "SMI = skeletal muscle area at L3 / height² (L3 slice identified manually or automatically; "
            "muscle −29 to +150 HU [U, standard]); no cut-off of its own: see sarcopenia-*",
            "clinical/criteria-kinetics-irae.md §6.3 [V:SARC-CODE; D]",
            inputs,
            missing,
            day,
        )
    ]
    criteria = list(panel.flag("smi_criteria"))
    sex = panel.sex()
    if "prado" in criteria:
        decision = panel.engine.decide(CRITERION, "prado_cutoff", {"sex": sex})
        out.append(
            _smi_flag(
                panel,
                "sarcopenia-prado",
                "Sarcopenia, Prado 2008",
                smi_value,
                smi_display,
                decision,
                missing + (["sex"] if sex == "unknown" else []),
                inputs,
                day,
                "Prado 2008 sex-specific cut-offs (men < 52.4, women < 38.5 cm2/m2), obese cancer cohort",
            )
        )
    if "martin" in criteria:
        bmi_split = panel.threshold("martin_bmi_split")
        bmi_input = "unknown" if bmi is None else bmi_split.holds(bmi)
        decision = panel.engine.decide(CRITERION, "martin_cutoff", {"sex": sex, "bmi_25_or_more": bmi_input})
        extra = (["sex"] if sex == "unknown" else []) + (
            ["BMI (weight and height)"] if decision["threshold"] == "none" and sex == "male" else []
        )
        out.append(
            _smi_flag(
                panel,
                "sarcopenia-martin",
                "Sarcopenia, Martin 2013",
                smi_value,
                smi_display,
                decision,
                missing + extra,
                inputs,
                day,
                "Martin 2013 sex- and BMI-specific cut-offs (men BMI < 25: < 43, men BMI ≥ 25: < 53, "
                "women: < 41 cm2/m2) [primary paper U]",
            )
        )
    if "dercle53" in criteria:
        threshold = panel.threshold("dercle_smi_low")
        method = f"low SMI = SMI {threshold.describe()} (Dercle 2016 PS3-CT item 2, anti-PD-1/-L1 phase I cohort, sex-independent); {COHORT_NOTE}"
        if smi_value is None:
            out.append(
                panel.result(
                    "sarcopenia-dercle-53",
                    "Low SMI, Dercle 2016",
                    None,
                    "cm2/m2",
                    None,
                    method,
                    threshold.source,
                    inputs,
                    missing,
                    day,
                )
            )
        else:
            out.append(
                panel.result(
                    "sarcopenia-dercle-53",
                    "Low SMI, Dercle 2016",
                    smi_display,
                    "cm2/m2",
                    "low" if threshold.holds(smi_value) else "normal",
                    method,
                    threshold.source,
                    inputs,
                    scan_date=day,
                )
            )
    return out, smi_value


def _smi_flag(
    panel: Panel,
    code: str,
    name: str,
    smi_value: Fraction | None,
    display: Decimal | None,
    decision: Decision,
    missing: list[str],
    inputs: Mapping[str, Any],
    day: dt.date | None,
    cohort: str,
) -> BiomarkerResult:
    threshold_name = decision["threshold"]
    if smi_value is None or threshold_name == "none":
        return panel.result(
            code,
            name,
            display,
            "cm2/m2",
            None,
            f"{cohort}; {decision.because}; {COHORT_NOTE}",
            decision.trace(),
            inputs,
            missing or [decision.because],
            day,
        )
    threshold = panel.threshold(threshold_name)
    return panel.result(
        code,
        name,
        display,
        "cm2/m2",
        "low" if threshold.holds(smi_value) else "normal",
        f"low = SMI {threshold.describe()} — {cohort}; {COHORT_NOTE}",
        threshold.source,
        {**inputs, "cut_off": decision.trace()},
        scan_date=day,
    )


# --- §6.4 SAT / VAT --------------------------------------------------------------------------------------


def fat_indices(panel: Panel) -> list[BiomarkerResult]:
    height, _ = panel.height_m()
    out = []
    for code, name, key in (
        ("sat-index", "Subcutaneous adipose tissue index at L3", "sat_area"),
        ("vat-index", "Visceral adipose tissue index at L3", "vat_area"),
    ):
        area = panel.value(key)
        if area is None:
            continue  # recorded only when measured: there is no threshold to be missing (§6.4 [U])
        value = _decimal(area.value / height.value**2, "0.1") if height is not None else None
        out.append(
            panel.result(
                code,
                name,
                value,
                "cm2/m2",
                None,
                "area at L3 / height²; no threshold verified (§6.4 [U]): recorded, not interpreted",
                "clinical/criteria-kinetics-irae.md §6.4 [D]",
                {key: area.describe()},
                () if height is not None else ("height",),
                area.day,
            )
        )
    return out


def muscle_change(panel: Panel) -> list[BiomarkerResult]:
    """Skeletal muscle loss on treatment: the latest L3 muscle area after the anchor against the baseline one
    (e.g. both from body-composition SEGs, contract §9.6). No threshold for muscle loss on immunotherapy is verified in
    docs/clinical/criteria-kinetics-irae.md (§6.3 defines the baseline SMI flags only): recorded, not interpreted."""
    baseline = panel.value("muscle_area")
    if baseline is None or panel.anchor is None or baseline.value <= 0:
        return []
    code = panel.codes["muscle_area"]
    later = [
        o
        for o in panel.timeline.facts.observations
        if o.code == code and o.value is not None and o.effective_date > panel.anchor
    ]
    if not later:
        return []
    latest = max(later, key=lambda o: o.effective_date)
    if latest.value is None:  # filtered out above
        return []
    change = (Fraction(latest.value) - baseline.value) / baseline.value * 100
    return [
        panel.result(
            "muscle-area-change-l3",
            "Change in skeletal muscle area at L3 on treatment",
            _decimal(change, "0.1"),
            "%",
            None,
            "(latest L3 muscle area on treatment − baseline) / baseline × 100; no verified threshold: informational",
            "clinical/criteria-kinetics-irae.md §6.3 (SMI inputs) [D]; informational",
            {"baseline": baseline.describe(), "on_treatment": f"{latest.value} cm2 on {latest.effective_date}"},
            (),
            latest.effective_date,
        )
    ]


# --- §6.5 dNLR / LIPI -----------------------------------------------------------------------------------


def dnlr(panel: Panel) -> tuple[list[BiomarkerResult], str]:
    leukocytes, neutrophils, lymphocytes = (
        panel.value("leukocytes"),
        panel.value("neutrophils"),
        panel.value("lymphocytes"),
    )
    threshold = panel.threshold("dnlr_high")
    method = f"dNLR = neutrophils / (leukocytes − neutrophils); high = {threshold.describe()} (Seban 2020 NSCLC; LIPI); {COHORT_NOTE}"
    missing = [n for n, v in (("leukocytes", leukocytes), ("neutrophils", neutrophils)) if v is None]
    if leukocytes is not None and neutrophils is not None and leukocytes.value <= neutrophils.value:
        missing.append("leukocytes greater than neutrophils")
    out = []
    if missing or leukocytes is None or neutrophils is None:
        out.append(
            panel.result(
                "dnlr",
                "Derived neutrophil-to-lymphocyte ratio (dNLR)",
                None,
                "1",
                None,
                method,
                threshold.source,
                missing=missing,
            )
        )
        state = "unknown"
    else:
        other = leukocytes.value - neutrophils.value
        high = threshold.holds(neutrophils.value, other)  # neutrophils > 3 × (leukocytes − neutrophils), exact
        state = "high" if high else "normal"
        out.append(
            panel.result(
                "dnlr",
                "Derived neutrophil-to-lymphocyte ratio (dNLR)",
                _decimal(neutrophils.value / other, "0.01"),
                "1",
                state,
                method,
                threshold.source,
                {"leukocytes": leukocytes.describe(), "neutrophils": neutrophils.describe()},
                scan_date=neutrophils.day,
            )
        )
    if neutrophils is not None and lymphocytes is not None and lymphocytes.value > 0:
        out.append(
            panel.result(
                "nlr",
                "Neutrophil-to-lymphocyte ratio (NLR)",
                _decimal(neutrophils.value / lymphocytes.value, "0.01"),
                "1",
                None,
                "NLR = neutrophils / lymphocytes; kept for a later iMPI (§6.6: score not implemented)",
                "clinical/criteria-kinetics-irae.md §6.6 [D]",
                {"neutrophils": neutrophils.describe(), "lymphocytes": lymphocytes.describe()},
                scan_date=lymphocytes.day,
            )
        )
    return out, state


def _ldh_state(panel: Panel, threshold_name: str) -> tuple[str, dict[str, Any], list[str]]:
    o = panel.observation("ldh")
    if o is None or o.value is None:  # observation() returns only observations with a value
        return "unknown", {}, ["LDH"]
    if o.reference_high is None or o.reference_high <= 0:
        return "unknown", {"ldh": f"{o.value} {o.unit or ''}".strip()}, ["LDH upper limit of normal"]
    high = panel.threshold(threshold_name).holds(Fraction(o.value), Fraction(o.reference_high))
    return (
        ("high" if high else "normal"),
        {"ldh": f"{o.value} {o.unit or ''} ({o.effective_date})".strip(), "ldh_uln": str(o.reference_high)},
        [],
    )


def lipi(panel: Panel, dnlr_state: str) -> BiomarkerResult:
    ldh_state, ldh_inputs, ldh_missing = _ldh_state(panel, "ldh_high_fraction_of_uln")
    decision = panel.engine.decide(CRITERION, "lipi", {"dnlr": dnlr_state, "ldh": ldh_state})
    method = (
        "LIPI (Mezquita 2018): dNLR > 3 and LDH > ULN [U]; good 0 / intermediate 1 / poor 2 factors; "
        "prognostic across ICI, targeted therapy and chemotherapy (not ICI-specific); not imaging"
    )
    inputs = {"dnlr": dnlr_state, **ldh_inputs, "rule": decision.trace()}
    if decision["category"] == "not-evaluable":
        missing = (["dNLR"] if dnlr_state == "unknown" else []) + ldh_missing
        return panel.result(
            "lipi",
            "Lung Immune Prognostic Index (LIPI)",
            None,
            None,
            None,
            method,
            panel.threshold("ldh_high_fraction_of_uln").source,
            inputs,
            missing,
        )
    return panel.result(
        "lipi",
        "Lung Immune Prognostic Index (LIPI)",
        int(decision["factors"]),
        None,
        decision["category"],
        method,
        panel.ruleset.tables["lipi"].source,
        inputs,
    )


# --- §6.7 PS3-CT / PS7 -------------------------------------------------------------------------------------


def baseline_target_sum(panel: Panel, criteria: Sequence[CriterionAssessment]) -> Fraction | None:
    """TB1D-RECIST: the RECIST 1.1 baseline sum (from the assessment, else from the baseline targets)."""
    recist = next((c for c in criteria if c.criterion == RECIST), None)
    if recist is not None:
        for tp in recist.timepoints:
            if tp.baseline_sum is not None:
                return Fraction(tp.baseline_sum)
    timeline = panel.timeline
    if timeline.baseline is None:
        return None
    targets = timeline.lesions_with_role(LesionRole.TARGET)
    if not targets:
        return None
    total = Fraction(0)
    for target in targets:
        m = timeline.baseline.of(target.lesion_id)
        value = m.recist_diameter_mm if m is not None else None
        if value is None:
            return None
        total += Fraction(value)
    return total


def _baseline_lesions(panel: Panel) -> list[TrackedLesion]:
    timeline = panel.timeline
    if timeline.baseline is None:
        return []
    return [lesion for lesion in timeline.lesions.values() if lesion.role in (LesionRole.TARGET, LesionRole.NON_TARGET)]


def npvm(panel: Panel) -> tuple[bool | None, str]:
    """Non-pulmonary visceral metastasis among the baseline lesions' organs (Dercle 2016 item 3; visceral set [D])."""
    lesions = _baseline_lesions(panel)
    if not lesions:
        return None, "no baseline lesions"
    unknown = []
    for lesion in lesions:
        site = None if lesion.nodal else codes.site_for(lesion.organ)
        if lesion.nodal:
            continue
        if site is None or site.visceral is None:
            unknown.append(lesion_name(lesion))
        elif site.visceral:
            return True, f"{lesion_name(lesion)} in {site.coding.display.lower()}"
    if unknown:
        return None, "organ not recognised for " + ", ".join(unknown)
    return False, "baseline lesions only in lung, pleura, nodes, bone, skin or soft tissue"


def ps3_ct(panel: Panel, criteria: Sequence[CriterionAssessment], smi: Fraction | None) -> BiomarkerResult:
    burden = baseline_target_sum(panel, criteria)
    burden_thr, smi_thr = panel.threshold("ps3_tumour_burden_mm"), panel.threshold("dercle_smi_low")
    visceral, visceral_text = npvm(panel)
    items = {
        "high_tumour_burden": None if burden is None else burden_thr.holds(burden),
        "low_smi": None if smi is None else smi_thr.holds(smi),
        "non_pulmonary_visceral_metastasis": visceral,
    }
    inputs = {
        "tb1d_recist_mm": None if burden is None else str(_decimal(burden, "0.1")),
        "smi": None if smi is None else str(_decimal(smi, "0.1")),
        "npvm": visceral_text,
        **{k: v for k, v in items.items()},
    }
    method = (
        f"Dercle 2016 PS3-CT, 1 point each: TB1D-RECIST (sum of baseline target diameters) "
        f"{burden_thr.describe()}, SMI {smi_thr.describe()}, non-pulmonary visceral metastasis [visceral set D]; "
        f"anti-PD-1/-L1 phase I cohort (n = 251); {COHORT_NOTE}"
    )
    missing = [
        name
        for name, value in (("RECIST baseline target sum", burden), ("SMI", smi), (f"NPVM ({visceral_text})", visceral))
        if value is None
    ]
    if missing:
        return panel.result(
            "ps3-ct",
            "Dercle 2016 CT prognostic score (PS3-CT)",
            None,
            "points",
            None,
            method,
            burden_thr.source,
            inputs,
            missing,
        )
    points = sum(1 for v in items.values() if v)
    return panel.result(
        "ps3-ct",
        "Dercle 2016 CT prognostic score (PS3-CT)",
        points,
        "points",
        f"{points}/3",
        method,
        "Dercle L et al. Eur J Cancer 2016 [V:DERCLE16]",
        inputs,
    )


def distant_sites(panel: Panel) -> tuple[int | None, str]:
    """Distinct organs of the baseline lesions, all nodes one site [D: 'distant' cannot be told from the facts]."""
    lesions = _baseline_lesions(panel)
    if not lesions:
        return None, "no baseline lesions"
    sites: set[str] = set()
    for lesion in lesions:
        if lesion.nodal:
            sites.add("lymph-node")
            continue
        site = codes.site_for(lesion.organ)
        if site is None and not lesion.organ:
            return None, f"no organ for {lesion_name(lesion)}"
        sites.add(site.key if site else (lesion.organ or "").strip().lower())
    return len(sites), ", ".join(sorted(sites))


def ps7(panel: Panel, criteria: Sequence[CriterionAssessment], smi: Fraction | None) -> BiomarkerResult:
    method = (
        "Dercle 2016 PS7 = PS3-CT + lower performance status (ECOG ≥ 1 [U]) + decreased albumin (< 35 g/L [U]) "
        "+ increased LDH (> ULN [U]) + more than two distant metastatic sites (distinct baseline lesion organs [D]); "
        f"items 4–6 cut-offs unverified (RMH analogy) [U]; {COHORT_NOTE}"
    )
    name = "Dercle 2016 composite prognostic score (PS7) [U]"
    source = "Dercle L et al. Eur J Cancer 2016 [V:DERCLE16 item names; U cut-offs]"
    if not panel.flag("ps7_enabled"):
        return panel.result(
            "ps7",
            name,
            None,
            "points",
            None,
            method,
            source,
            missing=("PS7 disabled (biomarkers.ps7_enabled): items 4–6 cut-offs are unverified [U]",),
        )
    ps3 = ps3_ct(panel, criteria, smi)
    ecog, albumin = panel.observation("ecog"), panel.observation("albumin")
    ldh_state, ldh_inputs, ldh_missing = _ldh_state(panel, "ps7_ldh_fraction_of_uln")
    sites, sites_text = distant_sites(panel)
    albumin_g_l = None
    if albumin is not None and albumin.value is not None:  # observation() returns only observations with a value
        factor = 10 if (albumin.unit or "").strip().lower() == "g/dl" else 1
        albumin_g_l = Fraction(albumin.value) * factor
    items = {
        "ps3_ct": ps3.value,
        "lower_performance_status": None
        if ecog is None or ecog.value is None
        else panel.threshold("ps7_ecog_min").holds(Fraction(ecog.value)),
        "decreased_albumin": None if albumin_g_l is None else panel.threshold("ps7_albumin_low").holds(albumin_g_l),
        "increased_ldh": None if ldh_state == "unknown" else ldh_state == "high",
        "more_than_two_sites": None if sites is None else panel.threshold("ps7_distant_sites").holds(sites),
    }
    inputs = {
        **items,
        "ecog": None if ecog is None else str(ecog.value),
        "albumin_g_l": None if albumin_g_l is None else str(_decimal(albumin_g_l, "0.1")),
        **ldh_inputs,
        "sites": sites_text,
    }
    missing = list(ps3.missing)
    missing += [
        label
        for label, key in (
            ("ECOG performance status", "lower_performance_status"),
            ("albumin", "decreased_albumin"),
            ("metastatic sites", "more_than_two_sites"),
        )
        if items[key] is None
    ]
    missing += ldh_missing
    if missing:
        return panel.result("ps7", name, None, "points", None, method, source, inputs, missing)
    points = int(ps3.value) + sum(  # type: ignore[arg-type]  # ps3_ct's value is its int score when nothing is missing
        1 for k, v in items.items() if k != "ps3_ct" and v
    )
    return panel.result("ps7", name, points, "points", f"{points}/7", method, source, inputs)
