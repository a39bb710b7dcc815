"""The fuzzers' seeds: the OHIF/dcmjs producer files are among them, and a missing copy is an error.

A glob over a missing folder yields nothing, so without this check a clone that lost
tests/fixtures/ohif-dcmjs would fuzz without its only third-party seeds and still pass.
"""

from __future__ import annotations

import shutil

import pytest

from tests.fuzz.dicom_cases import FIXTURES, fixture_files, seeds


def test_the_ohif_fixture_files_are_seeds():
    names = [name for name, _ in seeds()]
    ohif = [name for name in names if name.startswith("ohif-")]
    # tests/fixtures/ohif-dcmjs/README.md: six CT slices (images/) and four reports (sr/).
    assert len(ohif) == 10
    assert "ohif-sr-baseline_dcmjs-adapter" in ohif and "ohif-images-followup_ct_3" in ohif


def test_a_missing_fixture_folder_fails_loudly(tmp_path):
    with pytest.raises(FileNotFoundError, match="expected"):
        fixture_files(tmp_path / "ohif-dcmjs")


def test_an_incomplete_fixture_folder_fails_loudly(tmp_path):
    copy = tmp_path / "ohif-dcmjs"
    shutil.copytree(FIXTURES, copy)
    (copy / "sr" / "followup_cornerstone-adapters.dcm").unlink()
    with pytest.raises(FileNotFoundError, match="'sr': 3"):
        fixture_files(copy)
    assert len(fixture_files(FIXTURES)) == 10
