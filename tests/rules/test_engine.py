"""The rule-file schema the engine owns (rules/rulesets/SCHEMA.md): load-time errors and the one flag resolver.

Each test writes a small rule file and loads it with ``load_ruleset`` / ``load_rulebase``; a malformed file must
fail at load with a message that names the file, the key or table, and where it is.
"""

from __future__ import annotations

import itertools
import textwrap
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from rules.engine import Engine, RuleFileError, load_rulebase, load_ruleset

HEADER = """\
criterion: TEST
version: "1"
source: "A test rule file (no clinical content)."
"""

# A total, exclusive table over one input with three values: the base every broken variant below departs from.
GOOD_TABLE = """\
tables:
  category:
    source: "test"
    inputs:
      change: [up, flat, down]
    rows:
      - {id: R1, when: {change: up}, then: {category: PD}, because: "grew"}
      - {id: R2, when: {change: flat}, then: {category: SD}, because: "unchanged"}
      - {id: R3, when: {change: down}, then: {category: PR}, because: "shrank"}
"""


def write(tmp_path: Path, body: str, name: str = "test.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def load_error(tmp_path: Path, body: str) -> str:
    with pytest.raises(RuleFileError) as raised:
        load_ruleset(write(tmp_path, body))
    return str(raised.value)


def test_a_total_exclusive_table_loads(tmp_path: Path) -> None:
    ruleset = load_ruleset(write(tmp_path, HEADER + GOOD_TABLE))
    assert [row.id for row in ruleset.tables["category"].rows] == ["R1", "R2", "R3"]


def test_a_gap_is_a_load_error(tmp_path: Path) -> None:
    # 'flat' is matched by no row once R2 is removed.
    body = HEADER + GOOD_TABLE.replace(
        '      - {id: R2, when: {change: flat}, then: {category: SD}, because: "unchanged"}\n', ""
    )
    message = load_error(tmp_path, body)
    assert "TEST:category" in message and "'change': 'flat'" in message and "no row" in message


def test_an_overlap_is_a_load_error(tmp_path: Path) -> None:
    # R3 also matching 'flat' makes 'flat' ambiguous (R2 and R3): exclusive outcomes must be exclusive in the table.
    body = HEADER + GOOD_TABLE.replace("when: {change: down}", "when: {change: [flat, down]}")
    message = load_error(tmp_path, body)
    assert "TEST:category" in message and "'change': 'flat'" in message and "rows R2, R3" in message


def test_a_value_outside_the_domain_is_a_load_error(tmp_path: Path) -> None:
    body = HEADER + GOOD_TABLE.replace("when: {change: down}", "when: {change: sideways}")
    message = load_error(tmp_path, body)
    assert (
        message.startswith("test.yaml: table category row R3") and "['sideways'] not in the domain of change" in message
    )


def test_an_empty_domain_is_a_load_error(tmp_path: Path) -> None:
    body = HEADER + GOOD_TABLE.replace("change: [up, flat, down]", "change: []")
    assert "an input domain must be a non-empty list" in load_error(tmp_path, body)


@pytest.mark.parametrize(
    ("body", "key", "where"),
    [
        (HEADER + "colour: blue\n" + GOOD_TABLE, "colour", "the document"),
        (
            HEADER
            + "thresholds:\n  t:\n    value: 5\n    direction: at-least\n    inclusive: true\n    soruce: typo\n"
            + GOOD_TABLE,
            "soruce",
            "thresholds.t",
        ),
        (HEADER + "flags:\n  f: {default: 1, source: s, overridable: yes}\n" + GOOD_TABLE, "overridable", "flags.f"),
        (
            HEADER + GOOD_TABLE.replace('because: "grew"}', 'because: "grew", note: x}'),
            "note",
            "tables.category.rows[0]",
        ),
        (
            HEADER + GOOD_TABLE.replace('    source: "test"\n', '    source: "test"\n    priority: 1\n'),
            "priority",
            "tables.category",
        ),
        (
            HEADER + "inherit: {from: recist, flags: [f], thresholds: [t]}\nflags:\n  f: {default: 1}\n",
            "thresholds",
            "inherit",
        ),
    ],
)
def test_an_unknown_key_is_a_load_error_naming_file_key_and_path(
    tmp_path: Path, body: str, key: str, where: str
) -> None:
    assert load_error(tmp_path, body).startswith(f"test.yaml: unknown key {key!r} at {where} (allowed there: ")


def test_the_retired_parameter_shapes_are_refused_with_their_replacement(tmp_path: Path) -> None:
    body = HEADER + "parameters:\n  threshold_flags: {t: f}\n" + GOOD_TABLE
    message = load_error(tmp_path, body)
    assert "unknown key 'threshold_flags' at parameters" in message and "flag: <flag>" in message


FLAGGED = (
    HEADER
    + """\
flags:
  cap: {default: {total: 5, per_organ: 2}, source: "s"}
  window: {default: [14, 180], source: "s"}
  strict: {default: true, source: "s"}
thresholds:
  max_total:
    flag: cap.total
    direction: at-most
    inclusive: true
    source: "s"
  window_max:
    flag: window.1
    direction: at-most
    inclusive: true
    source: "s"
  growth:
    value: 13/10
    direction: at-least
    inclusive: {flag: strict, equals: false}
    source: "s"
"""
)


def test_a_flag_backed_threshold_stores_its_number_once_in_the_flag(tmp_path: Path) -> None:
    ruleset = load_ruleset(write(tmp_path, FLAGGED))
    # Defaults: cap.total = 5, window[1] = 180; strict = true → inclusive is (true == false) = false (">").
    assert ruleset.threshold("max_total").value == 5
    assert ruleset.threshold("window_max").value == 180
    assert ruleset.threshold("growth").inclusive is False
    # An override of the flag (test.<flag>) moves the threshold; direction and source stay.
    flags = ruleset.flag_values(
        {"test.cap": {"total": 3, "per_organ": 1}, "test.window": [7, 90], "test.strict": False}
    )
    assert ruleset.required_threshold("max_total", flags).value == 3
    assert ruleset.required_threshold("window_max", flags).value == 90
    assert ruleset.required_threshold("growth", flags).inclusive is True
    assert ruleset.required_threshold("growth", flags).value == Fraction(13, 10)
    # A null flag switches an optional rule off; a required one refuses.
    off = ruleset.flag_values({"test.cap": None})
    assert ruleset.configured_threshold("max_total", off) is None
    with pytest.raises(ValueError, match="cannot be switched off"):
        ruleset.required_threshold("max_total", off)


def test_a_flag_backed_threshold_with_its_own_value_is_a_load_error(tmp_path: Path) -> None:
    body = FLAGGED.replace("    flag: cap.total\n", "    flag: cap.total\n    value: 5\n")
    assert "thresholds.max_total takes its value from flag 'cap.total'; remove 'value'" in load_error(tmp_path, body)


def test_a_threshold_backed_by_an_unknown_flag_is_a_load_error(tmp_path: Path) -> None:
    body = FLAGGED.replace("flag: cap.total", "flag: kap.total")
    assert "thresholds.max_total" in (message := load_error(tmp_path, body)) and "unknown flag 'kap'" in message


def test_a_threshold_backed_by_a_flag_that_is_not_a_number_is_a_load_error(tmp_path: Path) -> None:
    body = FLAGGED.replace("flag: cap.total", "flag: strict")
    assert "the default of flag 'strict' must be a number" in load_error(tmp_path, body)


PARENT = """\
criterion: PARENT
version: "1"
source: "s"
parameters: {flag_prefix: parent}
flags:
  sticky: {default: true, source: "s"}
"""

CHILD = """\
criterion: CHILD
version: "1"
source: "s"
parameters: {flag_prefix: child}
inherit: {from: parent, flags: [sticky]}
flags:
  sticky: {default: true, source: "s"}
  own: {default: 1, source: "s"}
"""


def test_an_inherited_flag_takes_the_parents_override_unless_its_own_is_set(tmp_path: Path) -> None:
    write(tmp_path, PARENT, "parent.yaml")
    write(tmp_path, CHILD, "child.yaml")
    child = load_rulebase(tmp_path)["CHILD"]
    assert child.flag("sticky") is True
    assert child.flag("sticky", {"parent.sticky": False}) is False
    assert child.flag("sticky", {"parent.sticky": False, "child.sticky": True}) is True
    # Only the inherited flags fall back to the parent.
    assert child.flag_values({"parent.own": 9})["own"] == 1


def test_inheritance_from_an_unknown_prefix_or_with_a_different_default_is_a_load_error(tmp_path: Path) -> None:
    write(tmp_path, CHILD, "child.yaml")
    with pytest.raises(RuleFileError, match="child.yaml: inherit.from 'parent' is not another rule file's prefix"):
        load_rulebase(tmp_path)
    write(tmp_path, PARENT.replace("sticky: {default: true", "sticky: {default: false"), "parent.yaml")
    with pytest.raises(RuleFileError, match="child.yaml: inherit.flags 'sticky': default True differs"):
        load_rulebase(tmp_path)


def test_an_inherited_flag_must_be_declared(tmp_path: Path) -> None:
    body = CHILD.replace("flags: [sticky]", "flags: [sticky, missing]")
    assert "inherit.flags ['missing'] are not declared under flags" in load_error(tmp_path, body)


def test_the_shipped_rule_files_load_under_the_schema() -> None:
    rulebase = load_rulebase()
    assert rulebase["iRECIST"].inherit_from == "recist"
    assert rulebase["PERCIST-1.0"].threshold("pmd_fraction_of_baseline").inclusive_flag == "pmd_strict"


def test_durable_rules_fires_the_indexed_row_for_every_case_of_every_table() -> None:
    # durable-rules is the independent second implementation of the tables' semantics (docs/ARCHITECTURE.md, "The
    # rule engine: what durable-rules does"): for every combination of input values of every shipped table, the
    # one row it fires is the row the load-time index holds, and Engine(durable=True).decide agrees with it.
    rulebase = load_rulebase()
    engine = Engine(rulebase, durable=True)
    checked = 0
    for ruleset in rulebase.rulesets.values():
        for table in ruleset.tables.values():
            names = list(table.inputs)
            for values, row in table.index.items():
                case = dict(zip(names, values, strict=True))
                assert engine.fire(table, case) == [row.id], (table.qualified_name, case)
                checked += 1
            assert len(table.index) == len(list(itertools.product(*table.inputs.values())))
    assert checked > 5000
    table = next(iter(rulebase["RECIST-1.1"].tables.values()))
    values, row = next(iter(table.index.items()))
    decision = engine.decide(table.ruleset, table.name, dict(zip(table.inputs, values, strict=True)))
    assert (decision.table, decision.row) == (table.qualified_name, row.id)


def test_a_decision_outside_the_domain_or_missing_an_input_is_refused(tmp_path: Path) -> None:
    table = load_ruleset(write(tmp_path, HEADER + GOOD_TABLE)).tables["category"]
    assert table.decide({"change": "down"}).id == "R3"
    with pytest.raises(ValueError, match="change='sideways' is outside its domain"):
        table.decide({"change": "sideways"})
    with pytest.raises(ValueError, match="inputs missing"):
        table.decide({})


CONDITIONED = (
    HEADER
    + """\
flags:
  strict: {default: true, source: "s"}
  partial_ok: {default: false, source: "s"}
thresholds:
  growth:
    value: 13/10
    direction: at-least
    inclusive: {flag: strict, equals: false}
    source: "s"
  rise:
    value: 4/5
    direction: at-least
    inclusive: {flag: strict, equals: false}
    source: "s"
conditions:
  progressed:
    source: "s"
    quantities: [now, before, complete]
    all:
      - {any_true: [complete, partial_ok]}
      - {threshold: growth, quantity: now, reference: before}
      - {threshold: rise, quantity: now, minus: before}
"""
)


def test_a_condition_is_a_conjunction_of_checks_on_named_quantities(tmp_path: Path) -> None:
    ruleset = load_ruleset(write(tmp_path, CONDITIONED))
    flags = ruleset.flag_values()

    def progressed(now: str | None, before: str | None, complete: bool | None = True, **overrides: object) -> bool:
        values = ruleset.flag_values({f"test.{k}": v for k, v in overrides.items()}) if overrides else flags
        return ruleset.holds(
            "progressed",
            values,
            now=None if now is None else Decimal(now),
            before=None if before is None else Decimal(before),
            complete=complete,
        )

    # 2.0 → 2.81: 2.81 > 1.3 × 2.0 = 2.6 and 2.81 − 2.0 = 0.81 > 0.8 → both checks hold.
    assert progressed("2.81", "2.0")
    # 2.0 → 2.8: +40 % but 2.8 − 2.0 = 0.8 exactly, not > 0.8 (strict) → the conjunction fails; ≥ with strict off.
    assert not progressed("2.8", "2.0")
    assert progressed("2.8", "2.0", strict=False)
    # 8.0 → 10.4: 10.4 − 8.0 = 2.4 > 0.8, but 10.4 = 1.3 × 8.0 exactly, not > (strict) → fails; ≥ with strict off.
    assert not progressed("10.4", "8.0")
    assert progressed("10.4", "8.0", strict=False)
    # A partial sum counts only with partial_ok; a quantity not measured (None) fails its check.
    assert not progressed("2.81", "2.0", complete=False)
    assert progressed("2.81", "2.0", complete=False, partial_ok=True)
    assert not progressed(None, "2.0")
    # The code supplies exactly the declared quantities.
    with pytest.raises(ValueError, match=r"takes the quantities \['before', 'complete', 'now'\]"):
        ruleset.holds("progressed", flags, now=Decimal(3), before=Decimal(2))
    with pytest.raises(RuleFileError, match="no condition named 'regressed'"):
        ruleset.holds("regressed", flags)


SWITCHABLE = (
    HEADER
    + """\
flags:
  floor_mm: {default: 5, source: "s"}
thresholds:
  growth: {value: 6/5, direction: at-least, inclusive: true, source: "s"}
  floor: {flag: floor_mm, direction: at-least, inclusive: true, source: "s"}
conditions:
  progressed:
    source: "s"
    quantities: [now, nadir]
    all:
      - {threshold: growth, quantity: now, reference: nadir}
      - {threshold: floor, quantity: now, minus: nadir, unless_off: true}
"""
)


def test_a_check_unless_off_is_skipped_when_its_flag_switches_the_threshold_off(tmp_path: Path) -> None:
    ruleset = load_ruleset(write(tmp_path, SWITCHABLE))

    def progressed(now: str, nadir: str, **overrides: object) -> bool:
        flags = ruleset.flag_values({f"test.{k}": v for k, v in overrides.items()})
        return ruleset.holds("progressed", flags, now=Decimal(now), nadir=Decimal(nadir))

    # Nadir 20 → 24: 24 ≥ 1.2 × 20 = 24 (+20 % exactly), but 24 − 20 = 4 < 5 → fails; with the floor off (null or
    # false) only the 20 % rule is checked → holds; a floor of 4 → 4 ≥ 4 holds.
    assert not progressed("24", "20")
    assert progressed("24", "20", floor_mm=None)
    assert progressed("24", "20", floor_mm=False)
    assert progressed("24", "20", floor_mm=4)
    # Switched off, the other checks still decide: 23.9 < 24.
    assert not progressed("23.9", "20", floor_mm=None)
    # Without unless_off a switched-off threshold is refused (required_threshold).
    strict = load_ruleset(write(tmp_path, SWITCHABLE.replace(", unless_off: true", "")))
    with pytest.raises(ValueError, match="threshold floor is required"):
        strict.holds("progressed", strict.flag_values({"test.floor_mm": None}), now=Decimal(24), nadir=Decimal(20))
    # unless_off only on a flag-backed threshold, and only true or false.
    assert "true only for a flag-backed threshold" in load_error(
        tmp_path, SWITCHABLE.replace("reference: nadir}", "reference: nadir, unless_off: true}")
    )
    assert "unless_off must be true or false" in load_error(
        tmp_path, SWITCHABLE.replace("unless_off: true", "unless_off: maybe")
    )


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "      - {threshold: rise, quantity: now, minus: before}",
            "      - {threshold: fall, quantity: now}",
            "conditions.progressed.all[2].threshold 'fall' is not a threshold of this file",
        ),
        (
            "quantity: now, minus: before",
            "quantity: now, minus: baseline",
            "conditions.progressed.all[2]: ['baseline'] not declared in conditions.progressed.quantities",
        ),
        (
            "quantity: now, minus: before",
            "quantity: now, minus: before, per: before",
            "unknown key 'per' at conditions.progressed.all[2]",
        ),
        (
            "{any_true: [complete, partial_ok]}",
            "{any_true: [complete, partial_ok], threshold: growth}",
            "unknown key 'threshold' at conditions.progressed.all[0]",
        ),
        ("{any_true: [complete, partial_ok]}", "{any_true: [complete, strict_ness]}", "['strict_ness'] not declared"),
        (
            "      - {threshold: rise, quantity: now, minus: before}",
            "      - {threshold: rise, minus: before}",
            "conditions.progressed.all[2] needs a quantity",
        ),
        (
            "quantities: [now, before, complete]",
            "quantities: [now, before, complete, later]",
            "quantities ['later'] are used by no check",
        ),
        (
            "quantities: [now, before, complete]",
            "quantities: [now, before, complete, strict]",
            "quantities ['strict'] are also flag names",
        ),
        (
            "quantities: [now, before, complete]",
            "quantities: []",
            "quantities must be a non-empty list of distinct names",
        ),
        ('    source: "s"\n    quantities', "    quantities", "conditions.progressed needs a source"),
        ("    all:\n", "    any:\n", "unknown key 'any' at conditions.progressed"),
    ],
)
def test_a_bad_condition_is_a_load_error(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in CONDITIONED
    assert message in load_error(tmp_path, CONDITIONED.replace(old, new))
