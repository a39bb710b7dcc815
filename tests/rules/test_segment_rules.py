"""rules.segment_codes (what a SEG segment is) and rules.body_composition (which slice is L3)."""

from __future__ import annotations

from rules.body_composition import choose_l3_slice
from rules.segment_codes import classify


def test_lesion_tumour_and_neoplasm_codes_make_lesion_segments():
    for code in (("SCT", "52988006"), ("SCT", "4147007"), ("SCT", "108369006"), ("SRT", "M-01100")):
        assert classify(code).kind == "lesion"


def test_body_composition_codes_and_l3():
    assert classify(("SCT", "127954009")).kind == "skeletal-muscle"
    assert classify(("SCT", "71966008")).kind == "subcutaneous-adipose-tissue"
    assert classify(("99IMMRAD", "visceral-adipose-tissue")).kind == "visceral-adipose-tissue"
    assert classify(("SCT", "36470004")).kind == "l3-vertebra"


def test_anything_else_is_other_and_kept():
    assert classify(("SCT", "10200004")).kind == "other"  # Liver
    assert classify(None).kind == "other"


def test_l3_slice_is_the_middle_of_the_vertebra_segment():
    # slices 4..8 hold L3: five slices, the middle one is 6
    assert choose_l3_slice([4, 5, 6, 7, 8], range(0, 12)).slice_index == 6
    # an even count takes the lower middle: 4..7 → (4 − 1) // 2 = index 1 of [4, 5, 6, 7] → 5
    assert choose_l3_slice([4, 5, 6, 7], range(0, 12)).slice_index == 5
    assert choose_l3_slice([9], range(0, 12)).slice_index == 9


def test_without_a_vertebra_only_a_single_slice_seg_has_an_l3_slice():
    assert choose_l3_slice([], [17]).slice_index == 17
    two = choose_l3_slice([], [17, 18])
    assert two.slice_index is None and "not identified" in two.rule
    assert choose_l3_slice([], []).slice_index is None
