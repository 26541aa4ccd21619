"""Optional extras of the install: the modules each brings, and the sentence naming its pip line.

The base install is pure wheels; python-ldap (a C build), the hash libraries and asyncpg come with
extras. A configured part whose extra is missing is found here, before anything imports it, so
`check-config`, `serve` and reload report it at its config path instead of an ImportError.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

DISTRIBUTION = "okta-password-gateway"


@dataclass(frozen=True, slots=True)
class Extra:
    """One `[extra]` of pyproject.toml: the top-level modules it installs and what its build needs."""

    name: str
    modules: tuple[str, ...]
    build_note: str = ""


# Keep in step with [project.optional-dependencies] in pyproject.toml.
EXTRAS: dict[str, Extra] = {
    "ldap": Extra(
        "ldap",
        ("ldap",),  # python-ldap ships no wheels: pip compiles it against libldap and libsasl2
        "python-ldap builds from source: apt-get install libldap-dev libsasl2-dev gcc "
        "python3-dev first",
    ),
    "hashes": Extra("hashes", ("passlib", "bcrypt", "argon2")),  # libpass installs `passlib`
    "postgres": Extra("postgres", ("asyncpg",)),
}


def missing_extra(extra_name: str, needed_by: str) -> str | None:
    """The problem sentence when the extra's modules are not all installed; None when they are."""
    extra = EXTRAS[extra_name]
    if all(_installed(module) for module in extra.modules):
        return None
    sentence = (
        f"{needed_by} needs the {extra.name} extra: pip install '{DISTRIBUTION}[{extra.name}]'"
    )
    return f"{sentence} ({extra.build_note})" if extra.build_note else sentence


def _installed(module: str) -> bool:
    """Whether `module` can be imported, found without importing it (and so without its cost)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or half-removed install is not an install
        return False
