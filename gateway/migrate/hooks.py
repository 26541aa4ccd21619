"""`gateway migrate register-hooks`: create or update, in Okta, the hooks the migration needs.

The password import inline hook (`com.okta.user.credential.password.import`): it points at
`okta.hook_url`, authenticates with header auth (`okta.auth.header` and the FIRST of
`okta.auth.secrets`, which Okta sends back verbatim) and is ACTIVE. With
`okta.auth.oauth2.hook_client` (mode `oauth2`, or `either` during a switch-over) it gets Okta's
OAuth 2.0 channel instead: Okta asks `token_url` for a token with that client
(`client_secret_post`, or `private_key_jwt` with a hook key Okta holds) and sends it as
`Authorization: Bearer`. With `migration.event_hook`,
also the event hook: it points at `migration.event_hook.url` (default: `okta.hook_url`'s origin
plus the event hook's path), subscribes to `user.import.password` plus the events
`migration.prepare_on` and `migration.sync_on_activate` act on, and is ACTIVE and VERIFIED. Okta
verifies an event hook by calling it (a one-time GET the gateway answers), so the gateway must
be serving at that URL when this runs; otherwise the event hook line says `failed` and why.

Idempotent: a hook already as wanted is `unchanged` and nothing is written. An org holds at most
one password import hook, so an existing one with another URL or header is updated in place, and
an INACTIVE one is activated (`updated`).

Okta never returns the secret of a hook's header auth (nor an OAuth client secret), so a changed
secret cannot be seen by comparing. A secret rotation therefore needs `--force`, which sends the
channel (and the secret) again even when everything visible matches; without it a run that only
changes the secret reports `unchanged`. (Always re-sending would make every run a write, and "a
second run changes nothing" is part of the contract.) The secret is never printed or logged.

One line per hook, `<created|updated|unchanged|failed> <hook> ...`, then the last line (a
contract): `register-hooks: created=N updated=N unchanged=N failed=N`; exit 0 when failed=0.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from gateway.config import GatewayConfig
from gateway.logs import configure_logging
from gateway.migrate.settings import ACTIVATE_EVENT, IMPORT_PASSWORD_EVENT
from gateway.okta_api import OktaApiClient, OktaApiError
from gateway.okta_api.hooks import (
    PASSWORD_IMPORT_HOOK_TYPE,
    event_hook_body,
    http_channel,
    oauth_channel,
    password_import_hook_body,
)

RESULTS: Final = ("created", "updated", "unchanged", "failed")
HOOK_NAME: Final = "Okta password gateway: password import"  # Okta's display name
IMPORT_HOOK_LABEL: Final = "password-import"  # the id printed on each line
EVENT_HOOK_NAME: Final = "Okta password gateway: migration events"
EVENT_HOOK_LABEL: Final = "event-hook"

Result = Literal["created", "updated", "unchanged", "failed"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one hook's reconciliation did, and a line to print (no secret in it)."""

    result: Result
    hook: str
    detail: str

    def line(self) -> str:
        """`created password-import: https://... (id cal...)`."""
        return f"{self.result} {self.hook}: {self.detail}"


def config_problem(config: GatewayConfig) -> str | None:
    """Why this config cannot register hooks, or None."""
    if config.okta.org_url is None or config.okta.api is None:
        return "okta.org_url and okta.api (token or oauth) are needed to call Okta"
    if config.okta.hook_url is None:
        return "okta.hook_url (the public URL Okta calls) is needed to register the hook"
    oauth2 = config.okta.auth.oauth2
    if config.okta.auth.mode == "oauth2" and (oauth2 is None or oauth2.hook_client is None):
        return (
            "okta.auth.mode is oauth2: set okta.auth.oauth2.hook_client (the client Okta gets "
            "its tokens with) so that register-hooks can set up the OAuth 2.0 channel"
        )
    return None


def hook_channel(config: GatewayConfig) -> dict[str, Any]:
    """The channel the password import hook should have (secrets included: never print it).

    Okta's OAUTH channel in mode `oauth2`, and in `either` (a switch-over) when `hook_client` is
    set: adding it moves Okta to OAuth 2.0 while the gateway still takes the static secret,
    removing it moves Okta back. Otherwise header auth.
    """
    uri = config.okta.hook_url
    assert uri is not None  # config_problem checked it
    auth = config.okta.auth
    client = auth.oauth2.hook_client if auth.oauth2 is not None else None
    if auth.mode != "header" and auth.oauth2 is not None and client is not None:
        # The config allows only the credential of the client's auth_type.
        secret = client.client_secret
        return oauth_channel(
            uri,
            client_id=client.client_id,
            token_url=auth.oauth2.token_url,
            scope=auth.oauth2.token_scope,
            client_secret=None if secret is None else secret.get_secret_value(),
            hook_key_id=client.hook_key_id,
        )
    # The first secret is the current one; the others are still accepted during a rotation.
    return http_channel(uri, auth.header, auth.secrets[0].get_secret_value())


def wanted_channel(hook: dict[str, Any], config: GatewayConfig) -> bool:
    """Whether a hook Okta returned already has the wanted type, URL and authentication.

    Okta returns the header name lower-cased (and never its value, nor an OAUTH channel's client
    secret), so the name is compared case-insensitively and the secrets not at all (see the
    module docstring).
    """
    channel = hook.get("channel") or {}
    settings = channel.get("config") or {}
    if hook.get("type") != PASSWORD_IMPORT_HOOK_TYPE:
        return False
    if str(settings.get("uri", "")).rstrip("/") != config.okta.hook_url:
        return False
    wanted = hook_channel(config)
    if channel.get("type") != wanted["type"]:
        return False
    if wanted["type"] == "OAUTH":
        compared = ("authType", "clientId", "tokenUrl", "scope", "hookKeyId")
        return all(settings.get(name) == wanted["config"].get(name) for name in compared)
    scheme = settings.get("authScheme") or {}
    return (
        str(scheme.get("type", "")).upper() == "HEADER"
        and str(scheme.get("key", "")).lower() == config.okta.auth.header.lower()
    )


async def _password_import_hook(
    okta: OktaApiClient, config: GatewayConfig, *, force: bool
) -> Outcome:
    """Create, update or leave the org's one password import inline hook."""
    uri = config.okta.hook_url
    body = password_import_hook_body(HOOK_NAME, hook_channel(config))
    existing = await okta.list_inline_hooks(PASSWORD_IMPORT_HOOK_TYPE)
    if not existing:
        created = await okta.create_inline_hook(body)
        if created.get("status") != "ACTIVE":  # Okta creates it ACTIVE; make sure
            await okta.activate_inline_hook(created["id"])
        return Outcome("created", IMPORT_HOOK_LABEL, f"{uri} (id {created.get('id')})")
    # Okta allows one per org; should there be more, the first is the one this tool manages.
    hook = existing[0]
    hook_id = str(hook["id"])
    changes: list[str] = []
    if force or not wanted_channel(hook, config):
        # Partial update of the channel only: an admin's name for the hook is kept.
        await okta.update_inline_hook(hook_id, {"channel": body["channel"]})
        changes.append("channel re-sent (--force)" if force else "channel updated")
    if hook.get("status") != "ACTIVE":
        await okta.activate_inline_hook(hook_id)
        changes.append("activated")
    if not changes:
        return Outcome("unchanged", IMPORT_HOOK_LABEL, f"{uri} (id {hook_id})")
    return Outcome("updated", IMPORT_HOOK_LABEL, f"{uri} (id {hook_id}; {', '.join(changes)})")


def event_hook_url(config: GatewayConfig) -> str | None:
    """Where Okta delivers events: `migration.event_hook.url`, else next to the password hook."""
    hook = config.migration.event_hook
    if hook is None:
        return None
    if hook.url is not None:
        return hook.url.rstrip("/")
    if config.okta.hook_url is None:
        return None
    parts = urlsplit(config.okta.hook_url)
    return f"{parts.scheme}://{parts.netloc}{hook.path}"


def event_types(config: GatewayConfig) -> list[str]:
    """The event types the gateway acts on with this config, sorted."""
    wanted = {IMPORT_PASSWORD_EVENT, *config.migration.prepare_on}
    if config.migration.sync_on_activate:
        wanted.add(ACTIVATE_EVENT)
    return sorted(wanted)


def _wanted_event_hook(hook: dict[str, Any], uri: str, config: GatewayConfig) -> bool:
    """An event hook Okta returned already has the wanted URL, header name and event types."""
    assert config.migration.event_hook is not None
    settings = (hook.get("channel") or {}).get("config") or {}
    scheme = settings.get("authScheme") or {}
    items = (hook.get("events") or {}).get("items") or []
    return (
        str(settings.get("uri", "")).rstrip("/") == uri
        and str(scheme.get("type", "")).upper() == "HEADER"
        and str(scheme.get("key", "")).lower() == config.migration.event_hook.auth.header.lower()
        and sorted(items) == event_types(config)
    )


async def _event_hook(okta: OktaApiClient, config: GatewayConfig, *, force: bool) -> Outcome:
    """Create, update, activate and verify the gateway's event hook."""
    settings = config.migration.event_hook
    uri = event_hook_url(config)
    assert settings is not None and uri is not None  # _event_hook_wanted checked
    body = event_hook_body(
        EVENT_HOOK_NAME,
        uri,
        event_types(config),
        auth_header=settings.auth.header,
        auth_value=settings.auth.secrets[0].get_secret_value(),
    )
    existing = [
        hook
        for hook in await okta.list_event_hooks()
        if hook.get("name") == EVENT_HOOK_NAME
        or str(((hook.get("channel") or {}).get("config") or {}).get("uri", "")).rstrip("/") == uri
    ]
    changes: list[str] = []
    if not existing:
        hook = await okta.create_event_hook(body)
        result: Result = "created"
    else:
        hook = existing[0]
        result = "unchanged"
        if force or not _wanted_event_hook(hook, uri, config):
            # A replaced channel must be verified again (Okta resets the status).
            hook = await okta.update_event_hook(str(hook["id"]), body)
            changes.append("channel re-sent (--force)" if force else "updated")
    hook_id = str(hook["id"])
    if hook.get("status") != "ACTIVE":
        await okta.activate_event_hook(hook_id)
        changes.append("activated")
    if hook.get("verificationStatus") != "VERIFIED":
        try:
            verified = await okta.verify_event_hook(hook_id)
        except OktaApiError as error:
            return Outcome(
                "failed",
                EVENT_HOOK_LABEL,
                f"{uri} (id {hook_id}) not verified: Okta could not get the gateway's answer "
                f"at that URL; start `gateway serve` there first ({error.one_line()})",
            )
        if verified.get("verificationStatus") != "VERIFIED":
            return Outcome("failed", EVENT_HOOK_LABEL, f"{uri} (id {hook_id}) not verified")
        changes.append("verified")
    detail = f"{uri} (id {hook_id}; events {', '.join(event_types(config))})"
    if result == "created":
        return Outcome("created", EVENT_HOOK_LABEL, detail)
    if not changes:
        return Outcome("unchanged", EVENT_HOOK_LABEL, detail)
    return Outcome("updated", EVENT_HOOK_LABEL, f"{detail[:-1]}; {', '.join(changes)})")


def _event_hook_wanted(config: GatewayConfig) -> bool:
    return event_hook_url(config) is not None


# (label, reconcile(okta, config, force=...), wanted(config)) per hook, in order.
_HOOKS: Final[
    tuple[tuple[str, Callable[..., Awaitable[Outcome]], Callable[[GatewayConfig], bool]], ...]
] = (
    (IMPORT_HOOK_LABEL, _password_import_hook, lambda config: True),
    (EVENT_HOOK_LABEL, _event_hook, _event_hook_wanted),
)


async def register(config: GatewayConfig, *, force: bool = False) -> Counter[str]:
    """Reconcile every hook, printing one line each; the counts of each result."""
    from gateway.migrate.commands import okta_client

    counts: Counter[str] = Counter({name: 0 for name in RESULTS})
    async with okta_client(config) as okta:
        for label, reconcile, wanted in _HOOKS:
            if not wanted(config):
                continue
            try:
                outcome = await reconcile(okta, config, force=force)
            except OktaApiError as error:
                # one_line() names the operation and Okta's error, never a request body.
                outcome = Outcome("failed", label, error.one_line())
            counts[outcome.result] += 1
            print(outcome.line(), flush=True)
    return counts


def last_line(counts: Counter[str]) -> str:
    """`register-hooks: created=N updated=N unchanged=N failed=N`."""
    return "register-hooks: " + " ".join(f"{name}={counts[name]}" for name in RESULTS)


def main(args: argparse.Namespace) -> int:
    """`gateway migrate register-hooks`; exit 0 when no hook failed.

    `--force` (re-send the channel, for a secret rotation) is read with a default, so the
    command works before the parser offers the flag.
    """
    from gateway.cli import load_or_report

    config = load_or_report(args.config)
    if config is None:
        return 1
    problem = config_problem(config)
    if problem is not None:
        print(f"register-hooks: {problem}", file=sys.stderr)
        return 1
    configure_logging("warning", "text")
    counts = asyncio.run(register(config, force=bool(args.force)))
    print(last_line(counts))
    return 0 if counts["failed"] == 0 else 1
