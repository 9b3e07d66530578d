"""Read a GGUF header from the first bytes of a file, without the tensor data.

Uploads stream, so the parser works on a growing prefix: ``parse_header(prefix)``
returns ``None`` while the header is still incomplete and raises ``InvalidGGUF``
as soon as the bytes cannot be a GGUF file. Format reference:
https://github.com/ggml-org/ggml/blob/master/docs/gguf.md (versions 2 and 3).
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import asdict, dataclass
from math import prod
from typing import Any

MAGIC = b"GGUF"

# The tables below mirror the ``gguf`` package's enums (GGUFValueType, LlamaFileType,
# GGMLQuantizationType). That package is a dev dependency only, so the server copies
# them; tests/unit/registry/test_gguf.py compares the copies with the enums.

# GGUF metadata value types -> struct format (scalars only).
SCALAR_FORMATS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
STRING_TYPE, ARRAY_TYPE = 8, 9

# llama.cpp's LLAMA_FTYPE values (general.file_type).
FILE_TYPES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
    38: "MXFP4_MOE",
    39: "NVFP4",
    40: "Q1_0",
}
# ggml tensor types, used when general.file_type is absent.
TENSOR_TYPES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    6: "Q5_0",
    7: "Q5_1",
    8: "Q8_0",
    9: "Q8_1",
    10: "Q2_K",
    11: "Q3_K",
    12: "Q4_K",
    13: "Q5_K",
    14: "Q6_K",
    15: "Q8_K",
    16: "IQ2_XXS",
    17: "IQ2_XS",
    18: "IQ3_XXS",
    19: "IQ1_S",
    20: "IQ4_NL",
    21: "IQ3_S",
    22: "IQ2_S",
    23: "IQ4_XS",
    24: "I8",
    25: "I16",
    26: "I32",
    27: "I64",
    28: "F64",
    29: "IQ1_M",
    30: "BF16",
    34: "TQ1_0",
    35: "TQ2_0",
    39: "MXFP4",
    40: "NVFP4",
    41: "Q1_0",
}

# The memory estimate assumes the node loads the model with at most this context.
ESTIMATE_CONTEXT = 4096
_MAX_STRING = 64 * 1024 * 1024


class InvalidGGUF(ValueError):
    """The bytes are not a readable GGUF file; the message says why."""


class _Incomplete(Exception):
    pass


@dataclass(frozen=True)
class GGUFInfo:
    version: int
    architecture: str | None
    name: str | None
    parameter_count: int
    tensor_count: int
    file_type: str | None
    context_length: int | None
    block_count: int | None
    embedding_length: int | None
    head_count: int | None
    head_count_kv: int | None
    header_bytes: int

    def estimated_memory_bytes(self, file_size: int) -> int:
        """Weights + f16 KV cache for ``ESTIMATE_CONTEXT`` tokens + 5 % compute buffers.
        With grouped-query attention the cache holds only the KV heads' share."""
        kv = 0
        if self.block_count and self.embedding_length:
            ctx = min(self.context_length or ESTIMATE_CONTEXT, ESTIMATE_CONTEXT)
            width = self.embedding_length
            if self.head_count and self.head_count_kv:
                width = width * self.head_count_kv // self.head_count
            kv = 2 * self.block_count * ctx * width * 2
        return file_size + kv + max(file_size // 20, 32 * 1024 * 1024)

    def as_dict(self, file_size: int) -> dict[str, Any]:
        return asdict(self) | {
            "estimated_memory_bytes": self.estimated_memory_bytes(file_size),
            "estimate_context": ESTIMATE_CONTEXT,
        }


class _Reader:
    def __init__(self, data: bytes | bytearray | memoryview):
        self.data = memoryview(data)
        self.pos = 0

    def take(self, n: int) -> memoryview:
        end = self.pos + n
        if end > len(self.data):
            raise _Incomplete
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def unpack(self, fmt: str) -> Any:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))[0]

    def string(self) -> str:
        length = self.unpack("Q")
        if length > _MAX_STRING:
            raise InvalidGGUF(
                f"corrupt GGUF header: a string of {length} bytes at offset {self.pos}"
            )
        # NUL cannot be stored in Postgres text/JSON; it carries no meaning in a name.
        return bytes(self.take(length)).decode("utf-8", errors="replace").replace("\x00", "")

    def value(self, vtype: int) -> Any:
        if vtype in SCALAR_FORMATS:
            return self.unpack(SCALAR_FORMATS[vtype])
        if vtype == STRING_TYPE:
            return self.string()
        if vtype == ARRAY_TYPE:
            item_type, count = self.unpack("I"), self.unpack("Q")
            if item_type == ARRAY_TYPE:
                # llama.cpp refuses arrays of arrays too; reading them recursively would
                # let a few bytes of header exhaust the parser's stack.
                raise InvalidGGUF(
                    f"corrupt GGUF header: an array of arrays at offset {self.pos} "
                    "(llama.cpp cannot load nested arrays)"
                )
            if item_type in SCALAR_FORMATS:  # skip fixed-size arrays in one step
                self.take(struct.calcsize("<" + SCALAR_FORMATS[item_type]) * count)
            else:
                for _ in range(count):
                    self.value(item_type)
            return _ArrayLen(count)
        raise InvalidGGUF(f"corrupt GGUF header: unknown value type {vtype} at offset {self.pos}")


class _ArrayLen(int):
    """Arrays (vocabularies, merges) are skipped; only their length is kept."""


def parse_header(prefix: bytes | bytearray | memoryview) -> GGUFInfo | None:
    """Parse the GGUF header in ``prefix``; ``None`` means "send more bytes"."""
    if len(prefix) >= 4 and bytes(prefix[:4]) != MAGIC:
        raise InvalidGGUF(
            f"not a GGUF file: it starts with {bytes(prefix[:4])!r}, a GGUF file starts with b'GGUF'. "
            "Convert the model with llama.cpp's convert_hf_to_gguf.py first."
        )
    reader = _Reader(prefix)
    try:
        reader.take(4)
        version = reader.unpack("I")
        if version not in (2, 3):
            raise InvalidGGUF(f"unsupported GGUF version {version}: Hangar reads versions 2 and 3")
        tensor_count, kv_count = reader.unpack("Q"), reader.unpack("Q")
        meta: dict[str, Any] = {}
        for _ in range(kv_count):
            key = reader.string()
            meta[key] = reader.value(reader.unpack("I"))
        params, types = 0, Counter()
        for _ in range(tensor_count):
            reader.string()
            n_dims = reader.unpack("I")
            if n_dims > 8:
                raise InvalidGGUF(f"corrupt GGUF header: a tensor with {n_dims} dimensions")
            dims = [reader.unpack("Q") for _ in range(n_dims)]
            types[reader.unpack("I")] += 1
            reader.unpack("Q")  # data offset
            params += prod(dims)
    except _Incomplete:
        return None
    arch = meta.get("general.architecture")
    ftype = meta.get("general.file_type")
    if isinstance(ftype, int):
        file_type = FILE_TYPES.get(ftype, f"type {ftype}")
    elif types:
        ttype = types.most_common(1)[0][0]
        file_type = TENSOR_TYPES.get(ttype, f"type {ttype}")
    else:
        file_type = None

    def arch_int(key: str) -> int | None:
        value = meta.get(f"{arch}.{key}")
        return int(value) if isinstance(value, int) and not isinstance(value, _ArrayLen) else None

    return GGUFInfo(
        version=version,
        architecture=arch if isinstance(arch, str) else None,
        name=meta.get("general.name") if isinstance(meta.get("general.name"), str) else None,
        parameter_count=params,
        tensor_count=tensor_count,
        file_type=file_type,
        context_length=arch_int("context_length"),
        block_count=arch_int("block_count"),
        embedding_length=arch_int("embedding_length"),
        head_count=arch_int("attention.head_count"),
        head_count_kv=arch_int("attention.head_count_kv"),
        header_bytes=reader.pos,
    )
