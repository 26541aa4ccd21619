"""Optional extras: a configured part whose extra is not installed is a config problem naming pip."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import subprocess
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from gateway.cli import main
from gateway.config import ConfigError, parse_config
from tests.conftest import HOOK_PATH, HOOK_SECRET

ROOT = Path(__file__).resolve().parents[2]
LDAP_LINE = (
    "sources[0].type: ldap needs the ldap extra: pip install 'okta-password-gateway[ldap]' "
    "(python-ldap builds from source: apt-get install libldap-dev libsasl2-dev gcc "
    "python3-dev first)"
)
# What the extras bring, as top-level modules: pip installs none of them with the base install.
EXTRA_MODULES = ("ldap", "passlib", "bcrypt", "argon2", "asyncpg")


class _Absent(importlib.abc.MetaPathFinder):
    """Answers as if the named top-level modules were not installed (an install without extras)."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = frozenset(names)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


Uninstall = Callable[..., None]


@pytest.fixture
def uninstall(monkeypatch: pytest.MonkeyPatch) -> Uninstall:
    """Make the given top-level modules unimportable for one test, as if pip never installed them."""

    def hide(*names: str) -> None:
        for loaded in list(sys.modules):
            if loaded.partition(".")[0] in names:
                monkeypatch.delitem(sys.modules, loaded)
        monkeypatch.setattr(sys, "meta_path", [_Absent(names), *sys.meta_path])

    return hide


def config_text(sources: list[dict[str, Any]], **top: Any) -> str:
    """A gateway config with the given sources, each routed for its own domain."""
    config: dict[str, Any] = {
        "okta": {"hook_path": HOOK_PATH, "auth": {"secrets": [HOOK_SECRET]}},
        "sources": sources,
        "routes": [
            {"match": {"domains": [f"{s['name']}.example"]}, "sources": [s["name"]]}
            for s in sources
        ],
    }
    config.update(top)
    return yaml.safe_dump(config)


def problems(text: str) -> list[str]:
    """The config errors of a config text, as `path: message` lines."""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, env={})
    return caught.value.lines()


LDAP_SOURCE = {
    "name": "corp",
    "type": "ldap",
    "url": "ldaps://dc1.corp.example:636",
    "bind": {"mode": "direct"},
}


def hashed_export_source(tmp_path: Path) -> dict[str, Any]:
    """A `hashed_export` source reading a one-user bcrypt export."""
    export = tmp_path / "users.csv"
    export.write_text(
        "username,hash\nada@files.example,$2b$04$abcdefghijklmnopqrstuu5QVXtQmGpe6yxpsd8F1Q7dsKA1Pwx3W\n",
        encoding="utf-8",
    )
    return {"name": "files", "type": "hashed_export", "file": str(export)}


def test_ldap_source_without_the_ldap_extra_names_pip_and_the_debian_packages(
    uninstall: Uninstall,
) -> None:
    uninstall("ldap")
    assert problems(config_text([LDAP_SOURCE])) == [LDAP_LINE]


def test_missing_extra_is_reported_at_the_sources_own_index(uninstall: Uninstall) -> None:
    uninstall("ldap")
    entra = {
        "name": "entra",
        "type": "azure_ad",
        "tenant_id": "11111111-2222-3333-4444-555555555555",
        "client_id": "app",
        "client_secret": "s",
    }
    lines = problems(config_text([entra, LDAP_SOURCE]))
    assert lines == [LDAP_LINE.replace("sources[0]", "sources[1]")]


def test_hashed_export_source_without_one_hash_library_names_the_hashes_extra(
    uninstall: Uninstall, tmp_path: Path
) -> None:
    # libpass alone is not the extra: bcrypt hashes would fail at the first sign-in.
    uninstall("bcrypt")
    assert problems(config_text([hashed_export_source(tmp_path)])) == [
        "sources[0].type: hashed_export needs the hashes extra: "
        "pip install 'okta-password-gateway[hashes]'"
    ]


def test_source_without_its_extra_is_not_reported_again_as_unknown_by_migration(
    uninstall: Uninstall, tmp_path: Path
) -> None:
    uninstall("passlib")
    text = config_text([hashed_export_source(tmp_path)], migration={"sources": {"files": {}}})
    assert problems(text) == [
        "sources[0].type: hashed_export needs the hashes extra: "
        "pip install 'okta-password-gateway[hashes]'"
    ]


def test_postgresql_ledger_without_the_postgres_extra_names_pip(uninstall: Uninstall) -> None:
    uninstall("asyncpg")
    text = config_text(
        [LDAP_SOURCE], migration={"ledger": "postgresql://gateway@127.0.0.1:5432/ledger"}
    )
    assert problems(text) == [
        "migration.ledger: a PostgreSQL ledger needs the postgres extra: "
        "pip install 'okta-password-gateway[postgres]'"
    ]


def test_sqlite_ledger_needs_no_extra(uninstall: Uninstall, tmp_path: Path) -> None:
    uninstall(*EXTRA_MODULES)
    entra = {
        "name": "entra",
        "type": "azure_ad",
        "tenant_id": "11111111-2222-3333-4444-555555555555",
        "client_id": "app",
        "client_secret": "s",
    }
    text = config_text([entra], migration={"ledger": f"sqlite:///{tmp_path / 'ledger.db'}"})
    assert parse_config(text, env={}).migration.ledger is not None


def test_check_config_prints_the_install_command_and_fails(
    uninstall: Uninstall, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uninstall("ldap")
    path = tmp_path / "config.yaml"
    path.write_text(config_text([LDAP_SOURCE]), encoding="utf-8")
    assert main(["check-config", "-c", str(path)]) == 1
    assert f"  {LDAP_LINE}\n" in capsys.readouterr().err


def test_base_modules_import_and_the_sample_config_loads_without_any_extra() -> None:
    # A fresh interpreter, so modules this session already imported are imported again.
    script = textwrap.dedent(
        f"""
        import importlib, importlib.abc, pkgutil, sys

        class Absent(importlib.abc.MetaPathFinder):
            def find_spec(self, fullname, path, target=None):
                if fullname.partition(".")[0] in {EXTRA_MODULES!r}:
                    raise ModuleNotFoundError(fullname, name=fullname)
                return None

        sys.meta_path.insert(0, Absent())
        # The extras' own modules, the test-only emulators and the demo built on them, and
        # Alembic's scripts (run by Alembic, not imported) are all that may need more.
        skip = ("plugins.ldap", "plugins.hashed_export", "plugins.password_hashes",
                "gateway.emulators", "gateway.demo", "gateway.ledger.migrations")
        for package in ("gateway", "plugins"):
            for info in pkgutil.walk_packages([package], package + "."):
                if not info.name.startswith(skip):
                    importlib.import_module(info.name)
        from gateway.config import load_config
        load_config("config.yaml", env={{
            "OKTA_HOOK_SECRET": "x" * 32,
            "AZURE_TENANT_ID": "11111111-2222-3333-4444-555555555555",
            "AZURE_CLIENT_ID": "app",
            "AZURE_CLIENT_SECRET": "s",
        }})
        print("imported", len([m for m in sys.modules if m.startswith(("gateway", "plugins"))]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("imported ")
