"""`gateway migrate register-hooks`: create or update, in Okta, the hooks the migration needs.

Today that is the password import inline hook (`com.okta.user.credential.password.import`):
it points at `okta.hook_url`, authenticates with header auth (`okta.auth.header` and the FIRST of
`okta.auth.secrets`, which Okta sends back verbatim) and is ACTIVE. The event hook comes with the
progress issue (`migration.event_hook: {path, auth}`): it slots in as a second entry of `_HOOKS`,
a coroutine that reconciles one hook and returns its `Outcome`, like `_password_import_hook`.

Idempotent: a hook already as wanted is `unchanged` and nothing is written. An org holds at most
one password import hook, so an existing one with another URL or header is updated in place, and
an INACTIVE one is activated (`updated`).

Okta never returns the secret of a hook's header auth, so a changed secret cannot be seen by
comparing. A secret rotation therefore needs `--force`, which sends the channel (and the secret)
again even when everything visible matches; without it a run that only changes the secret
reports `unchanged`. (Always re-sending would make every run a write, and "a second run changes
nothing" is part of the contract.) The secret is never printed or logged.

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

from gateway.config import GatewayConfig
from gateway.logs import configure_logging
from gateway.okta_api import OktaApiClient, OktaApiError
from gateway.okta_api.hooks import PASSWORD_IMPORT_HOOK_TYPE, password_import_hook_body

RESULTS: Final = ("created", "updated", "unchanged", "failed")
HOOK_NAME: Final = "Okta password gateway: password import"  # Okta's display name
IMPORT_HOOK_LABEL: Final = "password-import"  # the id printed on each line

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
    return None


def wanted_channel(hook: dict[str, Any], config: GatewayConfig) -> bool:
    """Whether a hook Okta returned already has the wanted type, URL and auth header name.

    Okta returns the header name lower-cased (and never its value), so the name is compared
    case-insensitively and the secret not at all (see the module docstring).
    """
    channel = hook.get("channel") or {}
    settings = channel.get("config") or {}
    scheme = settings.get("authScheme") or {}
    return (
        hook.get("type") == PASSWORD_IMPORT_HOOK_TYPE
        and channel.get("type") == "HTTP"
        and str(settings.get("uri", "")).rstrip("/") == config.okta.hook_url
        and str(scheme.get("type", "")).upper() == "HEADER"
        and str(scheme.get("key", "")).lower() == config.okta.auth.header.lower()
    )


async def _password_import_hook(
    okta: OktaApiClient, config: GatewayConfig, *, force: bool
) -> Outcome:
    """Create, update or leave the org's one password import inline hook."""
    uri = config.okta.hook_url
    assert uri is not None  # config_problem checked it
    body = password_import_hook_body(
        HOOK_NAME,
        uri,
        auth_header=config.okta.auth.header,
        # The first secret is the current one; the others are still accepted during a rotation.
        auth_value=config.okta.auth.secrets[0].get_secret_value(),
    )
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


# (label, reconcile(okta, config, force=...)) per hook, in order; the progress issue's event
# hook is appended here.
_HOOKS: Final[tuple[tuple[str, Callable[..., Awaitable[Outcome]]], ...]] = (
    (IMPORT_HOOK_LABEL, _password_import_hook),
)


async def register(config: GatewayConfig, *, force: bool = False) -> Counter[str]:
    """Reconcile every hook, printing one line each; the counts of each result."""
    from gateway.migrate.commands import okta_client

    counts: Counter[str] = Counter({name: 0 for name in RESULTS})
    async with okta_client(config) as okta:
        for label, reconcile in _HOOKS:
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
