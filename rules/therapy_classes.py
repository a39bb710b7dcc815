"""Immunotherapy classes and the code lists that recognise them (contract §9.3 "Every immunotherapy class").

Every systemic anticancer immunotherapy starts a therapy line with its class: immune checkpoint inhibitors,
CAR-T and other cell therapies, bispecific T-cell engagers, oncolytic viruses, cancer vaccines, cytokines.
A drug is recognised, in this order, by:

1. its **name** (WHO International Nonproprietary Name, INN) in the coding's display or the concept's text —
   the list below; each INN's class is the mechanism stated in its regulatory label (FDA USPI / EMA SmPC
   section 5.1, "pharmacotherapeutic group"), named per entry;
2. an **ATC code** (WHO Collaborating Centre for Drug Statistics Methodology, ATC/DDD Index, www.whocc.no):
   the exact codes and the class prefixes in ``ATC_CODES`` / ``ATC_PREFIXES``, each with the ATC level it
   comes from (as printed in the products' EU SmPC section 5.1 "ATC code" and the ATC index group names;
   not re-checked against the online index in this change — re-check when the index is next released). ATC group L01FX ("other monoclonal antibodies") mixes checkpoint inhibitors, bispecifics and
   unrelated antibodies, and L01XL ("antineoplastic cell and gene therapy") mixes CAR-T products with gene
   therapies, so those groups are **not** used as prefixes: their members are recognised by name or by the
   exact code listed;
3. **RxNorm** codings are recognised by their display name (step 1). We list no RxNorm ingredient CUIs: the
   ones we could look up (e.g. on openFDA) were clinical-drug/product CUIs, not ingredient CUIs, and we could
   not check the ingredient CUIs against an RxNorm release here; a name match is what we can stand behind.

A medication that none of these recognises is kept as an **unclassified** therapy with a warning (contract
§9.3: never dropped) — unless it carries an ATC code outside group L (antineoplastic and immunomodulating
agents), which says it is a concomitant medication (e.g. N02BE01 paracetamol), not a cancer therapy.

Definitions validated for checkpoint inhibitors only (hyperprogression, fast progression: docs/clinical/
criteria-kinetics-irae.md §3.1 — every cohort there was treated with PD-1/PD-L1 or CTLA-4 antibodies) say so
in their trace when applied to another class (``rules/rulesets/kinetics.yaml`` ``validated_for``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

ICI = "immune-checkpoint-inhibitor"
CELL_THERAPY = "cell-therapy"
BISPECIFIC = "bispecific-t-cell-engager"
ONCOLYTIC_VIRUS = "oncolytic-virus"
CANCER_VACCINE = "cancer-vaccine"
CYTOKINE = "cytokine"
UNCLASSIFIED = "unclassified"
CONCOMITANT = "concomitant"

CLASS_LABELS = {
    ICI: "immune checkpoint inhibitor",
    CELL_THERAPY: "cell therapy (CAR-T, TIL, TCR-T)",
    BISPECIFIC: "bispecific T-cell engager",
    ONCOLYTIC_VIRUS: "oncolytic virus",
    CANCER_VACCINE: "cancer vaccine",
    CYTOKINE: "cytokine",
    UNCLASSIFIED: "unclassified therapy",
}
"""The classes that start a therapy line (contract §9.3), in words for reports and traces."""


@dataclass(frozen=True)
class Agent:
    """One immunotherapy agent, by its INN."""

    name: str
    therapy_class: str
    detail: str
    """Mechanism in short (target), e.g. ``anti-PD-1``, ``CD19 CAR-T``, ``CD20×CD3``."""
    source: str


@dataclass(frozen=True)
class Classification:
    agent: str
    therapy_class: str
    detail: str | None
    recognised_by: str
    """``name``, ``atc`` (exact code), ``atc-class`` (prefix) or ``none``."""
    source: str


_ICI = "INN; PD-1/PD-L1 antibodies: WHO ATC L01FF; label section 5.1"
_CTLA4 = "INN; anti-CTLA-4 antibody: label section 5.1 (ATC L01FX, a mixed group)"
AGENTS: tuple[Agent, ...] = (
    # Immune checkpoint inhibitors (contract §4 v1 list, plus the LAG-3 antibody of nivolumab/relatlimab).
    *(
        Agent(name, ICI, "anti-PD-1", _ICI)
        for name in (
            "nivolumab",
            "pembrolizumab",
            "cemiplimab",
            "dostarlimab",
            "tislelizumab",
            "toripalimab",
            "sintilimab",
            "camrelizumab",
            "retifanlimab",
            "prolgolimab",
            "spartalizumab",
        )
    ),
    *(Agent(name, ICI, "anti-PD-L1", _ICI) for name in ("atezolizumab", "durvalumab", "avelumab", "sugemalimab")),
    Agent("ipilimumab", ICI, "anti-CTLA-4", _CTLA4),
    Agent("tremelimumab", ICI, "anti-CTLA-4", _CTLA4),
    Agent("relatlimab", ICI, "anti-LAG-3", "INN; FDA USPI Opdualag (nivolumab and relatlimab-rmbw) 2022, §12.1"),
    # Cell therapies: autologous CAR-T products (FDA-approved; USPI §12.1 names the target), TIL and TCR-T.
    Agent("axicabtagene ciloleucel", CELL_THERAPY, "CD19 CAR-T", "INN; FDA USPI Yescarta 2017, §12.1"),
    Agent("tisagenlecleucel", CELL_THERAPY, "CD19 CAR-T", "INN; FDA USPI Kymriah 2017, §12.1"),
    Agent("brexucabtagene autoleucel", CELL_THERAPY, "CD19 CAR-T", "INN; FDA USPI Tecartus 2020, §12.1"),
    Agent("lisocabtagene maraleucel", CELL_THERAPY, "CD19 CAR-T", "INN; FDA USPI Breyanzi 2021, §12.1"),
    Agent("obecabtagene autoleucel", CELL_THERAPY, "CD19 CAR-T", "INN; FDA USPI Aucatzyl 2024, §12.1"),
    Agent("idecabtagene vicleucel", CELL_THERAPY, "BCMA CAR-T", "INN; FDA USPI Abecma 2021, §12.1"),
    Agent("ciltacabtagene autoleucel", CELL_THERAPY, "BCMA CAR-T", "INN; FDA USPI Carvykti 2022, §12.1"),
    Agent("lifileucel", CELL_THERAPY, "tumour-infiltrating lymphocytes", "INN; FDA USPI Amtagvi 2024, §12.1"),
    Agent("afamitresgene autoleucel", CELL_THERAPY, "MAGE-A4 TCR-T", "INN; FDA USPI Tecelra 2024, §12.1"),
    # Bispecific T-cell engagers (target × CD3), USPI §12.1.
    Agent("blinatumomab", BISPECIFIC, "CD19×CD3", "INN; WHO ATC L01FX07; FDA USPI Blincyto 2014, §12.1"),
    Agent("tebentafusp", BISPECIFIC, "gp100-HLA-A*02:01×CD3", "INN; FDA USPI Kimmtrak 2022, §12.1"),
    Agent("teclistamab", BISPECIFIC, "BCMA×CD3", "INN; FDA USPI Tecvayli 2022, §12.1"),
    Agent("elranatamab", BISPECIFIC, "BCMA×CD3", "INN; FDA USPI Elrexfio 2023, §12.1"),
    Agent("linvoseltamab", BISPECIFIC, "BCMA×CD3", "INN; FDA USPI Lynozyfic 2025, §12.1"),
    Agent("talquetamab", BISPECIFIC, "GPRC5D×CD3", "INN; FDA USPI Talvey 2023, §12.1"),
    Agent("mosunetuzumab", BISPECIFIC, "CD20×CD3", "INN; FDA USPI Lunsumio 2022, §12.1"),
    Agent("glofitamab", BISPECIFIC, "CD20×CD3", "INN; FDA USPI Columvi 2023, §12.1"),
    Agent("epcoritamab", BISPECIFIC, "CD20×CD3", "INN; FDA USPI Epkinly 2023, §12.1"),
    Agent("tarlatamab", BISPECIFIC, "DLL3×CD3", "INN; FDA USPI Imdelltra 2024, §12.1"),
    # Oncolytic viruses.
    Agent("talimogene laherparepvec", ONCOLYTIC_VIRUS, "HSV-1 (GM-CSF)", "INN; FDA USPI Imlygic 2015, §12.1"),
    Agent("teserpaturev", ONCOLYTIC_VIRUS, "HSV-1 (G47Δ)", "INN; PMDA approval Delytact 2021 (Japan)"),
    # Cancer vaccines.
    Agent("sipuleucel-t", CANCER_VACCINE, "PAP autologous cellular vaccine", "INN; FDA USPI Provenge 2010, §12.1"),
    # Cytokines.
    Agent("aldesleukin", CYTOKINE, "interleukin-2", "INN; WHO ATC L03AC01; FDA USPI Proleukin, §12.1"),
    Agent("interferon alfa-2b", CYTOKINE, "interferon alfa", "INN; WHO ATC L03AB05; FDA USPI Intron A, §12.1"),
    Agent("peginterferon alfa-2b", CYTOKINE, "interferon alfa", "INN; WHO ATC L03AB10; FDA USPI Sylatron, §12.1"),
    Agent("interferon alfa-2a", CYTOKINE, "interferon alfa", "INN; WHO ATC L03AB04"),
    Agent("nogapendekin alfa inbakicept", CYTOKINE, "IL-15 superagonist", "INN; FDA USPI Anktiva 2024, §12.1"),
)

ATC_CODES: dict[str, str] = {
    # Exact ATC codes (WHO ATC/DDD Index) → the INN they name; only codes quoted in the sources above.
    "L01FX04": "ipilimumab",
    "L01FX07": "blinatumomab",
    "L03AC01": "aldesleukin",
    "L03AB04": "interferon alfa-2a",
    "L03AB05": "interferon alfa-2b",
    "L03AB10": "peginterferon alfa-2b",
}

ATC_PREFIXES: tuple[tuple[str, str, str, str], ...] = (
    # (prefix, class, detail, source) — ATC 4th levels whose members are all of one class.
    (
        "L01FF",
        ICI,
        "anti-PD-1/PD-L1",
        "WHO ATC L01FF 'PD-1/PDL-1 (Programmed cell death protein 1/death ligand 1) inhibitors'",
    ),
    ("L03AC", CYTOKINE, "interleukin", "WHO ATC L03AC 'Interleukins'"),
    ("L03AB", CYTOKINE, "interferon", "WHO ATC L03AB 'Interferons'"),
)

ANTINEOPLASTIC_ATC_GROUP = "L"
"""WHO ATC anatomical main group L 'Antineoplastic and immunomodulating agents'."""

_BY_NAME = {agent.name: agent for agent in AGENTS}
_NAME_PATTERNS = tuple(
    (re.compile(r"(?<![a-z0-9])" + re.escape(agent.name).replace(r"\ ", r"[\s-]+") + r"(?![a-z0-9])"), agent)
    for agent in sorted(AGENTS, key=lambda a: -len(a.name))  # "peginterferon alfa-2b" before "interferon alfa-2b"
)


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower().replace("‐", "-"))


def classify(names: Iterable[str], atc_codes: Iterable[str] = ()) -> Classification:
    """The class of a medication from its names (text, displays) and ATC codes; never ``None``.

    ``recognised_by`` says how; an unrecognised drug is ``unclassified`` (or ``concomitant`` when an ATC code
    outside group L says it is not an anticancer drug).
    """
    text = _normalise(" ".join(n for n in names if n))
    for pattern, agent in _NAME_PATTERNS:
        if pattern.search(text):
            return Classification(agent.name, agent.therapy_class, agent.detail, "name", agent.source)
    codes = [c.strip().upper() for c in atc_codes if c and c.strip()]
    for code in codes:
        if code in ATC_CODES:
            agent = _BY_NAME[ATC_CODES[code]]
            return Classification(agent.name, agent.therapy_class, agent.detail, "atc", f"WHO ATC {code}")
    for code in codes:
        for prefix, therapy_class, detail, source in ATC_PREFIXES:
            if code.startswith(prefix):
                name = text.strip() or f"{detail} ({code})"
                return Classification(name, therapy_class, detail, "atc-class", source)
    label = text.strip() or (codes[0] if codes else "unnamed medication")
    if codes and not any(code.startswith(ANTINEOPLASTIC_ATC_GROUP) for code in codes):
        return Classification(label, CONCOMITANT, None, "atc-group", "WHO ATC: main group other than L")
    return Classification(label, UNCLASSIFIED, None, "none", "not in the immunotherapy code lists")


def class_label(therapy_class: str | None) -> str:
    return CLASS_LABELS.get(therapy_class or ICI, therapy_class or "immunotherapy")


__all__ = [
    "AGENTS",
    "ATC_CODES",
    "ATC_PREFIXES",
    "CLASS_LABELS",
    "Agent",
    "Classification",
    "class_label",
    "classify",
]
