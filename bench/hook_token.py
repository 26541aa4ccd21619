"""Cost of checking one hook access token (RS256, 2048-bit key) on the hot path, in µs.

`python -m bench.hook_token`: the claims check alone (signature + iss/aud/exp/scp/cid against a
cached key object), the whole `TokenValidator.validate` (header parse, key lookup, the same
checks), and for contrast the same check when the key is parsed from its JWK every time.
"""

from __future__ import annotations

import asyncio
import json
import time
import timeit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from gateway.hook_oauth import KeySet, OAuth2HookConfig, TokenValidator

ISSUER = "https://acme.okta.com/oauth2/aus1example"
ROUNDS = 5000


def main() -> None:
    """Print µs per validation for each variant."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    settings = OAuth2HookConfig(
        issuer=ISSUER,
        audience="api://okta-password-gateway",
        required_scopes=["okta.hooks.password"],
        allowed_client_ids=["0oa1example"],
    )
    keys = KeySet(ISSUER, None)
    keys.keys, keys.loaded = {"k1": key.public_key()}, True
    validator = TokenValidator(settings, keys)
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": settings.audience, "iat": now, "exp": now + 3600,
              "cid": "0oa1example", "sub": "0oa1example", "scp": ["okta.hooks.password"]}  # fmt: skip
    token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})
    public = key.public_key()
    jwk = json.loads(RSAAlgorithm.to_jwk(public))
    assert validator.check_claims(token, public) is None

    def per_call(seconds: float) -> str:
        return f"{seconds / ROUNDS * 1e6:7.1f} µs"

    print("check_claims (cached key)  ", per_call(timeit.timeit(
        lambda: validator.check_claims(token, public), number=ROUNDS)))  # fmt: skip

    async def whole() -> float:
        started = time.perf_counter()
        for _ in range(ROUNDS):
            assert await validator.validate(token, 1.0) is None
        return time.perf_counter() - started

    print("validate (header + lookup) ", per_call(asyncio.run(whole())))
    print("key parsed from JWK per call", per_call(timeit.timeit(
        lambda: validator.check_claims(token, RSAAlgorithm.from_jwk(jwk)), number=ROUNDS)))  # fmt: skip


if __name__ == "__main__":
    main()
