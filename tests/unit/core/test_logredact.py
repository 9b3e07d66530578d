"""Redaction of secrets in log lines, whichever library writes them."""

from __future__ import annotations

import logging

from core import logredact


def test_presigned_queries_tokens_and_configured_secrets_are_redacted(caplog):
    logredact.install(["s3-secret-value-123"])
    caplog.set_level(logging.DEBUG)
    url = (
        "http://s3:8333/b/k?partNumber=1&uploadId=u&X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIA%2F20260101&X-Amz-Signature=abc123def"
    )
    logging.getLogger("httpx").info('HTTP Request: PUT %s "HTTP/1.1 200 OK"', url)
    logging.getLogger("x.y").debug("headers: Authorization: Bearer tok_abcdefghijkl")
    logging.getLogger("x").warning("key hgr_AbCdEfGhIjKlMnOp and %s", "s3-secret-value-123")
    text = "\n".join(r.getMessage() for r in caplog.records)
    for secret in [
        "X-Amz-Signature",
        "X-Amz-Credential",
        "abc123def",
        "tok_abcdefghijkl",
        "hgr_AbCdEfGhIjKlMnOp",
        "s3-secret-value-123",
    ]:
        assert secret not in text
    assert "http://s3:8333/b/k?[redacted]" in text
    assert "PUT" in text and "200 OK" in text  # the rest of the line stays readable
