"""``Range`` headers (RFC 9110) as the blob download reads them."""

from __future__ import annotations

import pytest

from core.errors import RangeNotSatisfiable
from registry.downloads import ByteRange, parse_range

SIZE = 1000


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=900-", 900, 999),  # resume: from an offset to the end
        ("bytes=-100", 900, 999),  # suffix: the last 100 bytes
        ("bytes=-5000", 0, 999),  # a suffix longer than the file is the whole file
        ("bytes=500-5000", 500, 999),  # an end past the file stops at its last byte
        ("bytes=999-999", 999, 999),
        (" bytes=0-0 ", 0, 0),
    ],
)
def test_a_single_range_is_served_as_a_part(header, start, end):
    assert parse_range(header, SIZE) == ByteRange(start, end, partial=True)
    assert parse_range(header, SIZE).length == end - start + 1


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "bytes=-",
        "bytes=0-1,5-6",  # multi-range: the RFC lets a server send the whole file
        "items=0-1",
        "bytes=abc-",
        "bytes=" + "9" * 20 + "-",  # past any int64 offset: not a range we serve
    ],
)
def test_anything_else_gets_the_whole_file(header):
    assert parse_range(header, SIZE) == ByteRange(0, SIZE - 1, partial=False)


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000", "bytes=5-3", "bytes=-0"])
def test_a_range_outside_the_file_is_416_with_the_size(header):
    with pytest.raises(RangeNotSatisfiable) as refused:
        parse_range(header, SIZE)
    assert refused.value.status == 416
    assert refused.value.headers == {"Content-Range": "bytes */1000"}
    assert "outside this 1000-byte file" in refused.value.message
