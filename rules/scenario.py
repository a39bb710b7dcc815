"""A compact notation for a patient's imaging timeline: lesions × scans, as the worked examples write them.

Used by the worked-example tests and by ``immunorad demo``: each ``Case`` turns into ``PatientFacts``
(``Case.facts``), and the demo turns the same cells into TID 1500 reports. Lesion cells are
``LD×perpendicular`` in mm (nodes: LD×short axis), as in ``clinical/criteria-size-pet.md`` §11.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from rules.facts import (
    LesionMeasurement,
    LesionRole,
    LesionStatus,
    NonTargetChange,
    NonTargetStatus,
    PatientFacts,
    TherapyLine,
)


@dataclass(frozen=True)
class Cell:
    """One lesion at one scan: (LD, perpendicular/SA), or a status."""

    ld: float | None = None
    sa: float | None = None
    status: LesionStatus = LesionStatus.PRESENT
    nontarget_status: NonTargetStatus | None = None
    nontarget_change: NonTargetChange | None = None
    equivocal: bool = False


ABSENT = Cell(0, 0, LesionStatus.ABSENT)
TSTM = Cell(None, None, LesionStatus.TOO_SMALL)
NOT_ASSESSED = Cell(None, None, LesionStatus.NOT_ASSESSED)
NT_PRESENT = Cell(nontarget_status=NonTargetStatus.PRESENT)


@dataclass(frozen=True)
class Lesion:
    key: str
    role: LesionRole
    organ: str
    nodal: bool = False
    cells: dict[str, Cell] = field(default_factory=dict)
    """scan label → Cell (missing label = not reported)."""


@dataclass(frozen=True)
class Case:
    name: str
    c1d1: dt.date
    scans: dict[str, dt.date]
    """scan label (BL, TP1, …) → date."""
    lesions: tuple[Lesion, ...]
    agent: str = "pembrolizumab"
    therapy_stop: dt.date | None = None

    def facts(self, patient_ref: str | None = None) -> PatientFacts:
        measurements = []
        for lesion in self.lesions:
            for label, cell in lesion.cells.items():
                measurements.append(
                    LesionMeasurement(
                        lesion_id=lesion.key,
                        scan_date=self.scans[label],
                        status=cell.status,
                        role=lesion.role
                        if label == "BL"
                        else (LesionRole.NEW if lesion.role is LesionRole.NEW else None),
                        nodal=lesion.nodal,
                        organ=lesion.organ,
                        long_axis_mm=None if cell.ld is None else Decimal(str(cell.ld)),
                        short_axis_mm=None if cell.sa is None else Decimal(str(cell.sa)),
                        nontarget_status=cell.nontarget_status,
                        nontarget_change=cell.nontarget_change,
                        equivocal=cell.equivocal,
                        label=lesion.key,
                        source="test",
                    )
                )
        return PatientFacts(
            patient_ref=patient_ref or self.name,
            therapy_lines=(TherapyLine(agent=self.agent, start_date=self.c1d1, stop_date=self.therapy_stop),),
            measurements=tuple(measurements),
        )


T, NT, NEW = LesionRole.TARGET, LesionRole.NON_TARGET, LesionRole.NEW


def c(ld: float | None, sa: float | None = None, **kw: Any) -> Cell:
    """A measured cell: LD and perpendicular (nodes: short axis)."""
    return Cell(ld, sa if sa is not None else ld, **kw)


def nt_present(label_dates: Iterable[str]) -> dict[str, Cell]:
    return {label: NT_PRESENT for label in label_dates}
