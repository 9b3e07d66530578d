"""The OpenAI request bodies the node accepts, validated before they reach llama.cpp so
that bad input is a 400 naming the field (OpenAI's error shape), never a 500."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from node_runtime.errors import BadRequest

Path = Literal["/chat/completions", "/completions", "/embeddings"]


class _Body(BaseModel):
    # Unknown OpenAI fields (user, n, logprobs, ...) are accepted and ignored.
    model_config = ConfigDict(extra="allow")

    model: str
    stream: bool | None = None
    stream_options: dict[str, Any] | None = None


class _Sampling(_Body):
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[int, float] | None = None


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None

    @field_validator("content")
    @classmethod
    def _flatten(cls, v: str | list[ContentPart] | None) -> str | None:
        # The official clients may send [{"type": "text", "text": "..."}]; llama.cpp's
        # chat templates want a string.
        if isinstance(v, list):
            return "".join(p.text for p in v)
        return v


class ChatRequest(_Sampling):
    messages: list[Message] = Field(min_length=1)


class CompletionRequest(_Sampling):
    prompt: str | list[str]

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, v: str | list[str]) -> str:
        if isinstance(v, list):
            if len(v) != 1:
                raise ValueError("only one prompt per request is supported")
            return v[0]
        return v


class EmbeddingRequest(_Body):
    input: str | list[str]

    @field_validator("input")
    @classmethod
    def _non_empty(cls, v: str | list[str]) -> list[str]:
        v = [v] if isinstance(v, str) else v
        if not v:
            raise ValueError("must be a string or a non-empty list of strings")
        return v


_MODELS: dict[str, type[_Body]] = {
    "/chat/completions": ChatRequest,
    "/completions": CompletionRequest,
    "/embeddings": EmbeddingRequest,
}


def _union_member(part: int | str) -> bool:
    """pydantic names the union member that failed (``stop.str``); users want ``stop``."""
    return isinstance(part, str) and (
        part in ("str", "int", "float", "bool", "dict", "none") or "[" in part
    )


def validate(path: str, body: dict[str, Any]) -> dict[str, Any]:
    """The body with its known fields checked and normalised (content parts flattened,
    one prompt, a list of inputs); raises BadRequest naming the first bad field."""
    try:
        parsed = _MODELS[path].model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        param = ".".join(str(p) for p in err["loc"] if not _union_member(p)) or None
        raise BadRequest(f"{param}: {err['msg']}", param=param) from exc
    out = parsed.model_dump(exclude_none=True)
    if "logit_bias" in out:
        out["logit_bias"] = {int(k): float(v) for k, v in out["logit_bias"].items()}
    return out
