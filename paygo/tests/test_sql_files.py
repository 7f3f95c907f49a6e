"""Rules written in SQL: each app's sql/<rule>.sql is what runs, whole.

A migration installs a rule from a frozen copy of its file kept beside the migration
(<app>/migrations/sql/NNNN_<rule>.sql, loaded by migration NNNN): the app's file must equal the
latest copy, or a change of it was never installed. A copy, once committed, never changes: a
database that ran its migration keeps what the copy said then, whatever it says later. Each app's
migrations/sql/SHA256SUMS holds every copy's sha256 (`sha256sum` format); a new copy adds its line.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from django.apps import apps


def _rule_files() -> list[Path]:
    return sorted(path for config in apps.get_app_configs() for path in (Path(config.path) / "sql").glob("*.sql"))


def _frozen_copies(rule: Path) -> list[Path]:
    return sorted((rule.parent.parent / "migrations" / "sql").glob(f"[0-9][0-9][0-9][0-9]_{rule.name}"))


def _name(rule: Path) -> str:
    return f"{rule.parent.parent.name}/sql/{rule.name}"


def _frozen_folders() -> list[Path]:
    return sorted(
        folder for config in apps.get_app_configs() if (folder := Path(config.path) / "migrations" / "sql").is_dir()
    )


def _app_name(folder: Path) -> str:
    return folder.parent.parent.name


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


@pytest.mark.parametrize("folder", _frozen_folders(), ids=_app_name)
def test_a_frozen_copy_never_changes_once_committed(folder):
    where = f"{_app_name(folder)}/migrations/sql"
    manifest = folder / "SHA256SUMS"
    assert manifest.is_file(), f"{where} has no SHA256SUMS: list its copies' sha256 in it"
    recorded = dict(reversed(line.split(maxsplit=1)) for line in manifest.read_text().splitlines())
    actual = {copy.name: hashlib.sha256(copy.read_bytes()).hexdigest() for copy in folder.glob("*.sql")}

    changed = sorted(name for name in recorded.keys() & actual.keys() if recorded[name] != actual[name])
    unlisted = sorted(actual.keys() - recorded.keys())
    gone = sorted(recorded.keys() - actual.keys())
    assert changed == [], (
        f"{', '.join(changed)} in {where} changed after it was committed: a database that ran its migration "
        "keeps the text it had then. Put it back, and add a migration with a new frozen copy instead"
    )
    assert unlisted == [], f"add the sha256 of {', '.join(unlisted)} to {where}/SHA256SUMS (sha256sum NNNN_<rule>.sql)"
    assert gone == [], f"{', '.join(gone)}, listed in {where}/SHA256SUMS, is gone: a migration loads it"
