"""CDS Hooks 2.0 (contract §6; interop-notes §5.1): the discovery document and the cards for active alerts.

A card per active alert (one per patient and finding, contract §9.4: never twice, never for "not evaluable"
unless IMMUNORAD_ALERT_NOT_EVALUABLE is set): ``summary`` (one sentence, < 140 characters), ``indicator`` (``critical`` for
hyperprogression and fast progression, ``warning`` for irAE, sarcoid-like reaction and a due confirmation scan,
``info`` otherwise — :func:`fhir_mappings.codes.alert_indicator`, the same rule as the Flag priority),
``source`` with the alert code as ``topic``, a Markdown ``detail`` with the rule trace, and an ``absolute`` link
to the patient's page. Cards never carry patient identifiers.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from typing import Any

from fhir_mappings import codes
from fhir_mappings.alerts import AlertState

SERVICE_ID = "immunorad-alerts"
HOOK = "patient-view"
SUMMARY_MAX = 139
"""CDS Hooks: summary "<140 characters"."""


def discovery_document() -> dict[str, Any]:
    """The answer to ``GET /cds-services``."""
    return {
        "services": [
            {
                "hook": HOOK,
                "id": SERVICE_ID,
                "title": "Immunotherapy imaging response alerts",
                "description": (
                    "Shows active imaging alerts from immunorad when a patient's chart is opened, one card per "
                    "finding that holds: hyperprogression, fast progression, early death, a confirmation scan due "
                    "(iRECIST, irRECIST, irRC, imRECIST, iRANO, LYRIC), pseudoprogression, dissociated or abscopal "
                    "response, irAE and sarcoid-like reaction patterns, tumour growth acceleration."
                ),
                "prefetch": {"patient": "Patient/{{context.patientId}}"},
            }
        ]
    }


def card_uuid(alert: AlertState, canonical: str | None = None) -> str:
    """Stable card uuid for an alert (feedback and audit can be joined to the alert)."""
    base = (canonical or codes.canonical_from_env()).rstrip("/")
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{base}/cds-card/{alert.identifier}"))


def cards_for(
    alerts: Sequence[AlertState],
    *,
    patient_page_url: str,
    source_label: str = "immunorad",
    canonical: str | None = None,
    source_url: str | None = None,
    smart_launch_url: str | None = None,
    app_context: str | None = None,
) -> list[dict[str, Any]]:
    """One card per active alert, most urgent first (stable order otherwise).

    The card's link opens the patient's page: through a SMART App Launch (CDS Hooks Link ``type: smart``, the EHR
    adds ``iss`` and ``launch``; ``appContext`` travels back in the token response) when ``smart_launch_url`` is
    given, else as an ``absolute`` URL."""
    if not patient_page_url or not re.match(r"^https?://", patient_page_url):
        raise ValueError("patient_page_url must be an absolute http(s) URL")
    if not source_label:
        raise ValueError("source_label must be non-empty")
    systems = codes.LocalSystems.from_canonical(canonical)
    rank = {name: i for i, name in enumerate(reversed(codes.INDICATORS))}
    cards: list[dict[str, Any]] = []
    shown: set[str] = set()
    for alert in alerts:
        finding = alert.finding
        if alert.status != "active" or not finding.alert or finding.identity in shown:
            continue  # the same finding never gives two cards (contract §9.4)
        shown.add(finding.identity)
        indicator = codes.alert_indicator(finding.code, finding.severity)
        source: dict[str, Any] = {
            "label": source_label,
            "topic": {"system": systems.alert, "code": finding.code, "display": codes.alert_display(finding.code)},
        }
        if source_url:
            source["url"] = source_url
        cards.append(
            {
                "uuid": card_uuid(alert, systems.canonical),
                "summary": summary_text(finding.summary or codes.alert_display(finding.code)),
                "indicator": indicator,
                "source": source,
                "detail": _detail(alert),
                "links": [_page_link(patient_page_url, smart_launch_url, app_context)],
            }
        )
    cards.sort(key=lambda card: rank[card["indicator"]])
    return cards


def _page_link(page_url: str, smart_launch_url: str | None, app_context: str | None) -> dict[str, str]:
    label = "Open the immunorad response assessment"
    if not smart_launch_url:
        return {"label": label, "url": page_url, "type": "absolute"}
    link = {"label": label, "url": smart_launch_url, "type": "smart"}
    if app_context:
        link["appContext"] = app_context
    return link


def summary_text(text: str) -> str:
    """One line, shorter than 140 characters (cut at a word with an ellipsis)."""
    line = " ".join(text.split())
    if len(line) <= SUMMARY_MAX:
        return line
    cut = line[: SUMMARY_MAX - 1].rsplit(" ", 1)[0].rstrip(",;:")
    return cut + "…"


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|])")


def markdown_escape(text: str) -> str:
    """Escape Markdown (and raw HTML) metacharacters so clinical text renders as written."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def _detail(alert: AlertState) -> str:
    finding = alert.finding
    lines = [
        f"**{markdown_escape(codes.alert_display(finding.code))}** at the scan of {finding.scan_date.isoformat()}.",
        "",
    ]
    trace = [line.strip() for line in finding.detail.splitlines() if line.strip()]
    lines += [f"- {markdown_escape(line)}" for line in trace]
    if finding.window_end is not None:
        lines.append(f"- Window ends {finding.window_end.isoformat()}.")
    lines += ["", f"Rule `{finding.rule.replace('`', '')}`; source: {markdown_escape(finding.source)}."]
    return "\n".join(lines)
