"""No secret in any log line, whoever logs it.

Libraries log what they send: httpx logs every request URL at INFO, and a presigned
S3 URL carries its credential and signature in the query string. Rather than tune
each library's logger (and miss the next one), every log record is checked once, as
it is created, and anything that looks like a secret is replaced before a handler
sees it: presigned query strings, bearer tokens, Hangar's own key formats (API keys,
enrollment tokens, node credentials), and the configured secrets themselves.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable

REDACTED = "[redacted]"

_PATTERNS = [
    # A presigned URL's whole query string (X-Amz-Credential, -Signature, -Security-Token...).
    (re.compile(r"\?[^\s\"'<>]*X-Amz-[^\s\"'<>]*", re.IGNORECASE), "?" + REDACTED),
    (re.compile(r"(Bearer\s+)[^\s\"',]+", re.IGNORECASE), r"\1" + REDACTED),
    # Hangar's credentials: hgr_ API keys, hgt_ enrollment tokens, hgn_ node credentials.
    (re.compile(r"\bhg[rtn]_[A-Za-z0-9_-]{8,}"), REDACTED),
]

_secrets: set[str] = set()
_lock = threading.Lock()
_installed = False


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def install(secrets: Iterable[str] = ()) -> None:
    """Redact every log record from now on, and these values wherever they appear.
    Safe to call again (each process's components call it; tests build several)."""
    global _installed
    with _lock:
        # Very short values would redact ordinary words; real secrets are long.
        _secrets.update(s for s in secrets if s and len(s) >= 8)
        if _installed:
            return
        _installed = True
        make_record = logging.getLogRecordFactory()

        def redacting_record(*args, **kwargs) -> logging.LogRecord:
            record = make_record(*args, **kwargs)
            try:
                message = record.getMessage()
            except Exception:  # a malformed call is the logging module's to report
                return record
            clean = redact(message)
            if clean != message:
                record.msg, record.args = clean, None
            return record

        logging.setLogRecordFactory(redacting_record)
