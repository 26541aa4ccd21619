"""Which class implements each source `type`: a built-in table, then the `gateway.plugins` entry points."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from plugins.base import Source
from plugins.extras import missing_extra

ENTRY_POINT_GROUP = "gateway.plugins"

# type -> "module:Class". Modules are imported only when a source of that type is configured.
BUILTIN_TYPES: dict[str, str] = {
    "azure_ad": "plugins.azure_ad:AzureAdSource",
    "ldap": "plugins.ldap:LdapSource",
    "okta_org": "plugins.okta_org:OktaOrgSource",
    "oauth2_password": "plugins.oauth2_password:OAuth2PasswordSource",
    "hashed_export": "plugins.hashed_export:HashedExportSource",
}
# Built-in types whose libraries come with an optional extra (pyproject.toml), checked before the
# module is imported so a missing extra is a config problem, not an ImportError.
BUILTIN_EXTRAS: dict[str, str] = {"ldap": "ldap", "hashed_export": "hashes"}


class UnknownSourceType(LookupError):
    """No built-in type and no installed plugin has this name."""


class MissingExtra(LookupError):
    """A built-in type whose optional extra is not installed; the message names the pip line."""


def available_types() -> list[str]:
    """Every type name that `source_class` can resolve, built-ins first."""
    extra = sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    return list(BUILTIN_TYPES) + [name for name in extra if name not in BUILTIN_TYPES]


def source_class(type_name: str) -> type[Source]:
    """Import and return the class for a source type; `MissingExtra` when its extra is absent."""
    target = BUILTIN_TYPES.get(type_name)
    extra = BUILTIN_EXTRAS.get(type_name)
    problem = None if extra is None else missing_extra(extra, type_name)
    if problem is not None:
        raise MissingExtra(problem)
    if target is None:
        matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == type_name]
        if not matches:
            raise UnknownSourceType(type_name)
        loaded = matches[0].load()
    else:
        module_name, _, attr = target.partition(":")
        loaded = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(loaded, type) and issubclass(loaded, Source)):
        raise UnknownSourceType(f"{type_name} does not name a plugins.base.Source subclass")
    return loaded
