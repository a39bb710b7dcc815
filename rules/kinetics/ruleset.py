"""The ``tumour-kinetics`` rule file as the kinetics code reads it: thresholds and flags after overrides, decision
tables, and the three-valued comparisons (true / false / unknown) with the spec §0 float tolerance and BORDERLINE."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from fractions import Fraction
from typing import Any

from rules.engine import Decision, Engine, RuleSet, Threshold

CRITERION = "tumour-kinetics"

UNKNOWN = "unknown"
"""A component whose facts are missing (three-valued logic: true / false / unknown)."""
UNDEFINED = "undefined"
"""A ratio whose reference rate is ≤ 0 (spec §3.2.1: UNDEFINED_RATIO, never 'not HPD')."""
PENDING = "pending"
"""TTF not decided yet: still on treatment, less than 61 days since C1D1 (spec §3.2.3 PENDING_TTF)."""

Component = bool | str

MET, NOT_MET, NOT_EVALUABLE = "met", "not-met", "not-evaluable"


class KineticsRules:
    """The ``tumour-kinetics`` rule file with the configured overrides applied (thresholds, flags, tables)."""

    def __init__(self, engine: Engine, overrides: Mapping[str, Any] | None = None) -> None:
        self.engine = engine
        self.ruleset: RuleSet = engine.rulebase[CRITERION]
        self.overrides = dict(overrides or {})
        self._flags = self.ruleset.flag_values(self.overrides)

    def flag(self, name: str) -> Any:
        return self.ruleset.flag(name, self.overrides)

    def flags(self) -> dict[str, Any]:
        return dict(self._flags)

    def threshold(self, name: str) -> Threshold:
        """A threshold after the §8 flags that set its value or inclusiveness (``RuleSet.required_threshold``)."""
        return self.ruleset.required_threshold(name, self._flags)

    def month_days(self) -> float:
        return float(Fraction(str(self.flag("MONTH_DAYS"))))

    def definition(self, code: str) -> Mapping[str, Any]:
        found: Mapping[str, Any] = self.ruleset.parameters["definitions"][code]
        return found

    def decide(self, table: str, case: Mapping[str, Any]) -> Decision:
        return self.engine.decide(CRITERION, table, case)

    def holds(self, condition: str, **quantities: Any) -> bool:
        """A condition of the rule file (``RuleSet.holds``) under the configured flags."""
        return self.ruleset.holds(condition, self._flags, **quantities)

    # Comparisons -------------------------------------------------------------------------------------

    def float_test(self, name: str, value: float | None) -> tuple[Component, bool]:
        """A float threshold test with the §0 tolerance: (true/false/unknown, borderline)."""
        if value is None:
            return UNKNOWN, False
        threshold = self.threshold(name)
        tolerance = float(self.threshold("float_comparison_tolerance").value)
        limit = float(threshold.value)
        if threshold.direction == "at-least":
            holds = value >= limit - tolerance if threshold.inclusive else value > limit + tolerance
        else:
            holds = value <= limit + tolerance if threshold.inclusive else value < limit - tolerance
        return holds, self.borderline(value, limit)

    def borderline(self, value: float | Fraction, limit: float | Fraction) -> bool:
        """Spec §0: within ±BORDERLINE_REL_TOL (relative) of the threshold."""
        relative = self.threshold("borderline_relative_tolerance")
        return relative.holds(abs(Fraction(value) - Fraction(limit)), abs(Fraction(limit)))

    def sum_increase_test(
        self, name: str, s1: Decimal | None, s2: Decimal | None, complete: bool
    ) -> tuple[Component, bool]:
        """RECIST-type percent threshold on S(E2) against S(E1), exact (``S2·2 ≥ S1·3`` for +50 %).

        A partial S(E2) (a target not assessed) can only grow when completed, so it already proves an
        'at least' threshold it meets; otherwise the test is unknown.
        """
        if s1 is None or s2 is None or s1 == 0:
            return UNKNOWN, False
        threshold = self.threshold(name)
        holds = threshold.holds(s2, s1)
        if not complete:
            return (True, False) if holds and threshold.direction == "at-least" else (UNKNOWN, False)
        percent = (Fraction(s2) - Fraction(s1)) / Fraction(s1) * 100
        return holds, self.borderline(percent, (threshold.value - 1) * 100)

    def days_test(self, name: str, days: int | None) -> Component:
        return UNKNOWN if days is None else self.threshold(name).holds(days)


__all__ = [
    "CRITERION",
    "MET",
    "NOT_EVALUABLE",
    "NOT_MET",
    "PENDING",
    "UNDEFINED",
    "UNKNOWN",
    "Component",
    "KineticsRules",
]
