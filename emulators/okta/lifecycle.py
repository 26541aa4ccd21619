"""User lifecycle: ``/api/v1/users/{id}/lifecycle/activate|deactivate|reset_password|expire_password``.

OpenAPI ``activateUser``: only STAGED or DEPROVISIONED users (else 403 E0000016); ``sendEmail``
defaults to true. With ``sendEmail=true`` Okta mails the activation email and answers ``{}``;
with ``false`` it answers the ``UserActivationToken`` (``activationUrl`` in the Identity Engine
form ``/tokens/{token}/verify``) and mails nothing. Every email that would have gone out is
counted per login (``activation_emails`` in ``/_emulator/stats``): a migration must send none.
A STAGED user with no credential becomes PROVISIONED, and PROVISIONED cannot be activated again.

OpenAPI ``deactivateUser``: any status but DEPROVISIONED; 200 with an empty body. Deactivating a
DEPROVISIONED user is accepted without change (UNCONFIRMED: the spec only says not to).

OpenAPI ``resetPassword``: ``sendEmail`` is required (400 E0000028 without it); the user goes to
RECOVERY and cannot sign in until the reset is completed; ``sendEmail=true`` mails the link and
answers ``{}``, ``false`` answers ``{"resetPasswordUrl": "{org}/reset_password/{token}"}`` (the
spec's ``ResetPwdWithoutSendingEmailResponse``) and mails nothing. Reset emails are counted per
login (``password_reset_emails``). ``revokeSessions`` is accepted (the emulator has no sessions).

OpenAPI ``expirePassword``: the user goes to PASSWORD_EXPIRED and the answer is the ``User``
(``ExpirePwdResponse``); ``expirePasswordWithTempPassword`` also sets a temporary Okta password
and answers ``{"tempPassword": "..."}``. No email either way. Both lifecycle operations refuse a
user in a status they do not apply to with 403 E0000038.
"""

from __future__ import annotations

import secrets
import string

from aiohttp import web

from emulators.okta import errors
from emulators.okta.models import Credential
from emulators.okta.oauth import requires
from emulators.okta.state import EMULATOR_KEY
from emulators.okta.wire import base_url, query_bool

__all__ = [
    "activate_user",
    "deactivate_user",
    "expire_password",
    "expire_password_with_temp_password",
    "reset_password",
]

_TOKEN_ALPHABET = string.ascii_letters + string.digits


@requires("okta.users.manage")
async def activate_user(request: web.Request) -> web.Response:
    """``POST /api/v1/users/{id}/lifecycle/activate?sendEmail=true|false``."""
    emulator = request.app[EMULATOR_KEY]
    user = emulator.require_user(request.match_info["id"])
    send_email = query_bool(request, "sendEmail", True)
    emulator.activate(user, send_email=send_email)
    if send_email:
        return web.json_response({})
    token = _token()
    return web.json_response(
        {
            "activationUrl": f"{base_url(request)}/tokens/{token}/verify",
            "activationToken": token,
        }
    )


@requires("okta.users.manage")
async def deactivate_user(request: web.Request) -> web.Response:
    """``POST /api/v1/users/{id}/lifecycle/deactivate?sendEmail=false|true``."""
    emulator = request.app[EMULATOR_KEY]
    user = emulator.require_user(request.match_info["id"])
    emulator.deactivate(user, send_email=query_bool(request, "sendEmail", False))
    return web.Response(status=200)


def _token(length: int = 20) -> str:
    """A one-time token shaped like Okta's (letters and digits)."""
    return "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(length))


@requires("okta.users.manage")
async def reset_password(request: web.Request) -> web.Response:
    """``POST /api/v1/users/{id}/lifecycle/reset_password?sendEmail=true|false``."""
    emulator = request.app[EMULATOR_KEY]
    user = emulator.require_user(request.match_info["id"])
    if not request.query.get("sendEmail"):
        raise errors.missing_parameter("sendEmail")
    send_email = query_bool(request, "sendEmail", True)
    query_bool(request, "revokeSessions", False)  # validated; the emulator keeps no sessions
    emulator.reset_password(user, send_email=send_email)
    if send_email:
        return web.json_response({})
    return web.json_response({"resetPasswordUrl": f"{base_url(request)}/reset_password/{_token()}"})


@requires("okta.users.manage")
async def expire_password(request: web.Request) -> web.Response:
    """``POST /api/v1/users/{id}/lifecycle/expire_password``: answers the user."""
    emulator = request.app[EMULATOR_KEY]
    user = emulator.require_user(request.match_info["id"])
    emulator.expire_password(user)
    return web.json_response(user.to_json(base_url(request)))


@requires("okta.users.manage")
async def expire_password_with_temp_password(request: web.Request) -> web.Response:
    """``POST /api/v1/users/{id}/lifecycle/expire_password_with_temp_password``."""
    emulator = request.app[EMULATOR_KEY]
    user = emulator.require_user(request.match_info["id"])
    query_bool(request, "revokeSessions", False)
    emulator.expire_password(user)
    # The temporary password replaces whatever credential the user had (an import hook too).
    emulator.set_credential(user, Credential.PASSWORD)
    return web.json_response({"tempPassword": _token(8)})
