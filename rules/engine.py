"""The rule engine: the declarative rule files (``rules/rulesets/*.yaml``) loaded, checked and decided.

Every clinical decision the criteria take is a *decision table* in a rule file: named inputs with finite
domains, and rows ``when <inputs match> then <outputs>``. At load time each table is checked to be a total
function by enumerating every combination of input values: each matches **exactly one** row, so clinically
exclusive outcomes (PD versus PR) are exclusive in the rules themselves, never by firing order. That check
leaves an index (every case → its row), and a decision is a lookup in it (``DecisionTable.decide``).

The rule-file format is the engine's: ``load_ruleset`` validates every file against the schema documented in
``rules/rulesets/SCHEMA.md`` (unknown keys are errors), and ``RuleSet`` is the one resolver of flags (with
``inherit``) and of flag-backed thresholds (``configured_threshold``).

durable-rules (docs/ARCHITECTURE.md, "The rule engine: what durable-rules does"): each row is also one
durable-rules rule, and an ``Engine(..., durable=True)`` (``IMMUNORAD_RULE_ENGINE=durable``) runs every decision
through it as well — the inputs asserted as one fact in a fresh session, the fired rows read, the session
deleted — and refuses any disagreement with the index (``RuleGap``, ``RuleConflict``). It is an independent
second implementation of the tables' semantics, checked on every case of every table by the engine tests. The
production default decides by the index alone: a decision is one fact with no chaining and no state, so
durable-rules decides nothing the index does not, at about ten times the cost of a row scan (measured with
``python -m bench.durable_rules_usage``). durable-rules 2.0.28 creates background dispatch threads with its
``Host`` and is not thread-safe, so an ``Engine`` belongs to one process: ``get_engine()`` builds it lazily after
fork, and durable-rules calls are serialised.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import yaml

SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""PyYAML's safe loader, in C (libyaml) where PyYAML was built with it: the same documents, parsed about ten
times faster than in pure Python (the 19 rule files took seconds on a busy machine: a page's first load waited)."""

RULESET_DIR = Path(__file__).with_name("rulesets")
ANY = "*"


class RuleFileError(ValueError):
    """A rule file is malformed, incomplete (a case no row covers) or ambiguous (a case two rows cover)."""


class RuleGap(LookupError):
    """No row matched at run time (durable-rules raised ``MessageNotHandledException``)."""


class RuleConflict(LookupError):
    """More than one row fired at run time; impossible for a table that passed the load-time check."""


@dataclass(frozen=True)
class Threshold:
    """A named clinical threshold: ``lhs <op> value × reference`` (or ``lhs <op> value``)."""

    name: str
    value: Fraction
    direction: str
    """``at-least`` (lhs ≥ / > value) or ``at-most`` (lhs ≤ / < value)."""
    inclusive: bool
    unit: str = ""
    source: str = ""
    flag: str = ""
    """A flag path (``<flag>`` or ``<flag>.<key>``; a list item is ``<flag>.<index>``) whose value this threshold
    takes: the number is stored once, in the flag's default, and a configured override replaces it."""
    inclusive_flag: str = ""
    """A flag path whose value decides inclusiveness: inclusive when it equals ``inclusive_when``."""
    inclusive_when: bool = True

    def holds(self, lhs: Fraction | int | Any, reference: Fraction | int | Any | None = None) -> bool:
        """Exact comparison; with ``reference`` the threshold is a multiple of it (cross-multiplied)."""
        # Cross-multiplied: lhs · den ⋛ num · reference. Decimal and int arithmetic is exact here (values
        # carry at most a few decimals), so the hot path avoids building Fractions.
        num, den = self.value.numerator, self.value.denominator
        left: int | Decimal | Fraction
        right: int | Decimal | Fraction
        if isinstance(lhs, (Decimal, int)) and (reference is None or isinstance(reference, (Decimal, int))):
            left = lhs * den
            right = num if reference is None else reference * num
        else:
            left = Fraction(lhs) * den
            right = num if reference is None else Fraction(reference) * num
        if self.direction == "at-least":
            return left >= right if self.inclusive else left > right
        return left <= right if self.inclusive else left < right

    def describe(self) -> str:
        op = {("at-least", True): "≥", ("at-least", False): ">", ("at-most", True): "≤", ("at-most", False): "<"}
        return f"{op[(self.direction, self.inclusive)]} {format_fraction(self.value)}{(' ' + self.unit) if self.unit else ''}"


def format_fraction(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{float(value):g}"


@dataclass(frozen=True)
class Flag:
    """A policy the clinical spec marks [D]: a configuration flag with the spec's default."""

    name: str
    default: Any
    source: str = ""


@dataclass(frozen=True)
class Row:
    id: str
    when: Mapping[str, tuple[Any, ...]]
    then: Mapping[str, Any]
    because: str


@dataclass(frozen=True)
class DecisionTable:
    ruleset: str
    name: str
    inputs: Mapping[str, tuple[Any, ...]]
    rows: tuple[Row, ...]
    source: str = ""
    index: Mapping[tuple[Any, ...], Row] = field(default_factory=dict, compare=False, repr=False)
    """Every case (input values in ``inputs`` order) → the one row that matches it; built by the load-time check."""

    @property
    def qualified_name(self) -> str:
        return f"{self.ruleset}:{self.name}"

    def matching_rows(self, case: Mapping[str, Any]) -> list[Row]:
        """Every row whose ``when`` matches ``case`` (the load-time check's row scan)."""
        return [row for row in self.rows if all(case[k] in allowed for k, allowed in row.when.items())]

    def check_total_and_exclusive(self) -> dict[tuple[Any, ...], Row]:
        """Every combination of input values matches exactly one row; returns the index case → row."""
        names = list(self.inputs)
        index: dict[tuple[Any, ...], Row] = {}
        for values in itertools.product(*(self.inputs[n] for n in names)):
            case = dict(zip(names, values, strict=True))
            hits = self.matching_rows(case)
            if len(hits) != 1:
                what = "no row" if not hits else "rows " + ", ".join(r.id for r in hits)
                raise RuleFileError(f"{self.qualified_name}: case {case} is matched by {what}")
            index[values] = hits[0]
        return index

    def decide(self, case: Mapping[str, Any]) -> Row:
        """The row for ``case``: its inputs checked against their domains, then looked up in the index."""
        missing = [k for k in self.inputs if k not in case]
        if missing:
            raise ValueError(f"{self.qualified_name}: inputs missing: {missing}")
        for key, value in case.items():
            if key in self.inputs and value not in self.inputs[key]:
                raise ValueError(f"{self.qualified_name}: {key}={value!r} is outside its domain {self.inputs[key]}")
        return self.index[tuple(case[k] for k in self.inputs)]


@dataclass(frozen=True)
class Decision:
    """What one table decided, with the row and its reason for the rule trace."""

    table: str
    row: str
    outputs: Mapping[str, Any]
    because: str

    def __getitem__(self, key: str) -> Any:
        return self.outputs[key]

    def trace(self) -> str:
        return f"{self.table} row {self.row}: {self.because}"


@dataclass(frozen=True)
class Check:
    """One check of a condition: a threshold on quantities, or a boolean quantity or flag.

    Threshold check: ``(quantity − minus) ⋛ threshold × reference`` (``minus`` and ``reference`` optional), with the
    threshold after the configured flags (``unless_off``: skipped when a flag switches the threshold off). Boolean check (``any_true``): at least one of the named quantities or flags
    is true. A quantity that is ``None`` (not measured) fails the check."""

    threshold: str = ""
    quantity: str = ""
    minus: str = ""
    reference: str = ""
    any_true: tuple[str, ...] = ()
    unless_off: bool = False
    """The threshold's flag may switch it off (null or false): the check is then skipped, not refused."""

    def names(self) -> tuple[str, ...]:
        """The quantities and flags this check reads."""
        return tuple(n for n in (self.quantity, self.minus, self.reference) if n) + self.any_true


@dataclass(frozen=True)
class Condition:
    """A named conjunction: it holds when every check holds (``conditions`` in a rule file)."""

    name: str
    quantities: tuple[str, ...]
    """The measured quantities the criterion code supplies, by name; nothing else decides."""
    checks: tuple[Check, ...]
    source: str = ""


@dataclass(frozen=True)
class RuleSet:
    """One rule file: a criterion (or a family of findings) with its source, thresholds, flags and tables."""

    criterion: str
    version: str
    title: str
    source: str
    evidence: str
    thresholds: Mapping[str, Threshold]
    flags: Mapping[str, Flag]
    tables: Mapping[str, DecisionTable]
    parameters: Mapping[str, Any] = field(default_factory=dict)
    path: str = ""
    inherit_from: str = ""
    """The flag prefix of the rule file whose overrides the ``inherited`` flags fall back to (``inherit.from``)."""
    inherited: tuple[str, ...] = ()
    conditions: Mapping[str, Condition] = field(default_factory=dict)

    def threshold(self, name: str) -> Threshold:
        """The threshold at the rule file's defaults (a flag-backed threshold carries its flag's default)."""
        try:
            return self.thresholds[name]
        except KeyError:
            raise RuleFileError(f"{self.criterion}: no threshold named {name!r}") from None

    def flag(self, name: str, overrides: Mapping[str, Any] | None = None) -> Any:
        """The flag's value: an override ``<prefix>.<flag>``, else (for an inherited flag) the parent's override
        ``<parent prefix>.<flag>``, else the spec's default."""
        if name not in self.flags:
            raise RuleFileError(f"{self.criterion}: no flag named {name!r}")
        if overrides:
            own = f"{self.flag_prefix}.{name}"
            if own in overrides:
                return overrides[own]
            parent = f"{self.inherit_from}.{name}"
            if name in self.inherited and parent in overrides:
                return overrides[parent]
        return self.flags[name].default

    def flag_values(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Every flag's value (``flag`` for each)."""
        return {name: self.flag(name, overrides) for name in self.flags}

    def configured_threshold(self, name: str, flags: Mapping[str, Any]) -> Threshold | None:
        """A threshold after the flag values ``flags`` (``flag_values``): its value from its ``flag`` and its
        inclusiveness from its ``inclusive`` flag. ``None`` when the value flag switches the rule off (null/false)."""
        threshold = self.threshold(name)
        if threshold.flag:
            value = _flag_path_value(self, threshold.flag, flags)
            if value is None or value is False:
                return None
            if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal, Fraction)):
                raise ValueError(f"{self.flag_prefix}.{threshold.flag}: {value!r} is not a number")
            threshold = dataclasses.replace(threshold, value=Fraction(str(value)))
        if threshold.inclusive_flag:
            switch = _flag_path_value(self, threshold.inclusive_flag, flags)
            if not isinstance(switch, bool):
                raise ValueError(
                    f"{self.flag_prefix}.{threshold.inclusive_flag}: expected true or false, got {switch!r}"
                )
            threshold = dataclasses.replace(threshold, inclusive=switch is threshold.inclusive_when)
        return threshold

    def required_threshold(self, name: str, flags: Mapping[str, Any]) -> Threshold:
        """``configured_threshold`` for a threshold the criterion cannot do without: switching it off is refused."""
        threshold = self.configured_threshold(name, flags)
        if threshold is None:
            raise ValueError(f"{self.criterion}: threshold {name} is required and cannot be switched off by a flag")
        return threshold

    def holds(self, condition: str, flags: Mapping[str, Any], /, **quantities: Any) -> bool:
        """Whether the named condition holds for the measured ``quantities`` (exactly the ones it declares) under
        the flag values ``flags`` (``flag_values``): every check in order, the first failing one ends it."""
        try:
            spec = self.conditions[condition]
        except KeyError:
            raise RuleFileError(f"{self.criterion}: no condition named {condition!r}") from None
        if set(quantities) != set(spec.quantities):
            raise ValueError(
                f"{self.criterion}: condition {condition} takes the quantities {sorted(spec.quantities)}, "
                f"got {sorted(quantities)}"
            )
        for check in spec.checks:
            if check.any_true:
                values = [quantities[n] if n in quantities else flags[n] for n in check.any_true]
                wrong = [v for v in values if v is not None and not isinstance(v, bool)]
                if wrong:
                    raise ValueError(f"{self.criterion}: condition {condition}: {wrong!r} is not true or false")
                if not any(v is True for v in values):
                    return False
                continue
            lhs = quantities[check.quantity]
            minus = quantities[check.minus] if check.minus else 0
            reference = quantities[check.reference] if check.reference else None
            if lhs is None or minus is None or (check.reference and reference is None):
                return False
            if check.minus:
                exact = isinstance(lhs, (Decimal, int)) and isinstance(minus, (Decimal, int))
                lhs = lhs - minus if exact else Fraction(lhs) - Fraction(minus)
            threshold = (
                self.configured_threshold(check.threshold, flags)
                if check.unless_off
                else self.required_threshold(check.threshold, flags)
            )
            if threshold is not None and not threshold.holds(lhs, reference):
                return False
        return True

    @property
    def flag_prefix(self) -> str:
        return str(self.parameters.get("flag_prefix", self.criterion.lower()))


def _flag_path_value(ruleset: RuleSet, path: str, flags: Mapping[str, Any]) -> Any:
    """The value at ``<flag>[.<key or index>...]`` in ``flags``; ``None`` once a step is null or false (switched off)."""
    name, *keys = path.split(".")
    if name not in flags:
        raise RuleFileError(f"{ruleset.criterion}: flag path {path!r} names an unknown flag {name!r}")
    value: Any = flags[name]
    for key in keys:
        if value is None or value is False:
            return None
        if isinstance(value, Mapping):
            value = value.get(key)
        elif isinstance(value, (list, tuple)) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            raise ValueError(f"{ruleset.flag_prefix}.{name}: expected a mapping or list with {key!r}, got {value!r}")
    return value


# --- the rule-file schema (rules/rulesets/SCHEMA.md) -------------------------------------------------------

TOP_LEVEL_KEYS = frozenset(
    {
        "criterion",
        "version",
        "title",
        "source",
        "evidence",
        "inherit",
        "thresholds",
        "flags",
        "conditions",
        "tables",
        "parameters",
    }
)
INHERIT_KEYS = frozenset({"from", "flags"})
THRESHOLD_KEYS = frozenset({"value", "flag", "direction", "inclusive", "unit", "source"})
INCLUSIVE_FLAG_KEYS = frozenset({"flag", "equals"})
FLAG_KEYS = frozenset({"default", "source"})
CONDITION_KEYS = frozenset({"source", "quantities", "all"})
THRESHOLD_CHECK_KEYS = frozenset({"threshold", "quantity", "minus", "reference", "unless_off"})
BOOLEAN_CHECK_KEYS = frozenset({"any_true"})
TABLE_KEYS = frozenset({"source", "inputs", "rows"})
ROW_KEYS = frozenset({"id", "when", "then", "because"})
RETIRED_PARAMETERS = {
    "inherits_flags_from": "inherit: {from: <prefix>, flags: [...]}",
    "inherited_flags": "inherit: {from: <prefix>, flags: [...]}",
    "flag_thresholds": "a threshold's own 'flag: <flag>[.<key>]'",
    "threshold_flags": "a threshold's own 'flag: <flag>[.<key>]'",
    "inclusive_flags": "a threshold's 'inclusive: {flag: <flag>[.<key>], equals: true|false}'",
    "flag_inclusive": "a threshold's 'inclusive: {flag: <flag>[.<key>], equals: true|false}'",
}
"""Engine-owned keys that once lived in ``parameters`` in two shapes; refused with the key that replaces them."""


def _mapping(value: Any, where: str, path: str, allowed: frozenset[str]) -> Mapping[str, Any]:
    """``value`` as a mapping whose keys are all in ``allowed``: an unknown key is an error naming file, key and path."""
    if not isinstance(value, Mapping):
        raise RuleFileError(f"{where}: {path} must be a mapping, got {type(value).__name__}")
    for key in value:
        if key not in allowed:
            raise RuleFileError(f"{where}: unknown key {key!r} at {path} (allowed there: {', '.join(sorted(allowed))})")
    return value


def _as_mapping(value: Any, where: str, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise RuleFileError(f"{where}: {path} must be a mapping, got {type(value).__name__}")
    return value


def _as_fraction(value: Any, where: str) -> Fraction:
    try:
        return Fraction(str(value))
    except (ValueError, ZeroDivisionError):
        raise RuleFileError(f"{where}: {value!r} is not an exact number (write 7/10 or 0.7)") from None


def _domain(values: Any, where: str) -> tuple[Any, ...]:
    if not isinstance(values, list) or not values:
        raise RuleFileError(f"{where}: an input domain must be a non-empty list")
    return tuple(values)


def _parse_table(ruleset: str, name: str, spec: Any, path: str) -> DecisionTable:
    where = f"{path}: table {name}"
    spec = _mapping(spec, path, f"tables.{name}", TABLE_KEYS)
    inputs = {k: _domain(v, f"{where} input {k}") for k, v in (spec.get("inputs") or {}).items()}
    if not inputs:
        raise RuleFileError(f"{where}: no inputs")
    rows = []
    seen = set()
    for index, raw in enumerate(spec.get("rows") or []):
        raw = _mapping(raw, path, f"tables.{name}.rows[{index}]", ROW_KEYS)
        row_id = str(raw.get("id", ""))
        if not row_id or row_id in seen:
            raise RuleFileError(f"{where}: every row needs a unique id (got {row_id!r})")
        seen.add(row_id)
        when: dict[str, tuple[Any, ...]] = {}
        for key, allowed in (raw.get("when") or {}).items():
            if key not in inputs:
                raise RuleFileError(f"{where} row {row_id}: unknown input {key!r}")
            if allowed == ANY:
                continue
            allowed_values = tuple(allowed) if isinstance(allowed, list) else (allowed,)
            unknown = [v for v in allowed_values if v not in inputs[key]]
            if unknown:
                raise RuleFileError(f"{where} row {row_id}: {unknown} not in the domain of {key}")
            when[key] = allowed_values
        then = raw.get("then")
        if not isinstance(then, Mapping) or not then:
            raise RuleFileError(f"{where} row {row_id}: 'then' must map outputs to values")
        because = str(raw.get("because", "")).strip()
        if not because:
            raise RuleFileError(f"{where} row {row_id}: every row states its reason ('because')")
        rows.append(Row(row_id, when, dict(then), because))
    table = DecisionTable(ruleset, name, inputs, tuple(rows), str(spec.get("source", "")).strip())
    return dataclasses.replace(table, index=table.check_total_and_exclusive())


def _parse_flag(name: str, spec: Any, where: str) -> Flag:
    spec = _mapping(spec, where, f"flags.{name}", FLAG_KEYS)
    if "default" not in spec:
        raise RuleFileError(f"{where}: flag {name} needs a default")
    return Flag(name, spec["default"], str(spec.get("source", "")).strip())


def _parse_threshold(name: str, spec: Any, where: str, flags: Mapping[str, Flag]) -> Threshold:
    at = f"thresholds.{name}"
    spec = _mapping(spec, where, at, THRESHOLD_KEYS)
    direction = spec.get("direction", "at-least")
    if direction not in ("at-least", "at-most"):
        raise RuleFileError(f"{where}: threshold {name} direction must be at-least or at-most")
    if "inclusive" not in spec:
        raise RuleFileError(f"{where}: threshold {name} must say whether it is inclusive")
    inclusive_flag, inclusive_when = "", True
    inclusive = spec["inclusive"]
    if isinstance(inclusive, Mapping):
        switch = _mapping(inclusive, where, f"{at}.inclusive", INCLUSIVE_FLAG_KEYS)
        if "flag" not in switch or not isinstance(switch.get("equals"), bool):
            raise RuleFileError(f"{where}: {at}.inclusive needs 'flag' and 'equals: true|false'")
        inclusive_flag, inclusive_when = str(switch["flag"]), switch["equals"]
    elif not isinstance(inclusive, bool):
        raise RuleFileError(f"{where}: {at}.inclusive must be true, false or {{flag, equals}}")
    flag = str(spec.get("flag", ""))
    if flag and "value" in spec:
        raise RuleFileError(f"{where}: {at} takes its value from flag {flag!r}; remove 'value' (stored once)")
    if not flag and "value" not in spec:
        raise RuleFileError(f"{where}: threshold {name} needs a value or a flag")
    # The defaults: the flag's default sets a flag-backed threshold's value and inclusiveness.
    defaults = {n: f.default for n, f in flags.items()}
    probe = RuleSet("", "", "", "", "", {}, flags, {}, path=where)
    try:
        raw_value = _flag_path_value(probe, flag, defaults) if flag else spec["value"]
        switch_value = _flag_path_value(probe, inclusive_flag, defaults) if inclusive_flag else None
    except (RuleFileError, ValueError) as exc:
        raise RuleFileError(f"{where}: {at}: {exc}") from None
    if flag and (raw_value is None or isinstance(raw_value, bool)):
        raise RuleFileError(f"{where}: {at}: the default of flag {flag!r} must be a number, got {raw_value!r}")
    if inclusive_flag and not isinstance(switch_value, bool):
        raise RuleFileError(f"{where}: {at}.inclusive: flag {inclusive_flag!r} must default to true or false")
    return Threshold(
        name=name,
        value=_as_fraction(raw_value, f"{where} threshold {name}"),
        direction=direction,
        inclusive=bool(switch_value is inclusive_when) if inclusive_flag else inclusive,
        unit=str(spec.get("unit", "")),
        source=str(spec.get("source", "")).strip(),
        flag=flag,
        inclusive_flag=inclusive_flag,
        inclusive_when=inclusive_when,
    )


def _parse_condition(
    name: str, spec: Any, where: str, thresholds: Mapping[str, Threshold], flags: Mapping[str, Flag]
) -> Condition:
    at = f"conditions.{name}"
    spec = _mapping(spec, where, at, CONDITION_KEYS)
    source = str(spec.get("source", "")).strip()
    if not source:
        raise RuleFileError(f"{where}: {at} needs a source")
    quantities = spec.get("quantities")
    if (
        not isinstance(quantities, list)
        or not quantities
        or not all(isinstance(q, str) and q.isidentifier() for q in quantities)
        or len(set(quantities)) != len(quantities)
    ):
        raise RuleFileError(f"{where}: {at}.quantities must be a non-empty list of distinct names, got {quantities!r}")
    clash = [q for q in quantities if q in flags]
    if clash:
        raise RuleFileError(f"{where}: {at}.quantities {clash} are also flag names")
    raw_checks = spec.get("all")
    if not isinstance(raw_checks, list) or not raw_checks:
        raise RuleFileError(f"{where}: {at}.all must be a non-empty list of checks (a conjunction)")
    checks = []
    for index, raw in enumerate(raw_checks):
        check_at = f"{at}.all[{index}]"
        if isinstance(raw, Mapping) and "any_true" in raw:
            raw = _mapping(raw, where, check_at, BOOLEAN_CHECK_KEYS)
            names = raw["any_true"] if isinstance(raw["any_true"], list) else [raw["any_true"]]
            if not names or not all(isinstance(n, str) for n in names):
                raise RuleFileError(
                    f"{where}: {check_at}.any_true must name quantities or flags, got {raw['any_true']!r}"
                )
            for n in names:
                if n in flags and not isinstance(flags[n].default, bool):
                    raise RuleFileError(f"{where}: {check_at}.any_true: flag {n!r} must default to true or false")
            check = Check(any_true=tuple(names))
        else:
            raw = _mapping(raw, where, check_at, THRESHOLD_CHECK_KEYS)
            if raw.get("threshold") not in thresholds:
                raise RuleFileError(
                    f"{where}: {check_at}.threshold {raw.get('threshold')!r} is not a threshold of this file"
                )
            if not raw.get("quantity"):
                raise RuleFileError(f"{where}: {check_at} needs a quantity")
            unless_off = raw.get("unless_off", False)
            if not isinstance(unless_off, bool) or (unless_off and not thresholds[raw["threshold"]].flag):
                raise RuleFileError(
                    f"{where}: {check_at}.unless_off must be true or false, and true only for a flag-backed threshold"
                )
            check = Check(
                threshold=str(raw["threshold"]),
                quantity=str(raw["quantity"]),
                minus=str(raw.get("minus") or ""),
                reference=str(raw.get("reference") or ""),
                unless_off=unless_off,
            )
            unknown_flags = [n for n in check.names() if n in flags]
            if unknown_flags:
                raise RuleFileError(f"{where}: {check_at}: {unknown_flags} are flags, not quantities")
        unknown = [n for n in check.names() if n not in quantities and n not in flags]
        if unknown:
            raise RuleFileError(f"{where}: {check_at}: {unknown} not declared in {at}.quantities")
        checks.append(check)
    unused = [q for q in quantities if not any(q in t.names() for t in checks)]
    if unused:
        raise RuleFileError(f"{where}: {at}.quantities {unused} are used by no check")
    return Condition(name, tuple(quantities), tuple(checks), source)


def load_ruleset(path: Path) -> RuleSet:
    """Read and check one rule file against the schema (rules/rulesets/SCHEMA.md): unknown keys are errors."""
    doc = yaml.load(path.read_text(encoding="utf-8"), Loader=SAFE_LOADER)  # noqa: S506 -- a safe loader
    where = path.name
    doc = _mapping(doc, where, "the document", TOP_LEVEL_KEYS)
    for required in ("criterion", "version", "source"):
        if not doc.get(required):
            raise RuleFileError(f"{where}: '{required}' is required")
    criterion = str(doc["criterion"])
    if not isinstance(doc.get("parameters") or {}, Mapping):
        raise RuleFileError(f"{where}: parameters must be a mapping")
    parameters = dict(doc.get("parameters") or {})
    for key, replacement in RETIRED_PARAMETERS.items():
        if key in parameters:
            raise RuleFileError(f"{where}: unknown key {key!r} at parameters (the engine's format: {replacement})")
    flags = {name: _parse_flag(name, spec, where) for name, spec in (doc.get("flags") or {}).items()}
    thresholds = {
        name: _parse_threshold(name, spec, where, flags) for name, spec in (doc.get("thresholds") or {}).items()
    }
    conditions = {
        name: _parse_condition(name, spec, where, thresholds, flags)
        for name, spec in _as_mapping(doc.get("conditions") or {}, where, "conditions").items()
    }
    inherit = _mapping(doc.get("inherit") or {}, where, "inherit", INHERIT_KEYS)
    inherited = tuple(str(n) for n in (inherit.get("flags") or ()))
    if inherit and (not inherit.get("from") or not inherited):
        raise RuleFileError(f"{where}: inherit needs 'from' (a flag prefix) and a non-empty list 'flags'")
    undeclared = [n for n in inherited if n not in flags]
    if undeclared:
        raise RuleFileError(f"{where}: inherit.flags {undeclared} are not declared under flags")
    tables = {name: _parse_table(criterion, name, spec, where) for name, spec in (doc.get("tables") or {}).items()}
    return RuleSet(
        criterion=criterion,
        version=str(doc["version"]),
        title=str(doc.get("title", criterion)),
        source=str(doc["source"]).strip(),
        evidence=str(doc.get("evidence", "")),
        thresholds=thresholds,
        flags=flags,
        tables=tables,
        parameters=parameters,
        path=str(path),
        inherit_from=str(inherit.get("from", "")),
        inherited=inherited,
        conditions=conditions,
    )


def check_inheritance(rulesets: Mapping[str, RuleSet]) -> None:
    """Every ``inherit.from`` names another rule file's flag prefix, which declares each inherited flag with the
    same default (a site that never overrides it sees one policy across the criteria)."""
    by_prefix = {r.flag_prefix: r for r in rulesets.values()}
    for ruleset in rulesets.values():
        if not ruleset.inherit_from:
            continue
        where = Path(ruleset.path).name
        parent = by_prefix.get(ruleset.inherit_from)
        if parent is None or parent is ruleset:
            raise RuleFileError(f"{where}: inherit.from {ruleset.inherit_from!r} is not another rule file's prefix")
        for name in ruleset.inherited:
            if name not in parent.flags:
                raise RuleFileError(f"{where}: inherit.flags {name!r}: {parent.criterion} has no such flag")
            if parent.flags[name].default != ruleset.flags[name].default:
                raise RuleFileError(
                    f"{where}: inherit.flags {name!r}: default {ruleset.flags[name].default!r} differs from "
                    f"{parent.flag_prefix}.{name} = {parent.flags[name].default!r}"
                )


@dataclass(frozen=True)
class RuleBase:
    """All rule files, and the version string every assessment records."""

    rulesets: Mapping[str, RuleSet]
    version: str

    def __getitem__(self, criterion: str) -> RuleSet:
        return self.rulesets[criterion]


def load_rulebase(directory: Path = RULESET_DIR) -> RuleBase:
    digest = hashlib.sha256()
    rulesets: dict[str, RuleSet] = {}
    for path in sorted(directory.glob("*.yaml")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
        ruleset = load_ruleset(path)
        if ruleset.criterion in rulesets:
            raise RuleFileError(f"{path.name}: criterion {ruleset.criterion} is defined twice")
        rulesets[ruleset.criterion] = ruleset
    check_inheritance(rulesets)
    from rules import __version__

    return RuleBase(rulesets, f"{__version__}+{digest.hexdigest()[:12]}")


def _condition(row: Row, marker: str) -> dict[str, Any]:
    terms: list[dict[str, Any]] = [{"$ex": {marker: 1}}]
    for key, allowed in row.when.items():
        if len(allowed) == 1:
            terms.append({key: allowed[0]})
        else:
            terms.append({"$or": [{key: value} for value in allowed]})
    return {"$and": terms} if len(terms) > 1 else terms[0]


class Engine:
    """Every decision table of a rule base; decisions by the tables' index, optionally checked by durable-rules."""

    _MARKER = "_decision"

    def __init__(self, rulebase: RuleBase, *, durable: bool = False) -> None:
        self.rulebase = rulebase
        self.durable = durable
        self._tables: dict[str, DecisionTable] = {}
        for ruleset in rulebase.rulesets.values():
            for table in ruleset.tables.values():
                self._tables[table.qualified_name] = table
        self._lock = threading.Lock()
        self._session = itertools.count()
        self._host: Any = None
        if durable:
            from durable import engine as durable_engine

            self._durable = durable_engine
            self._host = durable_engine.Host()
            self._host.register_rulesets(
                {
                    self._durable_name(table): {
                        row.id: {"all": [{"m": _condition(row, self._MARKER)}], "run": self._recorder(row.id)}
                        for row in table.rows
                    }
                    for table in self._tables.values()
                }
            )

    @staticmethod
    def _durable_name(table: DecisionTable) -> str:
        return table.qualified_name.replace(":", "__").replace(".", "_").replace("-", "_")

    @staticmethod
    def _recorder(row_id: str) -> Callable[[Any], None]:
        def record(c: Any) -> None:
            c.s.fired = (c.s.fired or []) + [row_id]

        return record

    def table(self, criterion: str, name: str) -> DecisionTable:
        return self._tables[f"{criterion}:{name}"]

    def decide(self, criterion: str, table_name: str, case: Mapping[str, Any]) -> Decision:
        """One decision: the table's row for ``case``; with ``durable`` also fired by durable-rules, which must agree."""
        table = self.table(criterion, table_name)
        row = table.decide(case)
        if self._host is not None:
            fired = self.fire(table, case)
            if not fired:
                raise RuleGap(f"{table.qualified_name}: durable-rules fired no row for {dict(case)}")
            if fired != [row.id]:
                raise RuleConflict(f"{table.qualified_name}: durable-rules fired {fired}, the table says {row.id}")
        return Decision(table.qualified_name, row.id, row.then, row.because)

    def fire(self, table: DecisionTable, case: Mapping[str, Any]) -> list[str]:
        """Assert ``case`` as one fact in a fresh durable-rules session, read the rows that fired, delete it."""
        if self._host is None:
            raise RuntimeError("this engine was built without durable-rules (Engine(..., durable=True))")
        fact = {k: case[k] for k in table.inputs}
        fact[self._MARKER] = 1
        name = self._durable_name(table)
        with self._lock:
            sid = f"s{next(self._session)}"
            fact["sid"] = sid
            try:
                self._host.assert_fact(name, fact)
                fired: list[str] = self._host.get_state(name, sid).get("fired") or []
            except self._durable.MessageNotHandledException:
                fired = []
            finally:
                self._host.delete_state(name, sid)
        return fired


_engine: Engine | None = None
_engine_pid: int | None = None
_engine_lock = threading.Lock()


def get_engine() -> Engine:
    """The process's engine, built on first use (after any fork: durable-rules threads do not survive it)."""
    global _engine, _engine_pid
    with _engine_lock:
        if _engine is None or _engine_pid != os.getpid():
            durable = os.environ.get("IMMUNORAD_RULE_ENGINE", "") == "durable"
            _engine = Engine(load_rulebase(), durable=durable)
            _engine_pid = os.getpid()
        return _engine


def decide(criterion: str, table: str, case: Mapping[str, Any]) -> Decision:
    return get_engine().decide(criterion, table, case)


def rulebase() -> RuleBase:
    return get_engine().rulebase


__all__: Sequence[str] = [
    "ANY",
    "Check",
    "Condition",
    "Decision",
    "DecisionTable",
    "Engine",
    "Flag",
    "RuleBase",
    "RuleConflict",
    "RuleFileError",
    "RuleGap",
    "RuleSet",
    "Threshold",
    "decide",
    "get_engine",
    "load_rulebase",
    "load_ruleset",
    "rulebase",
]
