"""Sign-in tokens (OIDC / JWT) of the issuers tenants registered: verified into a `Caller`.

`joserfc` lives here. A token is read once unverified, only to find which registrations
could have issued it (its `iss`, then its `aud`: several tenants may trust one issuer, each
for its own audience), then verified with the registration's key: its shared secret (HS256
only) or its published keys (RS256, ES256, EdDSA; a JWKS never supplies a shared secret).
The algorithm a key may check is fixed by the key's type, never by the token, so an HS256
token cannot be checked against an RSA or EC public key (algorithm confusion), and `none` is
never accepted. `iss`, `aud`, `exp` (required) and `nbf` are checked with a small leeway.
"""

from __future__ import annotations

import json
import re
import time
import warnings
from collections.abc import Callable
from typing import Any

from cachetools import TTLCache
from joserfc import jwk, jws, jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    JoseError,
    MissingClaimError,
    SecurityWarning,
)

from infra.connectors.address_policy import AddressPolicy
from infra.db.engine import Database
from infra.db.issuers import TrustedIssuer, find_trusted, issuer_context
from infra.errors import PermanentError, TransientError
from infra.jwks import JwksCache
from infra.vault import Sealed, Vault
from producers.ingress.caller import Caller, Role
from producers.ingress.errors import ApiError

# A key's type -> the algorithms it may check (RFC 9864's "Ed25519" is EdDSA by its new name).
PUBLIC_ALGORITHMS: dict[str, frozenset[str]] = {
    "RSA": frozenset({"RS256"}),
    "EC": frozenset({"ES256"}),
    "OKP": frozenset({"EdDSA", "Ed25519"}),
}
SECRET_ALGORITHMS = frozenset({"HS256"})
ACCEPTED = SECRET_ALGORITHMS.union(*PUBLIC_ALGORITHMS.values())
STAFF_ROLES: frozenset[Role] = frozenset({"admin", "developer", "auditor"})
MAX_TOKEN_CHARS = 16 * 1024
MAX_USER_ID_CHARS = 200
# header.payload.signature, base64url; `alg: none` tokens have an empty signature.
JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
CACHE_TTL_S = 10.0
CACHE_MAX_ENTRIES = 10_000
CHALLENGE = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


def looks_like_token(credential: str) -> bool:
    return len(credential) <= MAX_TOKEN_CHARS and JWT_SHAPE.fullmatch(credential) is not None


def refused(reason: str) -> ApiError:
    return ApiError(401, "invalid_token", f"sign-in token refused: {reason}", CHALLENGE)


class SignIn:
    """Verifies sign-in tokens; registrations are cached briefly (like API keys)."""

    def __init__(
        self,
        db: Database,
        vault: Vault,
        policy: AddressPolicy,
        leeway_s: int = 30,
        refetch_s: float = 60.0,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._vault = vault
        # Where a tenant's JWKS URL may point: the connectors' outbound policy.
        self.policy = policy
        self._jwks = JwksCache(policy, refetch_s=refetch_s)
        self._leeway_s = leeway_s
        self._issuers: TTLCache[str, list[TrustedIssuer]] = TTLCache(
            CACHE_MAX_ENTRIES, CACHE_TTL_S, timer
        )

    def forget(self, issuer: str) -> None:
        """Drops a cached registration (this process's; others forget within CACHE_TTL_S)."""
        self._issuers.pop(issuer, None)

    async def close(self) -> None:
        await self._jwks.close()

    async def caller(self, token: str) -> Caller:
        header, claims = _unverified(token)
        alg = header.get("alg")
        if alg not in ACCEPTED:
            raise refused(f"the {alg!r} algorithm is not accepted")
        issuer = claims.get("iss")
        if not isinstance(issuer, str) or not issuer:
            raise refused("the token names no issuer (iss)")
        registered = self._issuers.get(issuer)
        if registered is None:
            registered = self._issuers[issuer] = await find_trusted(self._db, issuer)
        if not registered:
            raise refused("unknown issuer")
        audiences = _audiences(claims.get("aud"))
        candidates = [r for r in registered if r.audience in audiences]
        if not candidates:
            raise refused("wrong audience")
        verified: list[tuple[TrustedIssuer, dict[str, Any]]] = []
        failure = "bad signature"
        for candidate in candidates:
            try:
                verified.append((candidate, await self._verify(candidate, token, header)))
            except _Refused as exc:
                failure = exc.reason
        if not verified:
            raise refused(failure)
        if len({trusted.tenant_id for trusted, _ in verified}) > 1:
            # The same keys, issuer and audience registered by several tenants: whose user
            # this is cannot be told, so nobody's.
            raise refused("issuer and audience are registered by several tenants")
        trusted, checked = verified[0]
        return _caller_of(trusted, checked)

    async def _verify(
        self, trusted: TrustedIssuer, token: str, header: dict[str, Any]
    ) -> dict[str, Any]:
        alg = header["alg"]
        keys = await self._keys(trusted, alg, header.get("kid"))
        registry = jwt.JWTClaimsRegistry(
            leeway=self._leeway_s,
            iss={"essential": True, "value": trusted.issuer},
            aud={"essential": True, "value": trusted.audience},
            exp={"essential": True},
        )
        for key in keys:
            try:
                with warnings.catch_warnings():  # "EdDSA" is deprecated by name only
                    warnings.simplefilter("ignore", SecurityWarning)
                    decoded = jwt.decode(token, key, algorithms=[alg])
            except BadSignatureError:
                continue
            except JoseError as exc:
                raise _Refused("bad signature") from exc
            claims = decoded.claims
            _check_claims(registry, claims)
            return claims
        raise _Refused("bad signature")

    async def _keys(self, trusted: TrustedIssuer, alg: str, kid: Any) -> list[jwk.Key]:
        if trusted.secret_sealed is not None and trusted.secret_key_id is not None:
            if alg not in SECRET_ALGORITHMS:
                raise _Refused(f"this issuer signs with HS256, not {alg}")
            secret = self._vault.open(
                Sealed(trusted.secret_key_id, trusted.secret_sealed),
                issuer_context(trusted.id, trusted.tenant_id),
            )
            return [jwk.OctKey.import_key(secret)]
        if trusted.jwks_url is None or alg in SECRET_ALGORITHMS:
            raise _Refused(f"this issuer publishes public keys: {alg} is not accepted")
        kid = kid if isinstance(kid, str) else None
        try:
            published = await self._jwks.keys(trusted.jwks_url, kid)
        except (TransientError, PermanentError) as exc:
            raise ApiError(
                503,
                "unavailable",
                "the token issuer's keys cannot be fetched, try again",
                {"Retry-After": "5"},
            ) from exc
        keys: list[jwk.Key] = []
        for data in published:
            if kid is not None and data.get("kid") != kid:
                continue
            if alg not in PUBLIC_ALGORITHMS.get(str(data.get("kty")), frozenset()):
                continue  # the key's type decides the algorithm, never the token
            if data.get("use", "sig") != "sig" or data.get("alg", alg) != alg:
                continue
            try:
                keys.append(jwk.import_key(data))
            except (JoseError, ValueError, TypeError):
                continue
        if not keys:
            raise _Refused("no key of the issuer matches the token's kid and algorithm")
        return keys


class _Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims, unverified: only to find who may have issued the token."""
    try:
        compact = jws.extract_compact(token.encode())
        claims = json.loads(compact.payload)
    except (JoseError, ValueError, TypeError, UnicodeDecodeError):
        raise refused("malformed token") from None
    header = compact.headers()
    if not isinstance(claims, dict) or not isinstance(header, dict):
        raise refused("malformed token")
    return dict(header), claims


def _audiences(aud: Any) -> list[str]:
    if isinstance(aud, str):
        return [aud]
    if isinstance(aud, list):
        return [a for a in aud if isinstance(a, str)]
    return []


def _check_claims(registry: jwt.JWTClaimsRegistry, claims: dict[str, Any]) -> None:
    try:
        registry.validate(claims)
    except ExpiredTokenError:
        raise _Refused("the token has expired") from None
    except MissingClaimError as exc:
        raise _Refused(f"the token has no {exc.claim} claim") from None
    except InvalidClaimError as exc:
        if exc.claim in ("nbf", "iat"):
            raise _Refused("the token is not yet valid") from None
        if exc.claim == "aud":
            raise _Refused("wrong audience") from None
        raise _Refused(f"the token's {exc.claim} claim is invalid") from None


def _caller_of(trusted: TrustedIssuer, claims: dict[str, Any]) -> Caller:
    user = claims.get(trusted.user_claim)
    if isinstance(user, int) and not isinstance(user, bool):
        user = str(user)
    if not isinstance(user, str) or not user or len(user) > MAX_USER_ID_CHARS:
        raise refused(f"the token's {trusted.user_claim} claim does not name a user")
    claimed = claims.get(trusted.role_claim) if trusted.role_claim else None
    role: Role = claimed if claimed in STAFF_ROLES else "user"
    return Caller(
        tenant_id=trusted.tenant_id,
        tenant_name=trusted.tenant_name,
        role=role,
        key_id=None,
        user_id=user,
        settings=trusted.settings,
    )
