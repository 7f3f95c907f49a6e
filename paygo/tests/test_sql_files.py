"""Rules written in SQL: each app's sql/<rule>.sql is what runs, whole.

A migration installs a rule from a frozen copy of its file kept beside the migration
(<app>/migrations/sql/NNNN_<rule>.sql, loaded by migration NNNN): the app's file must equal the
latest copy, or a change of it was never installed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.apps import apps


def _rule_files() -> list[Path]:
    return sorted(path for config in apps.get_app_configs() for path in (Path(config.path) / "sql").glob("*.sql"))


def _frozen_copies(rule: Path) -> list[Path]:
    return sorted((rule.parent.parent / "migrations" / "sql").glob(f"[0-9][0-9][0-9][0-9]_{rule.name}"))


def _name(rule: Path) -> str:
    return f"{rule.parent.parent.name}/sql/{rule.name}"


def test_the_ledger_and_the_charges_rules_are_files():
    assert {"wallets/sql/wallets_post.sql", "wallets/sql/ledger_guards.sql", "streaming/sql/charge_guards.sql"} <= {
        _name(rule) for rule in _rule_files()
    }


@pytest.mark.parametrize("rule", _rule_files(), ids=_name)
def test_a_rule_file_equals_the_latest_copy_a_migration_installs(rule):
    copies = _frozen_copies(rule)

    assert copies, f"no migration installs {_name(rule)}"
    latest = copies[-1]
    assert rule.read_text() == latest.read_text(), (
        f"{_name(rule)} differs from {latest.name}, the copy its latest migration installs: "
        "add a migration that loads a new copy of it"
    )
    number = latest.name[:4]
    (migration,) = latest.parent.parent.glob(f"{number}_*.py")
    assert f'"{latest.name}"' in migration.read_text(), f"{migration.name} does not load {latest.name}"
