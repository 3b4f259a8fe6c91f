"""Secrets at rest: webhook secrets, STOW-RS auth headers and the like, encrypted in the index.

Values are stored as ``enc:v1:<Fernet token>`` (AES-128-CBC + HMAC-SHA256, from ``cryptography``).
The key is ``secrets_key`` (``TELERAD_SECRETS_KEY``: a Fernet key, i.e. url-safe base64 of 32
bytes; ``python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"``)
or, when that is not set, derived from ``secret_key`` with HKDF-SHA256. Changing the key makes the
stored secrets unreadable (they must be entered again); the error says so.

A value may instead name an environment variable, ``env:NAME``: the index then stores only that
reference and the secret is read from the process environment when it is used.

The key is process-wide: :func:`install` is called by ``telerad.settings.load_settings`` (every
entry point goes through it); before that, the key of the default settings is used, which
``telerad.settings`` hands in with :func:`set_default_settings` (this module imports nothing of it).
"""

from __future__ import annotations

import base64
import os
import re
import threading
from collections.abc import Callable

from telerad.errors import ConfigError

PREFIX = "enc:v1:"
ENV_PREFIX = "env:"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_HKDF_INFO = b"telerad secrets at rest v1"


class SecretError(ConfigError):
    """A stored secret cannot be decrypted or its environment variable is missing."""


def _fernet(key: bytes):
    from cryptography.fernet import Fernet

    return Fernet(key)


def derive_key(secret_key: str) -> bytes:
    """A Fernet key derived from ``secret_key`` (HKDF-SHA256, fixed salt and info)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"telerad", info=_HKDF_INFO).derive(secret_key.encode())
    return base64.urlsafe_b64encode(raw)


class SecretBox:
    def __init__(self, key: bytes):
        try:
            self._f = _fernet(key)
        except (ValueError, TypeError):
            raise ConfigError("setting 'secrets_key': must be a Fernet key (url-safe base64 of 32 bytes)") from None

    @classmethod
    def from_settings(cls, settings) -> "SecretBox":
        key = getattr(settings, "secrets_key", None)
        return cls(key.encode() if key else derive_key(settings.secret_key))

    def seal(self, value: str | None) -> str | None:
        """The stored form of ``value``: encrypted, or kept as an ``env:NAME`` reference."""
        if value is None or value.startswith(PREFIX):
            return value
        if value.startswith(ENV_PREFIX):
            check_env_reference(value)
            return value
        return PREFIX + self._f.encrypt(value.encode()).decode("ascii")

    def open(self, stored: str | None, what: str = "secret") -> str | None:
        """The usable value of a stored secret (decrypted, or read from the named variable)."""
        if stored is None:
            return None
        if stored.startswith(ENV_PREFIX):
            name = check_env_reference(stored)
            value = os.environ.get(name)
            if value is None:
                raise SecretError(f"{what}: environment variable {name} is not set")
            return value
        if not stored.startswith(PREFIX):
            return stored  # written before encryption existed; sealed again on the next write
        from cryptography.fernet import InvalidToken

        try:
            return self._f.decrypt(stored[len(PREFIX):].encode("ascii")).decode()
        except (InvalidToken, ValueError):
            raise SecretError(f"{what} cannot be decrypted: 'secrets_key' (or 'secret_key') changed since it "
                              "was stored; enter the secret again") from None


def check_env_reference(value: str) -> str:
    name = value[len(ENV_PREFIX):]
    if not _ENV_NAME.match(name):
        raise ValueError(f"'{value}' should be env:NAME with NAME an environment variable name")
    return name


def resolve_env(value: str | None, what: str) -> str | None:
    """A config value that may be ``env:NAME`` (read now) or a literal."""
    if value is None or not value.startswith(ENV_PREFIX):
        return value
    name = check_env_reference(value)
    got = os.environ.get(name)
    if got is None:
        raise SecretError(f"{what}: environment variable {name} is not set")
    return got


_lock = threading.Lock()
_box: SecretBox | None = None
_default_settings: Callable[[], object] | None = None


def set_default_settings(factory: Callable[[], object]) -> None:
    """Where the key comes from before :func:`install`: ``factory()``, the default settings (built when first needed)."""
    global _default_settings
    with _lock:
        _default_settings = factory


def install(settings) -> SecretBox:
    """Use the key of ``settings`` for this process (called when settings are loaded)."""
    global _box
    box = SecretBox.from_settings(settings)
    with _lock:
        _box = box
    return box


def box() -> SecretBox:
    global _box
    with _lock:
        if _box is None:
            if _default_settings is None:
                raise SecretError("no key for secrets at rest: load the settings first (telerad.settings.load_settings)")
            _box = SecretBox.from_settings(_default_settings())
        return _box


def seal(value: str | None) -> str | None:
    return box().seal(value)


def unseal(stored: str | None, what: str = "secret") -> str | None:
    return box().open(stored, what)
