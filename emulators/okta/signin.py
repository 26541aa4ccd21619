"""``POST /_emulator/users/{login}/sign-in``: a user's first sign-in, as Okta would run it.

Without a body this simulates a successful sign-in: an imported credential (password hook or
hash) becomes an Okta password, so ``credentials.provider`` flips from IMPORT to OKTA and
``lastLogin`` is set. With ``{"password": "..."}`` and a hooked user, the emulator really calls
the org's ACTIVE password import inline hook the way Okta does (reference/okta-hooks.md §1.2-1.5):
HTTPS-shaped POST of the §1.3 payload with ``{login}`` as the typed username, the hook's auth and
custom headers, a 3 s timeout, one retry after a timeout or 5xx (never after 2xx/4xx), redirects
not followed; 200 with ``VERIFIED`` imports the password, anything else leaves the user on IMPORT.
With a password and a user imported with ``credentials.password.hash``, the password is checked
against that hash (``hashes``), as Okta does without any hook. The password is never stored or
logged.

An OAuth 2.0 hook channel (§1.8 b) with ``authType: client_secret_post`` first gets an access
token: a form POST to the channel's ``tokenUrl`` (``grant_type=client_credentials``, ``scope``,
``client_id``, ``client_secret`` in the body; no redirects; the hook timeout and no retry, the
emulator's choice: Okta documents neither), then calls the hook with ``Authorization: Bearer
<token>`` besides the custom headers. The token is kept per hook (``OktaEmulator.hook_tokens``)
and reused until 60 s before its ``expires_in`` runs out, as Okta caches it; a change of the
channel's ``tokenUrl``, client, secret or scope, a key rotation and a full reset forget it. Every
fetch counts ``events["hook_token_requests"]``. A fetch that fails (not 200, not JSON, no
``access_token``, timeout or connection error) means the hook is not called: ``HOOK_ERROR``
``hook_token_failed``, logged like the other hook errors. ``private_key_jwt`` channels answer
``HOOK_ERROR`` ``private_key_jwt_not_emulated`` without calling anything: hook keys
(``/api/v1/hook-keys``) and the client assertion signed with them are not emulated.

Every time the hook fires, a ``user.import.password`` event is published (OpenAPI: "created every
time a password import inline hook is fired"): outcome SUCCESS when it verified, FAILURE when it
answered UNVERIFIED (or 204) or gave no usable answer; the latter also writes
``inline_hook.executed`` FAILURE. A sign-in without a password (simulated) that imports a hooked
user publishes SUCCESS too, as if the hook had verified.

Answer: 200 ``{"login", "result": "VERIFIED"|"UNVERIFIED"|"HOOK_ERROR", "reason", "provider"}``;
404 for an unknown user; 409 when Okta would not let the user sign in at all (not ACTIVE, or no
password of any kind).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from typing import Any, Final

import aiohttp
from aiohttp import web

from emulators.okta.hashes import hash_matches
from emulators.okta.inline_hooks import PASSWORD_IMPORT
from emulators.okta.models import Credential, Status, iso, new_id
from emulators.okta.state import EMULATOR_KEY, OktaEmulator
from emulators.okta.tokens import HookToken
from emulators.okta.wire import base_url

__all__ = ["handle_sign_in"]

SIGN_IN_URL: Final = "/idp/idx/challenge/answer"  # the Identity Engine endpoint that triggers it
TOKEN_REUSE_MARGIN: Final = 60.0  # seconds before expiry when Okta fetches a new hook token


def _payload(emulator: OktaEmulator, hook_id: str, base: str, username: str, password: str) -> Any:
    """The password import request body Okta sends (§1.3)."""
    return {
        "eventId": secrets.token_urlsafe(16),
        "eventTime": iso(emulator.clock()),
        "eventType": PASSWORD_IMPORT,
        "eventTypeVersion": "1.0",
        "contentType": "application/json",
        "cloudEventVersion": "0.1",
        "source": f"{base}/api/v1/inlineHooks/{hook_id}",
        "data": {
            "context": {
                "request": {
                    "id": new_id("req"),
                    "method": "POST",
                    "url": {"value": SIGN_IN_URL},
                    "ipAddress": "127.0.0.1",
                },
                "credential": {"username": username, "password": password},
            },
            "action": {"credential": "UNVERIFIED"},
        },
    }


def _channel_digest(config: dict[str, Any]) -> str:
    """What a cached hook token was fetched with (a digest: the secret is not copied)."""
    fields = [config.get(name) for name in ("tokenUrl", "clientId", "clientSecret", "scope")]
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()


async def _hook_token(
    emulator: OktaEmulator, session: aiohttp.ClientSession, hook: dict[str, Any]
) -> str | None:
    """The OAuth channel's access token: cached, or fetched from ``tokenUrl``; None on failure."""
    config = hook["channel"]["config"]
    digest = _channel_digest(config)
    now = emulator.clock()
    cached = emulator.hook_tokens.get(hook["id"])
    if cached is not None and cached.channel == digest and now < cached.reuse_until:
        return cached.access_token
    emulator.hook_tokens.pop(hook["id"], None)
    emulator.events["hook_token_requests"] += 1
    form = {
        "grant_type": "client_credentials",
        "client_id": config["clientId"],
        "client_secret": config["clientSecret"],
    }
    if config.get("scope"):
        form["scope"] = config["scope"]
    try:
        async with asyncio.timeout(emulator.hook_timeout):
            async with session.post(
                config["tokenUrl"],
                data=form,
                headers={"Accept": "application/json"},
                allow_redirects=False,
            ) as resp:
                if resp.status != 200:
                    return None
                answer = await resp.json(content_type=None)
    except (TimeoutError, aiohttp.ClientError, ValueError):  # InvalidURL is a ValueError too
        return None
    token = answer.get("access_token") if isinstance(answer, dict) else None
    if not isinstance(token, str) or not token:
        return None
    lifetime = answer.get("expires_in")
    if isinstance(lifetime, int | float) and not isinstance(lifetime, bool):
        emulator.hook_tokens[hook["id"]] = HookToken(
            token, emulator.clock() + lifetime - TOKEN_REUSE_MARGIN, digest
        )
    return token


async def _call_hook_once(
    session: aiohttp.ClientSession,
    config: dict[str, Any],
    body: bytes,
    seconds: float,
    bearer: str | None = None,
) -> tuple[str, str] | None:
    """One hook call: (result, reason), or None after a timeout or 5xx (Okta retries those)."""
    headers = {"Accept": "application/json", "Content-Type": "application/json"}
    for item in config["headers"]:
        headers[item["key"]] = item["value"]
    scheme = config.get("authScheme")
    if scheme:
        headers[scheme["key"]] = scheme["value"]
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    try:
        async with asyncio.timeout(seconds):
            async with session.post(
                config["uri"], data=body, headers=headers, allow_redirects=False
            ) as resp:
                if resp.status >= 500:
                    return None
                if resp.status == 204:
                    return "UNVERIFIED", "hook_204"
                if resp.status != 200:
                    return "HOOK_ERROR", f"hook_http_{resp.status}"
                answer = await resp.json(content_type=None)
    except (TimeoutError, aiohttp.ClientError):
        return None
    except ValueError:
        return "HOOK_ERROR", "hook_bad_json"
    commands = answer.get("commands") if isinstance(answer, dict) else None
    for command in commands if isinstance(commands, list) else []:
        if isinstance(command, dict) and command.get("type") == "com.okta.action.update":
            value = command.get("value")
            credential = value.get("credential") if isinstance(value, dict) else None
            if credential in ("VERIFIED", "UNVERIFIED"):
                return credential, "hook_answer"
    return "HOOK_ERROR", "hook_no_command"


async def _through_hook(
    emulator: OktaEmulator, base: str, username: str, password: str
) -> tuple[str, str, dict[str, Any] | None]:
    """Run the org's active password import hook: (result, reason, the hook if it fired)."""
    hook = next(
        (
            h
            for h in emulator.inline_hooks.values()
            if h["type"] == PASSWORD_IMPORT and h["status"] == "ACTIVE"
        ),
        None,
    )
    if hook is None:
        return "HOOK_ERROR", "no_active_password_import_hook", None
    oauth = hook["channel"]["type"] == "OAUTH"
    if oauth and hook["channel"]["config"].get("authType") != "client_secret_post":
        return "HOOK_ERROR", "private_key_jwt_not_emulated", None
    body = json.dumps(_payload(emulator, hook["id"], base, username, password)).encode()
    async with aiohttp.ClientSession() as session:
        bearer = await _hook_token(emulator, session, hook) if oauth else None
        if oauth and bearer is None:
            return "HOOK_ERROR", "hook_token_failed", hook
        for _ in range(2):  # the call and at most one retry
            emulator.events["inline_hook_calls"] += 1
            outcome = await _call_hook_once(
                session, hook["channel"]["config"], body, emulator.hook_timeout, bearer
            )
            if outcome is not None:
                return outcome[0], outcome[1], hook
    return "HOOK_ERROR", "hook_timeout_or_5xx", hook


async def handle_sign_in(request: web.Request) -> web.Response:
    """``POST /_emulator/users/{login}/sign-in`` with an optional ``{"password": ...}`` body."""
    emulator = request.app[EMULATOR_KEY]
    typed = request.match_info["login"]
    user = emulator.find_user(typed)
    if user is None:
        return web.json_response({"error": "no such user"}, status=404)
    if user.status is not Status.ACTIVE or user.credential is Credential.NONE:
        return web.json_response(
            {"error": f"a {user.status.value} user without a usable password cannot sign in"},
            status=409,
        )
    password: str | None = None
    if request.can_read_body:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "body must be JSON"}, status=400)
        raw = body.get("password") if isinstance(body, dict) else None
        password = raw if isinstance(raw, str) else None
    result, reason = "VERIFIED", "simulated"
    fired: dict[str, Any] | None = None
    if user.credential is Credential.HOOK and password is not None:
        result, reason, fired = await _through_hook(emulator, base_url(request), typed, password)
    elif user.credential is Credential.HASH and password is not None and user.password_hash:
        # An imported hash: Okta checks the password against it itself, no hook involved.
        matched = await asyncio.to_thread(hash_matches, user.password_hash, password)
        result, reason = ("VERIFIED", "hash_match") if matched else ("UNVERIFIED", "hash_mismatch")
    if result == "VERIFIED":
        emulator.sign_in(user)
    else:
        emulator.events["sign_ins_failed"] += 1
        if fired is not None and result == "UNVERIFIED":
            emulator.password_import_failed(user, "INVALID_CREDENTIALS")
        elif fired is not None:
            emulator.password_import_failed(user, reason, hook=fired)
    return web.json_response(
        {"login": user.login, "result": result, "reason": reason, "provider": user.provider}
    )
