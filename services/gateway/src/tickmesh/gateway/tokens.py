"""Access tokens (HS256 JWTs with a `kid`, several keys accepted) and opaque refresh tokens."""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal, cast

import jwt

from tickmesh.core.errors import Unauthenticated
from tickmesh.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)

Role = Literal["viewer", "trader", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "trader", "admin")
ALGORITHM = "HS256"
ISSUER = "tickmesh-gateway"
_REQUIRED_CLAIMS = ["exp", "iat", "sub", "iss", "typ"]
_VERIFIED_TOKENS = 10_000


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """What a verified access token says about its bearer."""

    user_id: int
    username: str
    role: Role
    expires_at: datetime
    # The user's session generation when the token was issued; a password change or an admin
    # reset moves the user's on, and older tokens stop working (tokens without it: 0).
    generation: int = 0


@dataclass(frozen=True)
class KeyRing:
    """Signing keys by `kid`: one active for signing, every one accepted for verifying."""

    keys: dict[str, bytes]
    active_kid: str
    access_lifetime: timedelta
    # Tokens already verified, by their exact text: the same signature verifies the same way,
    # only the expiry is checked again. Bounded; cleared when full.
    _verified: dict[str, AccessClaims] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> KeyRing:
        """The configured keys; in development without a secret, a per-process random one."""
        keys = {
            kid: key.get_secret_value().encode()
            for kid, key in settings.gateway_jwt_previous_keys.items()
        }
        if settings.gateway_jwt_secret is None:
            # Tokens then die with the process and are not shared by replicas: fine for a
            # laptop, refused in production by the settings.
            log.warning(
                "TICKMESH_GATEWAY_JWT_SECRET unset: signing with a random per-process key "
                "(development only; tokens will not survive a restart)"
            )
            active = secrets.token_bytes(32)
        else:
            active = settings.gateway_jwt_secret.get_secret_value().encode()
        keys[settings.gateway_jwt_kid] = active
        return cls(
            keys=keys,
            active_kid=settings.gateway_jwt_kid,
            access_lifetime=timedelta(minutes=settings.gateway_access_token_minutes),
        )

    def issue_access_token(
        self,
        user_id: int,
        username: str,
        role: Role,
        now: datetime | None = None,
        generation: int = 0,
    ) -> tuple[str, datetime]:
        """A signed access token for the user and its expiry time."""
        issued = now or datetime.now(UTC)
        expires = issued + self.access_lifetime
        claims = {
            "sub": str(user_id),
            "name": username,
            "role": role,
            "typ": "access",
            "gen": generation,
            "iss": ISSUER,
            "iat": issued,
            "exp": expires,
        }
        token = jwt.encode(
            claims,
            self.keys[self.active_kid],
            algorithm=ALGORITHM,
            headers={"kid": self.active_kid},
        )
        return token, expires

    def verify_access_token(self, token: str) -> AccessClaims:
        """The claims of a valid access token; Unauthenticated saying why otherwise."""
        claims = self._verified.get(token)
        if claims is not None and claims.expires_at > datetime.now(UTC):
            return claims
        claims = self._verify(token)
        if len(self._verified) >= _VERIFIED_TOKENS:
            self._verified.clear()
        self._verified[token] = claims
        return claims

    def _verify(self, token: str) -> AccessClaims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise Unauthenticated("malformed access token") from None
        kid = header.get("kid")
        # The header is attacker-controlled: only its kid picks a key; the algorithm is ours.
        key = self.keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise Unauthenticated("access token signed with an unknown key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": _REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("access token expired") from None
        except jwt.InvalidTokenError as error:
            raise Unauthenticated(f"invalid access token: {error}") from None
        return _claims_from(claims)


def _claims_from(claims: dict[str, object]) -> AccessClaims:
    role = claims.get("role")
    subject = claims.get("sub")
    username = claims.get("name")
    if claims.get("typ") != "access" or role not in ROLES:
        raise Unauthenticated("invalid access token: not an access token")
    if not isinstance(subject, str) or not subject.isdigit() or not isinstance(username, str):
        raise Unauthenticated("invalid access token: bad subject")
    generation = claims.get("gen", 0)
    if not isinstance(generation, int) or isinstance(generation, bool):
        raise Unauthenticated("invalid access token: bad generation")
    expires = claims.get("exp")
    return AccessClaims(
        user_id=int(subject),
        username=username,
        role=role,
        expires_at=datetime.fromtimestamp(float(cast(int, expires)), UTC),
        generation=generation,
    )


def new_refresh_token() -> str:
    """A fresh opaque refresh token (256 random bits)."""
    return secrets.token_urlsafe(32)


def hash_refresh_token(token: str) -> str:
    """The stored form of a refresh token: a leaked table row cannot be replayed."""
    return hashlib.sha256(token.encode()).hexdigest()
