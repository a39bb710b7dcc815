"""What the rule base returns: per-criterion timepoint responses, best responses, findings and alerts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any, overload

if TYPE_CHECKING:
    from rules.engine import RuleSet
    from rules.tracer_uptake import TracerUptake


def percent_change(value: Decimal | Fraction | int, reference: Decimal | Fraction | int) -> Fraction | None:
    """``(X − R) / R × 100`` exactly; ``None`` when the reference is 0 (spec §0).

    Computed on the integer ratios with one ``Fraction`` at the end: the evaluation calls this a few hundred
    times per patient, and chained ``Fraction`` operations were a fifth of its time.
    """
    if reference == 0:
        return None
    x_num, x_den = value.as_integer_ratio()
    r_num, r_den = reference.as_integer_ratio()
    return Fraction((x_num * r_den - r_num * x_den) * 100, x_den * r_num)


@overload
def round2(value: Fraction | Decimal) -> Decimal: ...
@overload
def round2(value: None) -> None: ...
@overload
def round2(value: Fraction | Decimal | None) -> Decimal | None: ...


def round2(value: Fraction | Decimal | None) -> Decimal | None:
    """Display rounding: 2 decimals (the categories were decided with exact fractions)."""
    if value is None:
        return None
    quantised = Decimal(value.numerator) / Decimal(value.denominator) if isinstance(value, Fraction) else value
    return quantised.quantize(Decimal("0.01"))


def fmt_mm(value: Decimal | None) -> str:
    if value is None:
        return "—"
    text = format(value.normalize(), "f") if value == value.to_integral() else format(value, "f")
    return f"{text} mm"


def fmt_pct(value: Fraction | None) -> str:
    if value is None:
        return "n/a"
    rounded = round2(value)
    return f"{'+' if rounded is not None and rounded > 0 else ''}{rounded} %"


@dataclass(frozen=True)
class TimepointResponse:
    """One criterion's verdict at one follow-up timepoint."""

    criterion: str
    scan_date: dt.date
    category: str
    """The category as the criterion names it (contract §5 codes), e.g. ``PR``, ``iUPD``, ``irPD``."""
    target_response: str | None = None
    nontarget_response: str | None = None
    new_lesions: str | None = None
    """``present`` | ``absent`` | a criterion-specific wording."""
    sum_mm: Decimal | None = None
    """The criterion's burden: SoD (mm), TMTB (mm) or SPD (mm², see ``sum_unit``)."""
    sum_unit: str = "mm"
    baseline_sum: Decimal | None = None
    nadir_sum: Decimal | None = None
    percent_from_baseline: Fraction | None = None
    percent_from_nadir: Fraction | None = None
    absolute_from_nadir: Decimal | None = None
    confirmed: bool | None = None
    """For categories that need confirmation (irPD, iCPD…): whether this one is confirmed."""
    progression_date: dt.date | None = None
    trace: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BestResponse:
    category: str
    scan_date: dt.date | None
    confirmed: bool
    because: str


@dataclass(frozen=True)
class CriterionAssessment:
    """One criterion over the whole timeline."""

    criterion: str
    version: str
    source: str
    flags: Mapping[str, Any]
    timepoints: tuple[TimepointResponse, ...]
    best_response: BestResponse | None = None
    """Best overall response without confirmation."""
    best_response_confirmed: BestResponse | None = None
    progression_date: dt.date | None = None
    warnings: tuple[str, ...] = ()
    provisional: bool = False
    """True when the criterion rests on rules the spec marks unverified ([U])."""

    @classmethod
    def of(
        cls, ruleset: RuleSet, flags: Mapping[str, Any], timepoints: tuple[TimepointResponse, ...] = (), **results: Any
    ) -> CriterionAssessment:
        """The one constructor the criteria use: name, version and source from the rule file, the flags applied,
        then the results (``best_response``, ``progression_date``, ``warnings``, ``provisional``…)."""
        return cls(ruleset.criterion, ruleset.version, ruleset.source, flags, timepoints, **results)

    def at(self, day: dt.date) -> TimepointResponse | None:
        return next((tp for tp in self.timepoints if tp.scan_date == day), None)


@dataclass(frozen=True)
class Finding:
    """A pattern or alert-worthy fact found by the rules (pseudoprogression, hyperprogression, irAE…)."""

    code: str
    """Alert code from ``{C}/CodeSystem/alert`` (contract §5)."""
    scan_date: dt.date
    severity: str
    """``critical`` | ``warning`` | ``info`` (CDS Hooks indicator)."""
    summary: str
    detail: str
    rule: str
    source: str
    alert: bool = True
    """False for findings that are recorded but never raise a Flag."""
    key: str = ""
    """What this finding is about (the definition met, the iUPD date, the irAE pattern…)."""
    codings: tuple[Mapping[str, str], ...] = ()
    """Extra codings (e.g. the SNOMED CT organ or pattern of an irAE)."""
    window_end: dt.date | None = None
    distinct_by_key: bool = False
    """True when findings with the same code and different keys are different findings (one irAE per organ
    pattern); otherwise a patient has one finding per code, whatever its key (contract §9.4: one alert per
    patient and finding, a later scan updates it)."""

    @property
    def identity(self) -> str:
        """``<code>`` or ``<code>/<key>``: what makes two findings of one patient the same alert."""
        return f"{self.code}/{self.key}" if self.distinct_by_key and self.key else self.code


@dataclass(frozen=True)
class DefinitionResult:
    """One hyperprogression / fast-progression definition's verdict (kinetics spec §3.1)."""

    code: str
    """Code in ``{C}/CodeSystem/hyperprogression`` (contract §5), e.g. ``champiat-2017``."""
    status: str
    """``met`` | ``not-met`` | ``not-evaluable``."""
    reason: str
    """Why, with the numbers (for a not-evaluable result: what is missing or undefined)."""
    source: str
    inputs: Mapping[str, Any] = field(default_factory=dict)
    borderline: bool = False


@dataclass(frozen=True)
class KineticsResult:
    """Tumour growth kinetics around the start of immunotherapy (kinetics spec §2–§3)."""

    e0_date: dt.date | None
    e1_date: dt.date | None
    e2_date: dt.date | None
    tgr_reference: float | None = None
    """%/month, E0 → E1 (Ferté: 100·(exp(3·ln(D1/D0)/Δt) − 1), months = days × 12/365.25)."""
    tgr_experimental: float | None = None
    tgr_ratio: float | None = None
    tgr_difference: float | None = None
    tgk_reference: float | None = None
    """mm/month."""
    tgk_experimental: float | None = None
    tgk_ratio: float | None = None
    definitions: tuple[DefinitionResult, ...] = ()
    flags: tuple[str, ...] = ()
    """Reason codes such as ``KINETICS_INTERVAL_TOO_SHORT``, ``REF_SUM_REDUCED``, ``UNDEFINED_RATIO``."""
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class BiomarkerResult:
    """A prognostic imaging (or lab) biomarker at baseline (kinetics spec §6). Never an alert."""

    code: str
    """e.g. ``blr``, ``slr``, ``tmtv``, ``smi``, ``sarcopenia-prado``, ``dnlr``, ``lipi``, ``ps3-ct``."""
    name: str
    value: Decimal | float | int | str | None
    unit: str | None
    interpretation: str | None
    """Relative to the named cut-off (``high``/``low``/``poor``…), or ``None`` when not evaluable."""
    method: str
    """Criterion name and version, and the cut-off's cohort."""
    source: str
    inputs: Mapping[str, Any] = field(default_factory=dict)
    missing: tuple[str, ...] = ()
    """What is missing when not evaluable."""
    scan_date: dt.date | None = None


@dataclass(frozen=True)
class PatientAssessment:
    """The full result of one evaluation of one patient."""

    rulebase_version: str
    baseline_date: dt.date | None
    treatment_start: dt.date | None
    followup_dates: tuple[dt.date, ...]
    criteria: tuple[CriterionAssessment, ...]
    findings: tuple[Finding, ...] = ()
    kinetics: KineticsResult | None = None
    biomarkers: tuple[BiomarkerResult, ...] = ()
    warnings: tuple[str, ...] = ()
    lesion_table: tuple[Mapping[str, Any], ...] = ()
    flags: Mapping[str, Any] = field(default_factory=dict)
    tracer_uptake: tuple[TracerUptake, ...] = ()
    """Uptake per lesion of each non-FDG PET timepoint with its heterogeneity (contract §9.6), informational."""

    def criterion(self, name: str) -> CriterionAssessment | None:
        return next((c for c in self.criteria if c.criterion == name), None)
