"""docs/CONFIGURATION.md, generated from the code so that the reference cannot drift from it.

    python -m service.ops.config_doc            # rewrite docs/CONFIGURATION.md
    python -m service.ops.config_doc --check    # exit 1 (and say why) when the committed file differs

Sources: ``service/ops/config.py`` — each ``Settings`` field read by ``load_settings`` gives a row: the environment
variable(s) ``load_settings`` reads for it, the default it yields in an environment without ``IMMUNORAD_*``
variables, and the field's docstring as the meaning — and the rule files (``rules/rulesets/*.yaml``), whose [D]
policy flags are what ``IMMUNORAD_RULE_FLAGS`` overrides. A field read from the environment without a docstring is
an error: a setting nobody can look up is a defect.
"""

from __future__ import annotations

import ast
import itertools
import os
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.ops import config

REPO = Path(__file__).resolve().parents[2]
OUTPUT = REPO / "docs" / "CONFIGURATION.md"
COMMAND = "python -m service.ops.config_doc"
ENV_NAME = re.compile(r"^IMMUNORAD_[A-Z0-9_]+$")
# "IMMUNORAD_X (default ``y``, contract §2): meaning" → "meaning"; the default column comes from the code.
DOC_PREFIX = re.compile(r"^IMMUNORAD_[A-Z0-9_]+(?:\s*\((?:[^()]|\([^()]*\))*\))?\s*[:.]?\s*")


class ConfigDocError(ValueError):
    """service/ops/config.py cannot be documented as it stands (e.g. a setting without a docstring)."""


@dataclass(frozen=True)
class SettingDoc:
    variables: tuple[str, ...]
    default: str
    meaning: str


def _field_docstrings(settings_class: ast.ClassDef) -> dict[str, str]:
    """Attribute docstrings: the string literal that follows a field's annotated assignment."""
    docs: dict[str, str] = {}
    body = settings_class.body
    for statement, following in itertools.pairwise(body):
        if (
            isinstance(statement, ast.AnnAssign)
            and isinstance(statement.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[statement.target.id] = following.value.value
    return docs


def _variables_read(expression: ast.AST, local_values: Mapping[str, ast.AST]) -> Iterator[str]:
    """The IMMUNORAD_* names an expression reads; through local variables only when it names none itself
    (``database_url`` reads IMMUNORAD_DATABASE_URL; its default merely uses ``var_dir``)."""
    direct = [
        node.value
        for node in ast.walk(expression)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and ENV_NAME.match(node.value)
    ]
    if direct:
        yield from direct
        return
    for node in ast.walk(expression):
        if isinstance(node, ast.Name) and node.id in local_values:
            yield from _variables_read(local_values[node.id], local_values)


def _environment_of_fields(load_function: ast.FunctionDef) -> dict[str, tuple[str, ...]]:
    """Settings field → the IMMUNORAD_* variables ``load_settings`` reads for it (through local variables too)."""
    local_values: dict[str, ast.AST] = {}
    fields: dict[str, tuple[str, ...]] = {}
    for node in ast.walk(load_function):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            local_values[node.targets[0].id] = node.value
    for node in ast.walk(load_function):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Settings":
            for keyword in node.keywords:
                names = tuple(dict.fromkeys(_variables_read(keyword.value, local_values)))
                if keyword.arg and names:
                    fields[keyword.arg] = names
    return fields


def _defaults() -> config.Settings:
    """What ``load_settings`` yields when no IMMUNORAD_* variable is set."""
    saved = {name: os.environ.pop(name) for name in list(os.environ) if name.startswith("IMMUNORAD_")}
    try:
        return config.load_settings()
    finally:
        os.environ.update(saved)


def _show(value: Any) -> str:
    if value is None or value == "":
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, (tuple, list)):
        if not value:
            return "empty"
        return "`" + ",".join("|".join(item) if isinstance(item, tuple) else str(item) for item in value) + "`"
    if isinstance(value, dict):
        return "empty" if not value else "`" + ",".join(f"{k}={v}" for k, v in value.items()) + "`"
    return f"`{value}`"


def _markdown_text(text: str) -> str:
    """A docstring as one table cell: reStructuredText literals to Markdown, one line, pipes escaped."""
    text = " ".join(text.split()).replace("``", "`")
    return text.replace("|", "\\|")


def setting_docs(source: Path = Path(config.__file__)) -> list[SettingDoc]:
    """One row per setting of ``source`` (service/ops/config.py); defaults are computed by the imported module."""
    tree = ast.parse(source.read_text(encoding="utf-8"))
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    docstrings = _field_docstrings(classes["Settings"])
    environment = _environment_of_fields(functions["load_settings"])
    defaults = _defaults()
    rows = []
    undocumented = []
    for field_name, variables in environment.items():
        meaning = DOC_PREFIX.sub("", " ".join(docstrings.get(field_name, "").split()), count=1)
        if not meaning:
            undocumented.append(f"Settings.{field_name} ({', '.join(variables)})")
            continue
        default = _markdown_text(_show(getattr(defaults, field_name)))
        rows.append(SettingDoc(variables, default, _markdown_text(meaning)))
    if undocumented:
        raise ConfigDocError(
            f"{source.name}: these settings have no docstring saying what they do: " + "; ".join(undocumented)
        )
    return sorted(rows, key=lambda row: row.variables)


def _rule_flag_rows() -> list[tuple[str, str, str]]:
    from rules.engine import load_rulebase

    rows = []
    for ruleset in load_rulebase().rulesets.values():
        for flag in ruleset.flags.values():
            rows.append((f"{ruleset.flag_prefix}.{flag.name}", _show(flag.default), _markdown_text(flag.source)))
    return sorted(rows, key=lambda row: row[0].lower())


def render() -> str:
    lines = [
        "# Configuration reference",
        "",
        f"Generated by `{COMMAND}` from `service/ops/config.py` (the `Settings` fields and `load_settings`) and from the",
        "rule files (`rules/rulesets/*.yaml`). Do not edit it by hand: change the code, then run the command.",
        "`tests/service/test_config_doc.py` fails when this file differs from what the code generates.",
        "",
        "Every setting is an optional environment variable. Booleans accept `1`, `true`, `yes`, `on` (anything else",
        "is false); lists are comma-separated. The interface these settings belong to is `docs/contract.md` (§2 and",
        "§9).",
        "",
        "## Service settings",
        "",
        "| variable | default | meaning |",
        "|---|---|---|",
    ]
    for row in setting_docs():
        variables = " / ".join(f"`{name}`" for name in row.variables)
        lines.append(f"| {variables} | {row.default} | {row.meaning} |")
    lines += [
        "",
        "## Clinical policy flags (`IMMUNORAD_RULE_FLAGS`)",
        "",
        "Every [D] policy of the clinical docs is a flag of its rule file. `IMMUNORAD_RULE_FLAGS` overrides them as",
        "comma-separated `flag=value` pairs, e.g. `recist.sticky_pr=false,irecist.nl_reset_min_decrease_mm=5`",
        '(values `true`/`false`, numbers, or text). In the reasons below, "spec §N" is a section of',
        "`docs/clinical/criteria-size-pet.md` or `docs/clinical/criteria-kinetics-irae.md`.",
        "",
        "| flag | default | why |",
        "|---|---|---|",
    ]
    for name, default, source in _rule_flag_rows():
        lines.append(f"| `{name}` | {default} | {source} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = render()
    if "--check" in args:
        if not OUTPUT.exists() or OUTPUT.read_text(encoding="utf-8") != text:
            print(f"{OUTPUT.relative_to(REPO)} is out of date: run `{COMMAND}` and commit it", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
