"""Secrets at rest: AES-256-GCM with keys from the environment. `cryptography` lives here.

Each sealed value records the id of the key that sealed it, so keys can
rotate: a new key is put first (it seals from then on), old ones stay listed
until every value sealed with them has been re-sealed. The row's identity
goes in as associated data, so a ciphertext copied onto another row does not
open.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from infra.errors import PermanentError

NONCE_BYTES = 12


@dataclass(frozen=True)
class Sealed:
    key_id: str
    data: bytes  # nonce || ciphertext || tag


class Vault:
    def __init__(self, keys: dict[str, bytes], active: str | None) -> None:
        for key_id, key in keys.items():
            if len(key) != 32:
                raise ValueError(f"encryption key {key_id!r} must be 32 bytes (AES-256)")
        self._keys = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self._active = active

    @classmethod
    def from_setting(cls, value: str) -> Vault:
        """Parse "id:base64key,id2:base64key"; the first one seals."""
        keys: dict[str, bytes] = {}
        for part in filter(None, (p.strip() for p in value.split(","))):
            key_id, sep, encoded = part.partition(":")
            if not sep or not key_id:
                raise ValueError("encryption keys are 'id:base64key' pairs")
            keys[key_id] = base64.b64decode(encoded)
        return cls(keys, next(iter(keys), None))

    @staticmethod
    def new_key_setting(key_id: str = "k1") -> str:
        return f"{key_id}:{base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()}"

    @property
    def active_key_id(self) -> str | None:
        return self._active

    @property
    def retired_key_ids(self) -> list[str]:
        """Keys that still open old values but no longer seal new ones."""
        return [key_id for key_id in self._keys if key_id != self._active]

    def seal(self, plaintext: bytes, context: bytes) -> Sealed:
        if self._active is None:
            raise PermanentError("no encryption key configured (AYUSH_ENCRYPTION_KEYS)")
        nonce = os.urandom(NONCE_BYTES)
        data = self._keys[self._active].encrypt(nonce, plaintext, context)
        return Sealed(self._active, nonce + data)

    def open(self, sealed: Sealed, context: bytes) -> bytes:
        cipher = self._keys.get(sealed.key_id)
        if cipher is None:
            raise PermanentError(f"encryption key {sealed.key_id!r} is not configured")
        try:
            return cipher.decrypt(sealed.data[:NONCE_BYTES], sealed.data[NONCE_BYTES:], context)
        except InvalidTag as exc:
            raise PermanentError("sealed value does not open: wrong key or row") from exc


class DataKey:
    """One user's data key (AES-256-GCM), for sealing that user's events: the key ring
    seals the key itself (envelope encryption), so destroying its row shreds them all."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("a data key is 32 bytes (AES-256)")
        self._cipher = AESGCM(key)

    @staticmethod
    def generate() -> bytes:
        return AESGCM.generate_key(bit_length=256)

    def seal(self, plaintext: bytes, context: bytes) -> bytes:
        """nonce || ciphertext || tag, bound to `context` (it opens with that only)."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._cipher.encrypt(nonce, plaintext, context)

    def open(self, data: bytes, context: bytes) -> bytes:
        try:
            return self._cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], context)
        except InvalidTag as exc:
            raise PermanentError("sealed data does not open: wrong key or event") from exc
