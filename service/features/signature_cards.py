"""Signature model cards (contract §9.6 "Signatures"): a radiomic or clinical score declared in YAML, no code.

A card (``service/features/signatures/*.yaml``, plus ``IMMUNORAD_SIGNATURES_DIR`` for a site's own) is validated at load —
an unknown key, a feature we do not compute, a missing coefficient or a non-provisional card without a verifiable
source is an error that names the file and the key, and the service refuses to start with it. Format
(docs/SIGNATURES.md)::

    name: ...                 # required, [a-z0-9-]+
    version: "1.0"            # required
    provisional: true         # required: true unless the coefficients are published with a verifiable source
    source:                   # required: citation; doi or url required when provisional is false
      citation: "..."
      doi: "..."
      url: "..."
    intended_population: "..."  # required: who the signature was developed and validated in
    description: "..."        # optional
    inputs:                   # required, at least one
      - feature: TU9B         # an IBSI feature identifier we compute (service/features/radiomics.py FEATURES) ...
        coefficient: 0.8
        transform: zscore     # none (default) | log | zscore (then mean and sd are required)
        mean: 2.1
        sd: 0.4
    intercept: -0.2           # required
    output: logistic          # linear (default): intercept + sum(coefficient * x); logistic: 1 / (1 + e^-linear)

The score is computed by :func:`score` from one lesion's features; a missing input means no score (with the reason).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from service.features.radiomics import FEATURES

SHIPPED = Path(__file__).resolve().parent / "signatures"
KNOWN_FEATURES = frozenset(f.ibsi_id for f in FEATURES)
_CARD_KEYS = {
    "name",
    "version",
    "provisional",
    "source",
    "intended_population",
    "description",
    "inputs",
    "intercept",
    "output",
}
_REQUIRED = {"name", "version", "provisional", "source", "intended_population", "inputs", "intercept"}
_SOURCE_KEYS = {"citation", "doi", "url"}
_INPUT_KEYS = {"feature", "coefficient", "transform", "mean", "sd"}
_TRANSFORMS = {"none", "log", "zscore"}
_OUTPUTS = {"linear", "logistic"}


class SignatureCardError(ValueError):
    """A model card that does not validate; the message names the file and the key."""


class SignatureNotComputable(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SignatureInput:
    feature: str
    coefficient: float
    transform: str = "none"
    mean: float | None = None
    sd: float | None = None

    def value(self, x: float) -> float:
        if self.transform == "log":
            if x <= 0:
                raise SignatureNotComputable(f"{self.feature} = {x:g}: the log transform needs a positive value")
            return math.log(x)
        if self.transform == "zscore" and self.mean is not None and self.sd is not None:
            return (x - self.mean) / self.sd
        return x


@dataclass(frozen=True)
class SignatureCard:
    name: str
    version: str
    provisional: bool
    citation: str
    doi: str | None
    url: str | None
    intended_population: str
    description: str | None
    inputs: tuple[SignatureInput, ...]
    intercept: float
    output: str
    path: str

    @property
    def method_text(self) -> str:
        where = f" doi:{self.doi}" if self.doi else (f" {self.url}" if self.url else "")
        flag = " [PROVISIONAL: coefficients not validated; not for clinical use]" if self.provisional else ""
        return f"signature {self.name} version {self.version}; source: {self.citation}{where}{flag}"

    def score(self, features: Mapping[str, float]) -> float:
        total = self.intercept
        for item in self.inputs:
            if item.feature not in features:
                raise SignatureNotComputable(f"input {item.feature} is not available")
            x = features[item.feature]
            if not math.isfinite(x):
                raise SignatureNotComputable(f"input {item.feature} is not a finite number")
            total += item.coefficient * item.value(x)
        if self.output == "logistic":
            return 1.0 / (1.0 + math.exp(-total))
        return total


def _fail(path: Path, message: str) -> SignatureCardError:
    return SignatureCardError(f"{path.name}: {message}")


def _number(path: Path, where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(path, f"{where} must be a finite number, not {value!r}")
    return float(value)


def _text(path: Path, where: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, f"{where} must be non-empty text")
    return value.strip()


def parse_card(path: Path) -> SignatureCard:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise _fail(path, f"not YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise _fail(path, "a model card is a mapping")
    unknown = set(data) - _CARD_KEYS
    if unknown:
        raise _fail(path, f"unknown key(s) {sorted(unknown)}; allowed: {sorted(_CARD_KEYS)}")
    missing = _REQUIRED - set(data)
    if missing:
        raise _fail(path, f"missing key(s) {sorted(missing)}")
    name = _text(path, "name", data["name"])
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
        raise _fail(path, f"name {name!r}: lower-case letters, digits and '-' only")
    if not isinstance(data["provisional"], bool):
        raise _fail(path, "provisional must be true or false")
    source = data["source"]
    if not isinstance(source, dict):
        raise _fail(path, "source must be a mapping with citation (and doi or url)")
    if set(source) - _SOURCE_KEYS:
        raise _fail(path, f"unknown key(s) in source {sorted(set(source) - _SOURCE_KEYS)}")
    citation = _text(path, "source.citation", source.get("citation"))
    doi = _text(path, "source.doi", source["doi"]) if "doi" in source else None
    url = _text(path, "source.url", source["url"]) if "url" in source else None
    if not data["provisional"] and not (doi or url):
        raise _fail(path, "a non-provisional signature needs a verifiable source (source.doi or source.url)")
    raw_inputs = data["inputs"]
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise _fail(path, "inputs must be a non-empty list")
    inputs = []
    for index, item in enumerate(raw_inputs):
        where = f"inputs[{index}]"
        if not isinstance(item, dict):
            raise _fail(path, f"{where} must be a mapping")
        if set(item) - _INPUT_KEYS:
            raise _fail(path, f"unknown key(s) in {where}: {sorted(set(item) - _INPUT_KEYS)}")
        feature = _text(path, f"{where}.feature", item.get("feature"))
        if feature not in KNOWN_FEATURES:
            raise _fail(path, f"{where}.feature {feature!r} is not an IBSI feature immunorad computes")
        transform = item.get("transform", "none")
        if transform not in _TRANSFORMS:
            raise _fail(path, f"{where}.transform must be one of {sorted(_TRANSFORMS)}")
        mean = sd = None
        if transform == "zscore":
            mean = _number(path, f"{where}.mean", item.get("mean"))
            sd = _number(path, f"{where}.sd", item.get("sd"))
            if sd <= 0:
                raise _fail(path, f"{where}.sd must be positive")
        elif "mean" in item or "sd" in item:
            raise _fail(path, f"{where}: mean and sd belong to the zscore transform")
        inputs.append(
            SignatureInput(feature, _number(path, f"{where}.coefficient", item.get("coefficient")), transform, mean, sd)
        )
    output = data.get("output", "linear")
    if output not in _OUTPUTS:
        raise _fail(path, f"output must be one of {sorted(_OUTPUTS)}")
    return SignatureCard(
        name=name,
        version=_text(path, "version", str(data["version"])),
        provisional=data["provisional"],
        citation=citation,
        doi=doi,
        url=url,
        intended_population=_text(path, "intended_population", data["intended_population"]),
        description=data.get("description"),
        inputs=tuple(inputs),
        intercept=_number(path, "intercept", data["intercept"]),
        output=output,
        path=str(path),
    )


def load_cards(extra_dir: str | Path | None = None) -> tuple[SignatureCard, ...]:
    """Every card shipped and in ``extra_dir``; two cards with the same name and version are an error."""
    paths = sorted(SHIPPED.glob("*.yaml"))
    if extra_dir:
        folder = Path(extra_dir)
        if not folder.is_dir():
            raise SignatureCardError(f"IMMUNORAD_SIGNATURES_DIR {folder} is not a folder")
        paths += sorted(folder.glob("*.yaml"))
    cards: dict[tuple[str, str], SignatureCard] = {}
    for path in paths:
        card = parse_card(path)
        key = (card.name, card.version)
        if key in cards:
            raise _fail(
                path, f"signature {card.name} {card.version} is already defined in {Path(cards[key].path).name}"
            )
        cards[key] = card
    return tuple(cards.values())
