"""GGUF header parsing and its type tables, checked against the ``gguf`` package.

The server cannot import ``gguf`` (a dev dependency), so it keeps its own copies
of the enums; these tests fail as soon as a new ``gguf`` release adds a type the
copies lack, instead of a model showing "type 38" as its quantisation."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFValueType, GGUFWriter, LlamaFileType

from registry.gguf import (
    ARRAY_TYPE,
    FILE_TYPES,
    SCALAR_FORMATS,
    STRING_TYPE,
    TENSOR_TYPES,
    InvalidGGUF,
    parse_header,
)

# Not a file type: llama.cpp's flag for "guessed, not stored in the file".
NOT_STORED = {LlamaFileType.GUESSED}


def test_file_types_are_llama_cpps():
    expected = {
        t.value: t.name.removeprefix("MOSTLY_").removeprefix("ALL_")
        for t in LlamaFileType
        if t not in NOT_STORED
    }
    assert expected == FILE_TYPES


def test_tensor_types_are_ggmls():
    assert {t.value: t.name for t in GGMLQuantizationType} == TENSOR_TYPES


def test_value_types_are_ggufs_with_the_same_binary_layout():
    assert {*SCALAR_FORMATS, STRING_TYPE, ARRAY_TYPE} == {t.value for t in GGUFValueType}
    assert STRING_TYPE == GGUFValueType.STRING and ARRAY_TYPE == GGUFValueType.ARRAY
    # The writer's own struct formats: what a value of each type looks like on disk.
    written = {t.value: fmt for t, fmt in GGUFWriter._simple_value_packing.items()}
    assert written == SCALAR_FORMATS


def _header(tmp_path, *, file_type=None, tensor=None) -> bytes:
    path = tmp_path / "m.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.add_name("unit")
    writer.add_context_length(2048)
    if file_type is not None:
        writer.add_file_type(file_type)
    writer.add_tensor(
        "output_norm.weight", np.ones(64, dtype=np.float32) if tensor is None else tensor
    )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes()


def test_newer_quantisations_are_named(tmp_path):
    info = parse_header(_header(tmp_path, file_type=LlamaFileType.MOSTLY_MXFP4_MOE))
    assert info is not None and info.file_type == "MXFP4_MOE"


def test_without_a_file_type_the_commonest_tensor_type_names_it(tmp_path):
    info = parse_header(_header(tmp_path, tensor=np.ones(64, dtype=np.float16)))
    assert info is not None and info.file_type == "F16"
    assert info.architecture == "llama" and info.context_length == 2048
    assert info.parameter_count == 64 and info.tensor_count == 1


def test_an_unknown_file_type_still_says_its_number(tmp_path):
    info = parse_header(_header(tmp_path, file_type=999))
    assert info is not None and info.file_type == "type 999"


def test_a_prefix_asks_for_more_bytes_and_the_whole_header_is_enough(tmp_path):
    data = _header(tmp_path)
    info = parse_header(data)
    assert info is not None
    assert parse_header(data[: info.header_bytes - 1]) is None
    assert parse_header(data[: info.header_bytes]) == info


def test_a_file_that_is_not_gguf_is_refused_from_its_first_bytes():
    with pytest.raises(InvalidGGUF, match="not a GGUF file.*convert_hf_to_gguf"):
        parse_header(b"PK\x03\x04")


def test_an_unsupported_version_is_refused():
    with pytest.raises(InvalidGGUF, match="unsupported GGUF version 1"):
        parse_header(b"GGUF" + struct.pack("<I", 1) + bytes(16))


def test_nested_arrays_are_refused_not_recursed():
    """Arrays of arrays, nested deeper than the interpreter's stack: an InvalidGGUF
    naming the problem, never a RecursionError."""
    key = struct.pack("<Q", 1) + b"k"
    nested = struct.pack("<IIQ", 9, 9, 1) * 5000
    header = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + key + nested
    with pytest.raises(InvalidGGUF, match="array of arrays"):
        parse_header(header)
