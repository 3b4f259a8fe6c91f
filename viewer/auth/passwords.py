"""Password hashing with argon2id (argon2-cffi); the plain password is never stored or logged."""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()  # argon2id, the library's RFC 9106 low-memory profile
MIN_LENGTH = 8
_DUMMY = _hasher.hash("not-a-real-password-0")


def hash_password(password: str) -> str:
    if len(password) < MIN_LENGTH:
        raise ValueError(f"the password must have at least {MIN_LENGTH} characters")
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; spends the same time when the user does not exist (``None``)."""
    try:
        return _hasher.verify(stored_hash or _DUMMY, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def generate_password() -> str:
    """A random password for demo accounts (printed once, stored only as a hash)."""
    return secrets.token_urlsafe(12)
