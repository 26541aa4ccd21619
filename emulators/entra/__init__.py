"""Microsoft Entra ID emulator that unmodified msal can use for ROPC, over plain HTTP on loopback.

msal only accepts ``https://`` authorities, so the emulator advertises fake https URLs
(``https://login.emulator.invalid`` for Entra, ``https://adfs.emulator.invalid`` for AD FS) in its
JSON and expects the client's ``requests.Session`` to rewrite every scheme+host to
``http://127.0.0.1:<port>`` while keeping path and query.

Served endpoints (shapes follow real Entra as closely as is known), one module per family:

* ``GET  /{tenant}/v2.0/.well-known/openid-configuration``  tenant discovery (discovery.py)
* ``GET  /common/discovery/instance``                        instance discovery (discovery.py)
* ``GET  /common/userrealm/{username}``                      user realm (realm.py)
* ``POST /{tenant}/oauth2/v2.0/token``                       password, client_credentials, SAML
  grants (token.py; AADSTS error bodies in aadsts.py)
* ``POST /adfs/services/trust/{2005,13}/usernamemixed``      emulated AD FS (wstrust.py; its SAML
  assertions in saml.py)
* ``GET  /v1.0/users``, ``GET /v1.0/users/{id}``             Microsoft Graph users (graph.py)
* ``GET /_emulator/stats``, ``POST /_emulator/reset``, ``GET|PUT /_emulator/fault``  control plane
  (control.py)

The rest: the users file and the tenant (directory.py), fault modes and latency (faults.py), the
state and counters every family shares (state.py), shared encodings (encoding.py), and the
aiohttp application, ``start_emulator`` and ``serve`` (app.py).

Deliberate simplifications: ID and access tokens are unsigned (``alg: none``); a JWT
``client_assertion`` is accepted when it decodes and its ``iss`` and ``sub`` equal the client id
(its signature is NOT checked); SAML assertions issued by the emulated AD FS carry an HMAC
(keyed by a per-process secret) instead of an XML signature, so the token endpoint only accepts
assertions this emulator issued.

Passwords are never logged and never put into exception messages; the aiohttp access log is off
unless asked for.
"""

from emulators.entra.app import (
    EntraEmulator,
    RunningEmulator,
    create_app,
    serve,
    start_emulator,
)
from emulators.entra.directory import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_TENANT_ID,
    DirectoryError,
    EmulatedDirectory,
    EmulatedUser,
    load_directory,
)
from emulators.entra.faults import FaultMode
from emulators.entra.state import DEFAULT_ADFS_BASE, DEFAULT_ENTRA_BASE

__all__ = [
    "DEFAULT_ADFS_BASE",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_ENTRA_BASE",
    "DEFAULT_TENANT_ID",
    "DirectoryError",
    "EmulatedDirectory",
    "EmulatedUser",
    "EntraEmulator",
    "FaultMode",
    "RunningEmulator",
    "create_app",
    "load_directory",
    "serve",
    "start_emulator",
]
