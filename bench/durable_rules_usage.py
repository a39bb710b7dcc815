"""How much work durable-rules did in a full evaluation, and what it costs (issue 16 item 3): a measurement.

``python -m bench.durable_rules_usage`` evaluates the worked examples of the size spec (tests/rules/cases.ALL)
and counts the decisions the criteria ask for and the distinct cases among them — what durable-rules saw when
every decision was memoised (before issue 16 the engine fired durable-rules once per distinct case per
process); then times one decision fired by durable-rules against the plain row scan
``DecisionTable.matching_rows`` and the tables' index ``DecisionTable.decide`` on every case of every table,
and a whole evaluation of the examples by the index alone and with durable-rules checking every decision.
Single thread; a few seconds.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

from rules.engine import Decision, Engine, load_rulebase
from rules.evaluate import evaluate_patient


class CountingEngine(Engine):
    """The production engine, counting the decisions asked for and the distinct cases."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.asked: Counter[str] = Counter()
        self.distinct: set[tuple[str, tuple[Any, ...]]] = set()

    def decide(self, criterion: str, table_name: str, case: Mapping[str, Any]) -> Decision:
        table = self.table(criterion, table_name)
        self.asked[table.qualified_name] += 1
        self.distinct.add((table.qualified_name, tuple(case[k] for k in table.inputs)))
        return super().decide(criterion, table_name, case)


def main() -> None:
    from tests.rules.cases import ALL

    rulebase = load_rulebase()
    facts = [case.facts() for case in ALL]

    counting = CountingEngine(rulebase)
    for f in facts:
        evaluate_patient(f, engine=counting)
    asked = sum(counting.asked.values())
    reached = len(counting.distinct)
    tables = sum(len(r.tables) for r in rulebase.rulesets.values())
    print(
        f"worked examples: {len(facts)} patients ({', '.join(c.name for c in ALL)}); {tables} tables in the rule base"
    )
    print(f"  decisions asked for: {asked} over {len(counting.asked)} tables")
    print(f"  distinct cases (what a memoised durable-rules engine fired): {reached} ({reached / asked:.0%})")
    for f in facts:  # a second pass, as a long-lived worker sees it
        evaluate_patient(f, engine=counting)
    print(f"  second pass: {sum(counting.asked.values()) - asked} asked, {len(counting.distinct) - reached} new cases")

    cases = []
    for ruleset in rulebase.rulesets.values():
        for table in ruleset.tables.values():
            names = list(table.inputs)
            for values in itertools.product(*(table.inputs[n] for n in names)):
                cases.append((table, dict(zip(names, values, strict=True))))
    durable = Engine(rulebase, durable=True)
    per: dict[str, list[float]] = {"durable-rules (one session per decision)": [], "row scan": [], "index": []}
    for _ in range(3):
        for label, decide in (
            ("durable-rules (one session per decision)", durable.fire),
            ("row scan", lambda t, c: t.matching_rows(c)),
            ("index", lambda t, c: t.decide(c)),
        ):
            started = time.perf_counter()
            for table, case in cases:
                decide(table, case)
            per[label].append((time.perf_counter() - started) / len(cases) * 1e6)
    print(f"every case of every table ({len(cases)} decisions, µs per decision, median of 3):")
    for label, values in per.items():
        print(f"  {label}: {statistics.median(values):.1f}")

    whole: dict[str, list[float]] = {"index (production)": [], "index + durable-rules check": []}
    engines = {"index (production)": Engine(rulebase), "index + durable-rules check": durable}
    for _ in range(3):
        for label, engine in engines.items():
            started = time.perf_counter()
            for f in facts:
                evaluate_patient(f, engine=engine)
            whole[label].append((time.perf_counter() - started) * 1e3 / len(facts))
    print("one evaluation of a worked example (ms per patient, median of 3):")
    for label, values in whole.items():
        print(f"  {label}: {statistics.median(values):.1f}")


if __name__ == "__main__":
    main()
