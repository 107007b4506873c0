"""TLS for IMAP and SMTP: always verifying, never a silent fallback to plain text."""

from __future__ import annotations

import ssl
from pathlib import Path


def tls_context(security: str, ca_file: Path | None) -> ssl.SSLContext | None:
    """A verifying context, or None for ``security = "none"`` (loading the CAs costs ~20 ms)."""
    if security == "none":
        return None
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
