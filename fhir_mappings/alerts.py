"""An alert as the service tracks it (the input of the Flags, the pre-fill's alert lines and the CDS cards).

Its own module so that ``outbound``, ``prefill`` and ``cds_hooks`` can all use it without importing each other.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from rules.results import Finding

FLAG_STATUSES = frozenset({"active", "inactive", "entered-in-error"})


@dataclass(frozen=True)
class AlertState:
    """An alert as the service tracks it: the finding that raised it and its lifecycle."""

    finding: Finding
    identifier: str
    """Business identifier value of the Flag (system ``{C}/identifier/flag``), stable for the alert's life."""
    status: str
    """``active`` | ``inactive`` | ``entered-in-error`` (Flag.status, FHIR R4 required binding)."""
    first_raised: dt.date
    """The scan date from which it has been active (the Flag's ``period.start``); a later scan that still shows
    the finding keeps it, a re-activation after it was resolved starts a new period."""
    report_date: dt.date
    """The latest follow-up timepoint at which the finding holds: ``flag-detail`` points to that report, and the
    Flag rides with it (contract §9.4: a later scan updates the alert)."""
    ended: dt.date | None = None
    """When it stopped being active (``period.end`` of an inactive Flag). When unknown, the finding's
    ``window_end`` or, failing that, ``report_date`` is used."""

    def __post_init__(self) -> None:
        if self.status not in FLAG_STATUSES:
            raise ValueError(f"AlertState.status must be one of {sorted(FLAG_STATUSES)}, not {self.status!r}")
        if not self.identifier or not self.identifier.strip():
            raise ValueError("AlertState.identifier must be a non-empty string")
