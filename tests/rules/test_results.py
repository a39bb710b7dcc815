"""``percent_change``: the exact arithmetic every size criterion's thresholds are decided on (spec §0)."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from rules.results import percent_change

AMOUNTS = st.one_of(
    st.integers(-10_000, 10_000),
    st.decimals(min_value=-10_000, max_value=10_000, places=2, allow_nan=False, allow_infinity=False),
    st.fractions(min_value=-10_000, max_value=10_000, max_denominator=10_000),
)


def test_worked_example_e1_is_an_exact_30_percent_decrease():
    # E1: 63 mm from a baseline of 90 mm: (63 − 90) / 90 × 100 = −2700 / 90 = −30 exactly (PR boundary, inclusive).
    assert percent_change(Decimal("63"), Decimal("90")) == -30
    # 20 % increase over a nadir of 50.5 mm: 60.6 mm, (60.6 − 50.5) / 50.5 × 100 = 1010 / 50.5 = 20 exactly.
    assert percent_change(Decimal("60.6"), Decimal("50.5")) == 20
    assert percent_change(Decimal("10"), 0) is None


@given(value=AMOUNTS, reference=AMOUNTS)
def test_equals_the_textbook_formula_on_fractions(value, reference):
    expected = None if reference == 0 else (Fraction(value) - Fraction(reference)) / Fraction(reference) * 100
    assert percent_change(value, reference) == expected
