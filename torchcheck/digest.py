"""The digest behind cache keys and content hashes.

blake2b comes from CPython's built-in `_blake2` module: `import hashlib` loads OpenSSL first, which
takes longer than linting a small script."""
try:
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - an interpreter built without it
    from hashlib import blake2b

__all__ = ["blake2b"]
