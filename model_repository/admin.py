"""The admin key that guards tritonserver's restricted APIs: where it comes from, how callers send it.

One key guards every restricted group, on HTTP and on gRPC alike (docs/security.md). It travels in a
command-line flag (`<groups>:<header>=<key>`, model_repository/flags.py) and in a header, so its
characters are limited; a key made for one run lives in a 0600 file and is never printed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from model_repository.paths import PROJECT
from model_repository.wheel import ServerError

# Health, metadata, model-config and inference stay open: probes and clients need nothing but the address.
RESTRICTED_GROUPS = ("shared-memory", "model-repository", "statistics", "trace", "logging")
OPEN_GROUPS = ("health", "metadata", "model-config", "inference")
ADMIN_KEY_ENV = "PADDLECLAS_TRITON_ADMIN_KEY"  # the key itself (Kubernetes: from a Secret)
ADMIN_HEADER = "admin-key"  # HTTP header name; gRPC adds Triton's prefix (header_name)
GRPC_HEADER_PREFIX = "triton-grpc-protocol-"  # tritonserver 2.51 expects it on gRPC metadata
ADMIN_KEYS_DIR = PROJECT / "build" / "admin-keys"  # random per-run keys, 0600, removed at stop
_KEY = re.compile(r"[A-Za-z0-9._~+/-]{16,512}")


def header_name(protocol: str) -> str:
    """The admin header as the protocol carries it: `admin-key` (HTTP), `triton-grpc-protocol-admin-key` (gRPC)."""
    if protocol not in ("http", "grpc"):
        raise ValueError(f"protocol must be 'http' or 'grpc', not {protocol!r}")
    return ADMIN_HEADER if protocol == "http" else GRPC_HEADER_PREFIX + ADMIN_HEADER


def admin_headers(protocol: str, key: str | None) -> dict[str, str] | None:
    """Headers for a restricted call (tritonclient's `headers=`); None without a key."""
    return {header_name(protocol): key} if key else None


def check_key(key: str, source: str) -> str:
    key = key.strip()
    if not _KEY.fullmatch(key):
        raise ServerError(
            f"the admin key from {source} must be 16 to 512 characters of A-Z a-z 0-9 . _ ~ + / - "
            "(it travels in a tritonserver flag and a header)"
        )
    return key


def read_key_file(path: Path) -> str:
    try:
        return check_key(Path(path).read_text(), str(path))
    except OSError as err:
        raise ServerError(f"cannot read the admin key file {path}: {err.strerror}") from None


def key_from_environment(env: dict[str, str] | None = None) -> str | None:
    """$PADDLECLAS_TRITON_ADMIN_KEY, checked; None when unset or empty."""
    value = (os.environ if env is None else env).get(ADMIN_KEY_ENV, "")
    return check_key(value, f"${ADMIN_KEY_ENV}") if value.strip() else None


def write_key_file(path: Path, key: str) -> Path:
    """Write `key` to a new file only its owner can read (0600, in a 0700 directory)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return path
