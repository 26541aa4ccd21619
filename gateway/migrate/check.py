"""`gateway migrate check`: preflight before a migration, one line per check.

Each line is `PASS <id>: <text>`, `WARN <id>: <text>` or `FAIL <id>: <text>`, a FAIL saying what
to do; the exit status is 1 on any FAIL. The checks, in order:

* `okta-api`: the Okta API answers and the token may do what the commands need
  (`OktaApiClient.check_scopes`: reads probed, `.manage` scopes read from an OAuth token);
* `inline-hook`: a password import inline hook exists, is ACTIVE and points at `okta.hook_url`
  with the `okta.auth.header` header, or with the OAuth 2.0 channel `okta.auth.oauth2.hook_client`
  describes (secrets cannot be read back: see `hooks.py`);
* `hook-token` (mode `oauth2` or `either` only): the issuer's signing keys load, and a token
  asked of the token URL with `hook_client` the way Okta will ask (client_secret_post) passes the
  gateway's own validation, so a wrong audience, scope or issuer shows here and not as 401s
  during the first sign-ins;
* `source-<name>`: for each `migration.sources` entry, a Graph token and a one-page user listing;
* `route-<i>`: each route's domains have at least one user in its listed sources. Graph's
  `endswith(userPrincipalName, ...)` filter needs advanced queries (`ConsistencyLevel`,
  `$count`), which not every tenant or emulator grants, so the check reads the first page the
  source check listed: a domain seen there PASSes, a domain missing from a complete listing
  FAILs, and one missing from a partial listing (or a regex route) is a WARN;
* `ledger`: the ledger opens and its schema is upgraded to head (what every command does first).

Read-only towards Okta and the sources; nothing printed carries a secret.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from dataclasses import dataclass, field
from typing import Final, Literal

import aiohttp

from gateway.config import GatewayConfig, RouteConfig
from gateway.logs import configure_logging
from gateway.okta_api import OktaApiError
from gateway.upstream_body import UpstreamBodyError, capped_session, read_capped

Level = Literal["PASS", "WARN", "FAIL"]

SAMPLE_USERS: Final = 999  # one Graph page at its maximum $top
SOURCE_TIMEOUT_SECONDS: Final = 60.0
TOKEN_TIMEOUT_SECONDS: Final = 10.0
TOKEN_MAX_BYTES: Final = 1024 * 1024  # a token answer is a few kilobytes
# Which commands need each Okta permission, for the okta-api line.
NEEDED_BY: Final = {
    "okta.users.read": "import, prepare, rollback, sync-attributes",
    "okta.users.manage": "import, prepare, rollback, sync-attributes",
    "okta.inlineHooks.read": "register-hooks, check",
    "okta.inlineHooks.manage": "register-hooks",
    "okta.eventHooks.read": "register-hooks (event hook)",
    "okta.eventHooks.manage": "register-hooks (event hook)",
}
# Not needed until the progress issue's event hook is configured: a gap there is a WARN.
LATER_SCOPES: Final = frozenset({"okta.eventHooks.read", "okta.eventHooks.manage"})


@dataclass(frozen=True, slots=True)
class Line:
    """One check's verdict."""

    level: Level
    check: str
    text: str

    def __str__(self) -> str:
        return f"{self.level} {self.check}: {self.text}"


@dataclass
class Sample:
    """What one source's listing showed: user principal names, and whether it was all of them."""

    upns: list[str] = field(default_factory=list)
    complete: bool = False


async def check_okta_api(config: GatewayConfig) -> Line:
    """`okta-api`: the API answers and the credentials hold each needed permission."""
    from gateway.migrate.commands import okta_client

    if config.okta.org_url is None or config.okta.api is None:
        return Line("FAIL", "okta-api", "set okta.org_url and okta.api (token or oauth)")
    try:
        async with okta_client(config) as okta:
            scopes = await okta.check_scopes()
    except OktaApiError as error:  # the OAuth token request itself failed
        return Line("FAIL", "okta-api", f"{error.one_line()}: check okta.api")
    errors = [s for s in scopes if s.status == "error"]
    if errors:
        # 401 (a wrong or expired token), network errors, 5xx: the first says it for all.
        return Line(
            "FAIL", "okta-api", f"Okta did not answer: {errors[0].detail}: check okta.org_url "
            "and okta.api (an expired or revoked API token answers 401)",
        )  # fmt: skip
    missing = [s.scope for s in scopes if s.status == "missing"]
    needed = [scope for scope in missing if scope not in LATER_SCOPES]
    if needed:
        gaps = "; ".join(f"{scope} (for {NEEDED_BY[scope]})" for scope in needed)
        return Line(
            "FAIL", "okta-api", f"missing {gaps}: grant them to the service app (OAuth) or use "
            "a token of an admin with that role (SSWS)",
        )  # fmt: skip
    oauth_unknown = [s.scope for s in scopes if s.status == "unknown"] and config.okta.api.oauth
    if missing or oauth_unknown:
        later = ", ".join(missing) or "the .manage scopes"
        return Line(
            "WARN", "okta-api", f"answers; cannot confirm {later} (needed for the event hook)"
        )
    if config.okta.api.token is not None:
        # Okta cannot tell an SSWS token's write rights without writing: they follow the role.
        return Line(
            "PASS", "okta-api", "answers; reads allowed; writes follow the API token admin's role "
            "(the README lists the role each command needs)",
        )  # fmt: skip
    return Line("PASS", "okta-api", "answers; every needed scope granted")


async def check_inline_hook(config: GatewayConfig, config_path: str = "CONFIG") -> Line:
    """`inline-hook`: the org's password import hook is ACTIVE and points at okta.hook_url."""
    from gateway.migrate.commands import okta_client
    from gateway.migrate.hooks import wanted_channel
    from gateway.okta_api.hooks import PASSWORD_IMPORT_HOOK_TYPE

    fix = f"run: gateway migrate register-hooks -c {config_path}"
    if config.okta.hook_url is None:
        return Line("FAIL", "inline-hook", "okta.hook_url is not set: set it, then " + fix)
    if config.okta.org_url is None or config.okta.api is None:
        return Line("FAIL", "inline-hook", "cannot look: okta.org_url or okta.api is not set")
    try:
        async with okta_client(config) as okta:
            hooks = await okta.list_inline_hooks(PASSWORD_IMPORT_HOOK_TYPE)
    except OktaApiError as error:
        return Line("FAIL", "inline-hook", f"cannot list inline hooks: {error.one_line()}")
    if not hooks:
        return Line("FAIL", "inline-hook", "Okta has no password import inline hook: " + fix)
    hook = hooks[0]
    uri = (hook.get("channel") or {}).get("config", {}).get("uri")
    if not wanted_channel(hook, config):
        return Line(
            "FAIL", "inline-hook", f"hook {hook.get('id')} points at {uri}, not okta.hook_url "
            f"{config.okta.hook_url} (or authenticates otherwise than okta.auth says): " + fix,
        )  # fmt: skip
    if hook.get("status") != "ACTIVE":
        return Line("FAIL", "inline-hook", f"hook {hook.get('id')} is {hook.get('status')}: " + fix)
    return Line("PASS", "inline-hook", f"hook {hook.get('id')} is ACTIVE and points at {uri}")


# What to fix when Okta's token for the hook would be refused, by AUTH_ERRORS code.
TOKEN_HINTS: Final = {
    "wrong_issuer": "okta.auth.oauth2.issuer must equal the token's iss exactly",
    "wrong_audience": "set okta.auth.oauth2.audience to the authorization server's audience",
    "missing_scope": "the server must grant every okta.auth.oauth2.required_scopes to the client",
    "client_not_allowed": "add the token's cid to okta.auth.oauth2.allowed_client_ids",
    "unknown_kid": "the token is signed by a key the issuer does not publish: check jwks_uri",
}


async def check_hook_token(config: GatewayConfig) -> Line | None:
    """`hook-token`: the issuer's keys load and a token got as Okta gets one validates."""
    from gateway.hook_oauth import KeySet, KeySetError, TokenValidator

    auth = config.okta.auth
    settings = auth.oauth2
    if auth.mode == "header" or settings is None:
        return None
    keys = KeySet(settings.issuer, settings.jwks_uri)
    try:
        count = await keys.load()
        client = settings.hook_client
        if client is None or client.client_secret is None:
            why = (
                "no okta.auth.oauth2.hook_client to ask for a token with"
                if client is None
                else "private_key_jwt: only Okta holds the hook key, so no token was asked for"
            )
            return Line("PASS", "hook-token", f"the issuer publishes {count} signing key(s); {why}")
        token = await _client_credentials_token(
            settings.token_url, client.client_id, client.client_secret.get_secret_value(),
            settings.token_scope,
        )  # fmt: skip
        error = await TokenValidator(settings, keys).validate(token, wait_seconds=0.0)
    except (aiohttp.ClientError, TimeoutError, KeySetError) as err:
        return Line(
            "FAIL", "hook-token", f"cannot load the issuer's signing keys: {err}: check "
            "okta.auth.oauth2.issuer (and jwks_uri)",
        )  # fmt: skip
    except TokenRequestError as err:
        return Line("FAIL", "hook-token", f"{settings.token_url}: {err}")
    finally:
        await keys.close()
    if error is not None:
        hint = TOKEN_HINTS.get(error, "see the README's OAuth 2.0 for the hook")
        return Line(
            "FAIL", "hook-token", f"the gateway would refuse Okta's token ({error}): {hint}"
        )
    return Line(
        "PASS", "hook-token", f"a token from {settings.token_url} passes the gateway's checks"
    )


class TokenRequestError(Exception):
    """The token endpoint did not give a token (message: status and OAuth error code only)."""


async def _client_credentials_token(url: str, client_id: str, secret: str, scope: str) -> str:
    """An access token as Okta's hook channel gets one (client_credentials, client_secret_post)."""
    form = {
        "grant_type": "client_credentials",
        "scope": scope,
        "client_id": client_id,
        "client_secret": secret,
    }
    timeout = aiohttp.ClientTimeout(total=TOKEN_TIMEOUT_SECONDS)
    try:
        async with (
            capped_session(timeout=timeout) as session,
            session.post(url, data=form, allow_redirects=False) as response,
        ):
            try:
                body = json.loads(await read_capped(response, TOKEN_MAX_BYTES))
            except (ValueError, UpstreamBodyError):
                body = None
    except (aiohttp.ClientError, TimeoutError) as err:
        raise TokenRequestError(f"no answer ({type(err).__name__})") from None
    answer = body if isinstance(body, dict) else {}
    token = answer.get("access_token")
    if response.status == 200 and isinstance(token, str):
        return token
    # Only the OAuth error code (RFC 6749 §5.2) is repeated: a description is the server's text.
    code = answer.get("error")
    named = f" {code}" if isinstance(code, str) and code.isascii() and len(code) < 64 else ""
    hint = ": check hook_client's client_id and secret" if code == "invalid_client" else ""
    raise TokenRequestError(f"HTTP {response.status}{named}, no access token{hint}")


async def check_source(config: GatewayConfig, name: str) -> tuple[Line, Sample | None]:
    """`source-<name>`: a Graph token, then the first page of users (kept for the routes)."""
    from gateway.migrate.commands import _started_source
    from gateway.migrate.mapping import graph_attributes
    from plugins.azure_ad import GraphError
    from plugins.entra_directory import DirectoryListError, iter_users

    check = f"source-{name}"
    if not any(source.name == name for source in config.sources):
        return Line("FAIL", check, f"no source named {name!r} in sources[]"), None
    settings = config.migration.sources[name]
    sample = Sample()
    try:
        async with asyncio.timeout(SOURCE_TIMEOUT_SECONDS), _started_source(config, name) as source:
            # The token first, on its own, so that a credential problem is named as such.
            await source.graph_token()
            users = iter_users(
                source,
                graph_attributes(settings),
                group=settings.group,
                include_disabled=settings.include_disabled,
                page_size=SAMPLE_USERS,
            )
            sample.complete = True
            async for user in users:
                if len(sample.upns) >= SAMPLE_USERS:
                    sample.complete = False  # a second page exists: stop, one page is enough
                    break
                sample.upns.append(str(user.get("userPrincipalName", "")))
    except GraphError as error:
        return Line(
            "FAIL", check, f"cannot get a Graph token ({error.reason}): check the source's "
            "tenant_id, client_id and client secret or certificate",
        ), None  # fmt: skip
    except DirectoryListError as error:
        hint = " (grant the app User.Read.All)" if error.reason == "graph_forbidden" else ""
        return Line("FAIL", check, f"cannot list users: {error}{hint}"), None
    except TimeoutError:
        return Line("FAIL", check, f"no answer in {SOURCE_TIMEOUT_SECONDS:.0f} s"), None
    except SystemExit as stop:  # _started_source: not a source that can list its users
        return Line("FAIL", check, str(stop.code)), None
    if not sample.upns:
        return Line("WARN", check, "Graph answered but listed no user: nothing to import"), sample
    more = "" if sample.complete else "+"
    return Line(
        "PASS", check, f"Graph token and listing answered ({len(sample.upns)}{more} users)"
    ), sample


def check_route(index: int, route: RouteConfig, samples: dict[str, Sample | None]) -> Line:
    """`route-<i>`: each of the route's domains has a user in one of its sources' samples."""
    check = f"route-{index}"
    label = f"routes[{index}]" + (f" ({route.name})" if route.name else "")
    listed = [samples[s] for s in route.sources if samples.get(s) is not None]
    seen = [upn for sample in listed if sample is not None for upn in sample.upns]
    complete = bool(listed) and all(sample is not None and sample.complete for sample in listed)
    if not listed:
        return Line(
            "WARN", check, f"{label}: cannot tell; no user listing from its sources "
            f"({', '.join(route.sources)}): each needs a migration.sources entry that lists",
        )  # fmt: skip
    if route.match.regex is not None:
        pattern = re.compile(route.match.regex)
        if any(pattern.fullmatch(upn) for upn in seen):
            return Line("PASS", check, f"{label}: its regex matches users in the source")
        return Line("WARN", check, f"{label}: its regex matched no user of the listed page")
    missing = [d for d in route.match.domains or [] if not _has_domain(seen, d)]
    if not missing:
        return Line("PASS", check, f"{label}: every domain has users in the source")
    if complete:
        return Line(
            "FAIL", check, f"{label}: no user in {', '.join(route.sources)} has a login at "
            f"{', '.join(missing)}: fix the route's domains or sources",
        )  # fmt: skip
    return Line("WARN", check, f"{label}: {', '.join(missing)} not on the first page; cannot tell")


def _has_domain(upns: list[str], domain: str) -> bool:
    suffix = "@" + domain.lower()
    return any(upn.lower().endswith(suffix) for upn in upns)


async def check_ledger(config: GatewayConfig) -> Line:
    """`ledger`: it opens and upgrades to the current schema."""
    from gateway.ledger import LedgerError, LedgerUrlError, configured_ledger_url, open_ledger

    url = configured_ledger_url(config.migration.ledger)
    try:
        ledger = await open_ledger(url)
    except (LedgerError, LedgerUrlError) as error:
        return Line("FAIL", "ledger", f"{error}: check migration.ledger")
    await ledger.close()
    return Line("PASS", "ledger", "reachable, schema at the current revision")


async def run_checks(config: GatewayConfig, config_path: str = "CONFIG") -> list[Line]:
    """Every check, in order, each line printed as soon as it is known."""
    lines: list[Line] = []

    def emit(line: Line) -> None:
        lines.append(line)
        print(line, flush=True)

    emit(await check_okta_api(config))
    emit(await check_inline_hook(config, config_path))
    token_line = await check_hook_token(config)
    if token_line is not None:
        emit(token_line)
    samples: dict[str, Sample | None] = {}
    for name in config.migration.sources:
        line, samples[name] = await check_source(config, name)
        emit(line)
    for index, route in enumerate(config.routes):
        emit(check_route(index, route, samples))
    emit(await check_ledger(config))
    return lines


def main(args: argparse.Namespace) -> int:
    """`gateway migrate check`; exit 1 on any FAIL."""
    from gateway.cli import load_or_report

    config = load_or_report(args.config)
    if config is None:
        return 1
    # Warnings only: the check lines say what matters; a library's INFO chatter would bury them.
    configure_logging("warning", "text")
    lines = asyncio.run(run_checks(config, str(args.config)))
    return 1 if any(line.level == "FAIL" for line in lines) else 0
