"""docs/CONFIGURATION.md is what ``python -m service.ops.config_doc`` generates from service/ops/config.py and the rule files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.ops import config, config_doc


def test_the_committed_reference_is_the_generated_one():
    committed = config_doc.OUTPUT.read_text(encoding="utf-8")
    assert committed == config_doc.render(), (
        "docs/CONFIGURATION.md is out of date: run `python -m service.ops.config_doc` and commit it"
    )


def test_every_variable_config_reads_is_documented():
    source = Path(config.__file__).read_text(encoding="utf-8")
    read = set(re.findall(r'"(IMMUNORAD_[A-Z0-9_]+)"', source))
    documented = {name for row in config_doc.setting_docs() for name in row.variables}
    assert read == documented
    # The contract's own variables (docs/contract.md §2) are among them.
    assert {"IMMUNORAD_DATABASE_URL", "IMMUNORAD_API_TOKEN", "IMMUNORAD_RULE_FLAGS"} <= documented


def test_defaults_are_those_of_an_empty_environment(monkeypatch):
    monkeypatch.setenv("IMMUNORAD_HTTP_PORT", "9999")
    rows = {row.variables: row for row in config_doc.setting_docs()}
    assert rows[("IMMUNORAD_HTTP_PORT",)].default == "`8080`"
    assert rows[("IMMUNORAD_API_TOKEN",)].default == "unset"
    assert rows[("IMMUNORAD_CDS_ISSUERS",)].default == "empty"


def test_rule_flags_are_listed_with_their_defaults():
    text = config_doc.render()
    assert "| `recist.sticky_pr` | `true` |" in text
    assert "| `irecist.nl_reset_min_decrease_mm` | `5` |" in text


def test_a_setting_without_a_docstring_is_an_error(tmp_path):
    source = Path(config.__file__).read_text(encoding="utf-8")
    stripped = re.sub(r'(    http_port: int = 8080\n)    """[^"]*"""\n', r"\1", source)
    assert stripped != source
    copy = tmp_path / "config.py"
    copy.write_text(stripped, encoding="utf-8")
    with pytest.raises(config_doc.ConfigDocError, match=r"Settings\.http_port \(IMMUNORAD_HTTP_PORT\)"):
        config_doc.setting_docs(copy)
