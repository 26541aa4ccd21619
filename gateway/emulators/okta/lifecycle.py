"""User lifecycle: ``POST /api/v1/users/{id}/lifecycle/activate`` and ``.../deactivate``.

OpenAPI ``activateUser``: only STAGED or DEPROVISIONED users (else 403 E0000016); ``sendEmail``
defaults to true. With ``sendEmail=true`` Okta mails the activation email and answers ``{}``;
with ``false`` it answers the ``UserActivationToken`` (``activationUrl`` in the Identity Engine
form ``/tokens/{token}/verify``) and mails nothing. Every email that would have gone out is
counted per login (``activation_emails`` in ``/_emulator/stats``): a migration must send none.
A STAGED user with no credential becomes PROVISIONED, and PROVISIONED cannot be activated again.

OpenAPI ``deactivateUser``: any status but DEPROVISIONED; 200 with an empty body. Deactivating a
DEPROVISIONED user is accepted without change (UNCONFIRMED: the spec only says not to).
"""

from __future__ import annotations

import secrets
import string

from aiohttp import web

from gateway.emulators.okta.oauth import requires
from gateway.emulators.okta.state import EMULATOR_KEY
from gateway.emulators.okta.wire import base_url, query_bool

__all__ = ["activate_user", "deactivate_user"]

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
    token = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(20))
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
