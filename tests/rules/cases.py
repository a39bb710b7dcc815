"""Worked examples of docs/clinical/criteria-size-pet.md §11 as scenarios.

Each case's numbers are copied from the spec tables. Lesion cells are ``LD×perpendicular`` (nodes: LD×SA).
The same cases feed the end-to-end tests, which send them as TID 1500 SRs over C-STORE or as FHIR Observations.
"""

from __future__ import annotations

import datetime as dt

from rules.facts import NonTargetChange
from rules.scenario import ABSENT, NEW, NOT_ASSESSED, NT, NT_PRESENT, TSTM, Case, Cell, Lesion, T, c, nt_present  # noqa: F401 -- re-exported for tests

D = dt.date.fromisoformat


# E1 — PR at exactly −30.0 % (inclusive); irRC needs −50 %. Non-target (bone) present throughout.
E1 = Case(
    "E1",
    D("2024-01-15"),
    {"BL": D("2024-01-08"), "TP1": D("2024-03-11"), "TP2": D("2024-05-06"), "TP3": D("2024-07-01")},
    (
        Lesion("T1 lung", T, "lung", cells={"BL": c(40, 30), "TP1": c(28, 21), "TP2": c(26, 20), "TP3": c(27, 20)}),
        Lesion("T2 liver", T, "liver", cells={"BL": c(30, 25), "TP1": c(21, 18), "TP2": c(20, 16), "TP3": c(21, 17)}),
        Lesion(
            "T3 node",
            T,
            "lymph node",
            nodal=True,
            cells={"BL": c(25, 20), "TP1": c(20, 14), "TP2": c(18, 12), "TP3": c(19, 13)},
        ),
        Lesion("NT bone", NT, "bone", cells=nt_present(["BL", "TP1", "TP2", "TP3"])),
    ),
)

# E3 — +20 % but < 5 mm absolute. No non-target disease.
E3 = Case(
    "E3",
    D("2024-03-04"),
    {"BL": D("2024-02-26"), "TP1": D("2024-04-29"), "TP2": D("2024-06-24"), "TP3": D("2024-07-22")},
    (
        Lesion("T1 lung", T, "lung", cells={"BL": c(10, 10), "TP1": c(12, 11), "TP2": c(13, 12), "TP3": c(16, 14)}),
        Lesion("T2 lung", T, "lung", cells={"BL": c(10, 10), "TP1": c(12, 11), "TP2": c(12, 11), "TP3": c(15, 13)}),
    ),
)

# E5 — new measurable lesion → iUPD; NLT sum +6 mm → iCPD. Non-target (pleural nodules) present.
E5 = Case(
    "E5",
    D("2024-01-15"),
    {
        "BL": D("2024-01-08"),
        "TP1": D("2024-03-11"),
        "TP2": D("2024-05-06"),
        "TP3": D("2024-06-03"),
        "TP4": D("2024-07-01"),
    },
    (
        Lesion(
            "T1 lung",
            T,
            "lung",
            cells={"BL": c(30, 24), "TP1": c(28, 22), "TP2": c(28, 22), "TP3": c(29, 22), "TP4": c(30, 23)},
        ),
        Lesion(
            "T2 mediastinal node",
            T,
            "lymph node",
            nodal=True,
            cells={"BL": c(24, 18), "TP1": c(22, 17), "TP2": c(22, 17), "TP3": c(22, 17), "TP4": c(23, 18)},
        ),
        Lesion("NT pleura", NT, "pleura", cells=nt_present(["BL", "TP1", "TP2", "TP3", "TP4"])),
        Lesion("N1 liver", NEW, "liver", cells={"TP2": c(12, 10), "TP3": c(18, 15), "TP4": c(22, 18)}),
    ),
)

# E7 — new lesion while targets respond → iUPD; further shrinkage → iPR (WG scenario B).
E7 = Case(
    "E7",
    D("2024-05-06"),
    {"BL": D("2024-04-29"), "TP1": D("2024-07-01"), "TP2": D("2024-08-26"), "TP3": D("2024-10-21")},
    (
        Lesion("T1 lung", T, "lung", cells={"BL": c(30, 25), "TP1": c(18, 15), "TP2": c(14, 12), "TP3": c(12, 10)}),
        Lesion("T2 liver", T, "liver", cells={"BL": c(30, 26), "TP1": c(20, 16), "TP2": c(15, 12), "TP3": c(12, 10)}),
        Lesion(
            "T3 node",
            T,
            "lymph node",
            nodal=True,
            cells={"BL": c(28, 20), "TP1": c(20, 14), "TP2": c(16, 11), "TP3": c(13, 9)},
        ),
        Lesion("NT", NT, "bone", cells=nt_present(["BL", "TP1", "TP2", "TP3"])),
        Lesion("N1 lung", NEW, "lung", cells={"TP1": c(6, 4), "TP2": c(6, 4), "TP3": ABSENT}),
    ),
)

# E9 — NE timepoint: T3 not imaged at TP2. Non-target present.
E9 = Case(
    "E9",
    D("2024-02-12"),
    {"BL": D("2024-02-05"), "TP1": D("2024-04-08"), "TP2": D("2024-06-03"), "TP3": D("2024-07-29")},
    (
        Lesion("T1 lung", T, "lung", cells={"BL": c(30, 22), "TP1": c(24, 18), "TP2": c(25, 18), "TP3": c(30, 22)}),
        Lesion("T2 lung", T, "lung", cells={"BL": c(20, 16), "TP1": c(16, 12), "TP2": c(16, 12), "TP3": c(20, 16)}),
        Lesion(
            "T3 liver", T, "liver", cells={"BL": c(25, 20), "TP1": c(20, 16), "TP2": NOT_ASSESSED, "TP3": c(22, 18)}
        ),
        Lesion("NT", NT, "bone", cells=nt_present(["BL", "TP1", "TP2", "TP3"])),
    ),
)

# E9b — same patient; at TP2 T1 40×30, T2 34×26, T3 not assessed → PD from the partial sum.
E9B = Case(
    "E9b",
    E9.c1d1,
    {k: v for k, v in E9.scans.items() if k != "TP3"},
    (
        Lesion("T1 lung", T, "lung", cells={"BL": c(30, 22), "TP1": c(24, 18), "TP2": c(40, 30)}),
        Lesion("T2 lung", T, "lung", cells={"BL": c(20, 16), "TP1": c(16, 12), "TP2": c(34, 26)}),
        Lesion("T3 liver", T, "liver", cells={"BL": c(25, 20), "TP1": c(20, 16), "TP2": NOT_ASSESSED}),
        Lesion("NT", NT, "bone", cells=nt_present(["BL", "TP1", "TP2"])),
    ),
)

# E11 — "too small to measure" (default 5 mm) versus a measured 3 mm lesion; CR.
E11 = Case(
    "E11",
    D("2024-06-03"),
    {"BL": D("2024-05-27"), "TP1": D("2024-07-29"), "TP2": D("2024-09-23"), "TP3": D("2024-10-21")},
    (
        Lesion("T1 lung", T, "lung", cells={"BL": c(15, 12), "TP1": TSTM, "TP2": ABSENT, "TP3": ABSENT}),
        Lesion("T2 lung", T, "lung", cells={"BL": c(12, 10), "TP1": c(3, 3), "TP2": ABSENT, "TP3": ABSENT}),
    ),
)

# E13 — small new lesion: NLNT under iRECIST; +1 mm NLNT (reader INCLA) → iCPD.
E13 = Case(
    "E13",
    D("2024-03-18"),
    {"BL": D("2024-03-11"), "TP1": D("2024-05-13"), "TP2": D("2024-07-08"), "TP3": D("2024-08-05")},
    (
        Lesion("T1 liver", T, "liver", cells={"BL": c(35, 30), "TP1": c(30, 26), "TP2": c(30, 26), "TP3": c(30, 26)}),
        Lesion(
            "T2 node",
            T,
            "lymph node",
            nodal=True,
            cells={"BL": c(25, 18), "TP1": c(22, 16), "TP2": c(22, 16), "TP3": c(22, 16)},
        ),
        Lesion("N1 lung", NEW, "lung", cells={"TP2": c(8, 6), "TP3": c(9, 7, nontarget_change=NonTargetChange.INCLA)}),
    ),
)

# E15 — "sticky PR" (RECIST WG FAQ); bidimensional amplification in irRC. Non-target present.
E15 = Case(
    "E15",
    D("2024-01-08"),
    {
        "BL": D("2024-01-02"),
        "TP1": D("2024-03-04"),
        "TP2": D("2024-04-29"),
        "TP3": D("2024-06-24"),
        "TP4": D("2024-08-19"),
        "TP5": D("2024-10-14"),
    },
    (
        Lesion(
            "T1 liver",
            T,
            "liver",
            cells={
                "BL": c(60, 50),
                "TP1": c(42, 35),
                "TP2": c(42, 35),
                "TP3": c(48, 40),
                "TP4": c(48, 40),
                "TP5": c(48, 40),
            },
        ),
        Lesion(
            "T2 lung",
            T,
            "lung",
            cells={
                "BL": c(40, 30),
                "TP1": c(28, 21),
                "TP2": c(28, 21),
                "TP3": c(32, 24),
                "TP4": c(32, 24),
                "TP5": c(32, 24),
            },
        ),
        Lesion("NT", NT, "bone", cells=nt_present(["BL", "TP1", "TP2", "TP3", "TP4", "TP5"])),
    ),
)

ALL = (E1, E3, E5, E7, E9, E9B, E11, E13, E15)
