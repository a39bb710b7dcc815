"""durable-rules alone on the same facts versus plain Python predicates (so that a future engine change can
be judged): every case of every decision table of the rule base (the full product of each table's input
domains), fired by durable-rules (``Engine(load_rulebase(), durable=True).fire(...)``) and by the plain row scan
``DecisionTable.matching_rows(case)``; both must pick the same row. The production engine (the tables' index,
``Engine.decide``) is shown too.
"""

from __future__ import annotations

import itertools
import time

from bench.common import Goal, Section, Series, fmt


def all_cases(rulebase):
    for ruleset in rulebase.rulesets.values():
        for table in ruleset.tables.values():
            names = list(table.inputs)
            for values in itertools.product(*(table.inputs[n] for n in names)):
                yield table, dict(zip(names, values, strict=True))


def run(ctx) -> Section:
    from rules.engine import Engine, load_rulebase

    rulebase = load_rulebase()
    cases = list(all_cases(rulebase))
    if ctx.quick:
        cases = cases[::10]
    repeats = 2 if ctx.quick else ctx.repeats
    durable = Engine(rulebase, durable=True)
    indexed = Engine(rulebase)
    section = Section("rules", "Rule engine: durable-rules versus plain Python predicates")
    tables = {table.qualified_name for table, _ in cases}
    section.setup.append(
        f"{len(cases):,} decisions per run: every combination of input values of the {len(tables)} decision "
        f"tables of rule base {rulebase.version}; {repeats} runs. One thread."
    )
    # Same answers first (a benchmark of wrong answers is worthless).
    for table, case in cases:
        plain = table.matching_rows(case)
        fired = durable.fire(table, case)
        assert len(plain) == 1 and [plain[0].id] == fired, (table.qualified_name, case)
    timings = {"durable": [], "plain": [], "indexed": []}
    for _ in range(repeats):
        started = time.perf_counter()
        for table, case in cases:
            durable.fire(table, case)
        timings["durable"].append((time.perf_counter() - started) / len(cases) * 1e6)
        started = time.perf_counter()
        for table, case in cases:
            table.matching_rows(case)
        timings["plain"].append((time.perf_counter() - started) / len(cases) * 1e6)
        started = time.perf_counter()
        for table, case in cases:
            indexed.decide(table.ruleset, table.name, case)
        timings["indexed"].append((time.perf_counter() - started) / len(cases) * 1e6)

    labels = {
        "durable": "durable-rules, `Engine(load_rulebase(), durable=True).fire`",
        "plain": "plain Python, `DecisionTable.matching_rows(case)`",
        "indexed": "production engine (`Engine.decide`, the tables' index)",
    }
    plain = Series("", "", timings["plain"]).median
    rows = []
    for key in ("durable", "plain", "indexed"):
        series = section.add(Series(labels[key], "µs/decision", timings[key], higher_is_better=False))
        rows.append(
            [
                labels[key],
                fmt(series.min, 2),
                fmt(series.median, 2),
                fmt(series.max, 2),
                f"{series.median / plain:.1f}×",
                fmt(1e6 / series.median),
            ]
        )
    section.tables.append(
        (["engine", "µs per decision min", "median", "max", "vs plain", "decisions/s (median)"], rows)
    )
    section.notes.append(
        "Both engines chose the same row for every case. durable-rules runs one session per decision "
        "(assert the fact, read the fired row, delete the session), under one lock."
    )
    section.goals.append(
        Goal(
            "durable-rules vs plain predicates (for judging an engine change)",
            f"{Series('', '', timings['durable']).median:.1f} vs {plain:.2f} µs per decision",
            "reported",
            None,
        )
    )
    return section
