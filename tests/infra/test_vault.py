"""Sealing secrets at rest: AES-256-GCM, key ids for rotation, bound to their row."""

from __future__ import annotations

import pytest

from infra.errors import PermanentError
from infra.vault import Vault


def test_seal_open_and_rotate() -> None:
    old_setting = Vault.new_key_setting("k1")
    old = Vault.from_setting(old_setting)
    sealed = old.seal(b"xoxb-very-secret", b"row-1")
    assert sealed.key_id == "k1" and b"xoxb-very-secret" not in sealed.data
    assert old.open(sealed, b"row-1") == b"xoxb-very-secret"
    assert old.seal(b"xoxb-very-secret", b"row-1").data != sealed.data  # fresh nonce

    rotated = Vault.from_setting(f"{Vault.new_key_setting('k2')},{old_setting}")
    assert rotated.open(sealed, b"row-1") == b"xoxb-very-secret"  # old values still open
    assert rotated.seal(b"new", b"row-2").key_id == "k2"  # new ones use the new key


def test_wrong_row_wrong_key_or_no_key_refuse() -> None:
    vault = Vault.from_setting(Vault.new_key_setting("k1"))
    sealed = vault.seal(b"secret", b"row-1")
    with pytest.raises(PermanentError, match="does not open"):
        vault.open(sealed, b"row-2")  # copied onto another row
    other = Vault.from_setting(Vault.new_key_setting("k1"))
    with pytest.raises(PermanentError, match="does not open"):
        other.open(sealed, b"row-1")
    with pytest.raises(PermanentError, match="not configured"):
        Vault.from_setting(Vault.new_key_setting("k9")).open(sealed, b"row-1")
    with pytest.raises(PermanentError, match="no encryption key"):
        Vault.from_setting("").seal(b"x", b"row")
    with pytest.raises(ValueError, match="32 bytes"):
        Vault.from_setting("k1:c2hvcnQ=")
