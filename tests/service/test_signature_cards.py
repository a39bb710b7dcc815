"""Signature model cards (contract §9.6): validated at load, unknown keys are errors; the score's arithmetic."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from service.features.signature_cards import SignatureCardError, SignatureNotComputable, load_cards, parse_card

CARD = """\
name: test-signature
version: "1.0"
provisional: false
source:
  citation: "Author A. Journal 2020;1:1-2"
  doi: 10.1000/example
intended_population: "adults with NSCLC on anti-PD-1"
inputs:
  - feature: QCFX
    coefficient: 2.0
  - feature: TU9B
    coefficient: 0.5
    transform: zscore
    mean: 4.0
    sd: 2.0
  - feature: RNU0
    coefficient: -1.0
    transform: log
intercept: -1.0
"""


def _write(tmp_path: Path, text: str, name: str = "card.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_linear_score_worked_example(tmp_path):
    card = parse_card(_write(tmp_path, CARD))
    # -1 + 2.0 * 0.8 + 0.5 * (6 - 4) / 2 + (-1.0) * ln(e) = -1 + 1.6 + 0.5 - 1 = 0.1
    assert card.score({"QCFX": 0.8, "TU9B": 6.0, "RNU0": math.e}) == pytest.approx(0.1)
    assert "test-signature version 1.0" in card.method_text and "doi:10.1000/example" in card.method_text
    assert "PROVISIONAL" not in card.method_text


def test_logistic_output(tmp_path):
    card = parse_card(_write(tmp_path, CARD + "output: logistic\n"))
    # 1 / (1 + e^-0.1) = 0.52498
    assert card.score({"QCFX": 0.8, "TU9B": 6.0, "RNU0": math.e}) == pytest.approx(0.524979, abs=1e-6)


def test_missing_input_or_nonpositive_log_gives_no_score(tmp_path):
    card = parse_card(_write(tmp_path, CARD))
    with pytest.raises(SignatureNotComputable, match="input RNU0 is not available"):
        card.score({"QCFX": 0.8, "TU9B": 6.0})
    with pytest.raises(SignatureNotComputable, match="log transform needs a positive value"):
        card.score({"QCFX": 0.8, "TU9B": 6.0, "RNU0": 0.0})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t + "coefficients: [1]\n", r"unknown key\(s\) \['coefficients'\]"),
        (lambda t: t.replace("    coefficient: 2.0\n", "    coefficient: 2.0\n    weight: 1\n"), "unknown key"),
        (lambda t: t.replace("feature: QCFX", "feature: ABCD"), "'ABCD' is not an IBSI feature immunorad computes"),
        (lambda t: t.replace("  doi: 10.1000/example\n", ""), "non-provisional signature needs a verifiable source"),
        (lambda t: t.replace("    sd: 2.0\n", ""), r"inputs\[1\].sd must be a finite number"),
        (lambda t: t.replace("intercept: -1.0\n", ""), r"missing key\(s\) \['intercept'\]"),
        (lambda t: t.replace("provisional: false", "provisional: maybe"), "provisional must be true or false"),
        (lambda t: t.replace("name: test-signature", "name: Test Signature"), "lower-case"),
        (lambda t: t + "output: softmax\n", "output must be one of"),
    ],
)
def test_invalid_cards_are_refused_with_file_and_key(tmp_path, change, message):
    with pytest.raises(SignatureCardError, match=message) as caught:
        parse_card(_write(tmp_path, change(CARD)))
    assert str(caught.value).startswith("card.yaml: ")


def test_provisional_card_may_omit_doi(tmp_path):
    text = CARD.replace("provisional: false", "provisional: true").replace("  doi: 10.1000/example\n", "")
    card = parse_card(_write(tmp_path, text))
    assert card.provisional and "PROVISIONAL" in card.method_text


def test_shipped_cards_load_and_a_site_folder_adds_its_own(tmp_path):
    shipped = load_cards()
    assert [(c.name, c.provisional) for c in shipped] == [("example-glcm-heterogeneity", True)]
    _write(tmp_path, CARD)
    assert {c.name for c in load_cards(tmp_path)} == {"example-glcm-heterogeneity", "test-signature"}
    _write(tmp_path, CARD, "again.yaml")
    with pytest.raises(SignatureCardError, match="already defined"):
        load_cards(tmp_path)
