"""Sealing secrets at rest: AES-256-GCM round trips, and every way a sealed value must fail to open."""

from __future__ import annotations

import pytest

from kassa.shared.crypto import KEY_BYTES, DecryptionFailed, KeyRing, key_id, new_key

AAD = b"webhook-secret:t1:e1"


def test_a_sealed_value_opens_with_its_key_and_context_and_hides_the_plaintext() -> None:
    ring = KeyRing(new_key())
    secret = b"whsec_0123456789abcdef0123456789abcdef"
    sealed = ring.seal(secret, aad=AAD)
    assert ring.open(sealed, aad=AAD) == secret
    assert secret not in sealed and secret[6:20] not in sealed
    assert sealed[:1] == b"\x01" and sealed[1:9] == key_id(ring.primary)
    assert len(sealed) == 1 + 8 + 12 + len(secret) + 16
    assert ring.seal(secret, aad=AAD) != sealed  # a fresh nonce every time


def test_a_sealed_value_does_not_open_in_another_context_or_under_another_key() -> None:
    ring = KeyRing(new_key())
    sealed = ring.seal(b"s", aad=AAD)
    with pytest.raises(DecryptionFailed):
        ring.open(sealed, aad=b"webhook-secret:t1:e2")
    with pytest.raises(DecryptionFailed):
        KeyRing(new_key()).open(sealed, aad=AAD)


@pytest.mark.parametrize("index", [0, 1, 9, 20, 21, -16, -1])
def test_any_flipped_byte_makes_a_sealed_value_fail_to_open(index: int) -> None:
    ring = KeyRing(new_key())
    sealed = bytearray(ring.seal(b"whsec_abc", aad=AAD))
    sealed[index] ^= 0x01
    with pytest.raises(DecryptionFailed):
        ring.open(bytes(sealed), aad=AAD)


def test_truncated_or_empty_values_fail_to_open() -> None:
    ring = KeyRing(new_key())
    sealed = ring.seal(b"whsec_abc", aad=AAD)
    for broken in (b"", sealed[:36], sealed[:-1]):
        with pytest.raises(DecryptionFailed):
            ring.open(broken, aad=AAD)


def test_after_a_rotation_old_values_still_open_and_new_ones_use_the_new_key() -> None:
    old = KeyRing(new_key())
    sealed_before = old.seal(b"before", aad=AAD)
    rotated = KeyRing(new_key(), retired=(old.primary,))
    assert rotated.open(sealed_before, aad=AAD) == b"before"
    assert rotated.needs_reseal(sealed_before)
    sealed_after = rotated.seal(b"after", aad=AAD)
    assert not rotated.needs_reseal(sealed_after)
    with pytest.raises(DecryptionFailed):
        old.open(sealed_after, aad=AAD)


def test_data_keys_are_wrapped_under_the_master_key_for_envelope_encryption() -> None:
    master = KeyRing(new_key())
    data_key = new_key()
    wrapped = master.wrap_key(data_key, aad=b"tenant:t1")
    assert data_key not in wrapped
    assert master.unwrap_key(wrapped, aad=b"tenant:t1") == data_key
    with pytest.raises(DecryptionFailed):
        master.unwrap_key(wrapped, aad=b"tenant:t2")
    with pytest.raises(DecryptionFailed):
        master.open(wrapped, aad=b"tenant:t1")  # a wrapped key is not a sealed value
    with pytest.raises(DecryptionFailed):
        master.unwrap_key(master.seal(data_key, aad=b"tenant:t1"), aad=b"tenant:t1")
    pii = KeyRing(master.unwrap_key(wrapped, aad=b"tenant:t1")).seal(b"Jane Doe", aad=b"customer:c1:name")
    assert KeyRing(data_key).open(pii, aad=b"customer:c1:name") == b"Jane Doe"


def test_keys_are_32_bytes_and_never_shown_by_repr() -> None:
    key = new_key()
    assert len(key) == KEY_BYTES
    assert key.hex() not in repr(KeyRing(key)) and str(key) not in repr(KeyRing(key))
    with pytest.raises(Exception, match="32 bytes"):
        KeyRing(b"short")
