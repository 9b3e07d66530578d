"""The OpenAI request bodies the node accepts, validated before they reach llama.cpp so
that bad input is a 400 naming the field (OpenAI's error shape), never a 500.

Honesty rule: a field that changes what a request means is either honoured or refused
with a 400 naming it. Fields that do not (``user``, ``metadata``, ``store``, …) are
accepted and ignored."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from node_runtime.errors import BadRequest

Path = Literal["/chat/completions", "/completions", "/embeddings"]

# Choices per request (n × prompts on /completions); more is a 400 naming the limit.
MAX_CHOICES = 8


class _Body(BaseModel):
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
    n: int | None = Field(None, ge=1, le=MAX_CHOICES)


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None

    @model_validator(mode="after")
    def _text_only(self) -> ContentPart:
        if self.type in ("image_url", "input_image"):
            raise ValueError("this model has no vision input: send text parts only")
        if self.type in ("input_audio", "audio"):
            raise ValueError("this model has no audio input: send text parts only")
        if self.type != "text" or self.text is None:
            raise ValueError(f"content part type {self.type!r} is not supported; use 'text'")
        return self


class Function(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(BaseModel):
    type: Literal["function"]
    function: Function


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    arguments: str | dict[str, Any] = "{}"


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str = ""
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @field_validator("content")
    @classmethod
    def _flatten(cls, v: str | list[ContentPart] | None) -> str | None:
        # The official clients may send [{"type": "text", "text": "..."}]; chat
        # templates want a string.
        if isinstance(v, list):
            return "".join(p.text or "" for p in v)
        return v


class NamedFunction(BaseModel):
    name: str


class NamedTool(BaseModel):
    type: Literal["function"]
    function: NamedFunction


class JsonSchema(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchema | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("type json_schema needs a json_schema {name, schema}")
        return self


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool | None = None


class ChatRequest(_Sampling):
    messages: list[Message] = Field(min_length=1)
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedTool | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)


TokenIds = list[int]


class CompletionRequest(_Sampling):
    prompt: str | list[str] | TokenIds | list[TokenIds]
    echo: bool | None = None
    logprobs: int | None = Field(None, ge=0, le=5)
    suffix: str | None = None
    best_of: int | None = Field(None, ge=1)

    @field_validator("prompt")
    @classmethod
    def _prompts(cls, v: Any) -> list:
        """Always a list of prompts, each a string or a list of token ids."""
        if isinstance(v, str):
            return [v]
        if v and all(isinstance(x, int) for x in v):
            return [v]
        if not v:
            raise ValueError("must be a string, a list of strings or token ids, not empty")
        return v


class EmbeddingRequest(_Body):
    input: str | list[str] | TokenIds | list[TokenIds]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(None, ge=1)

    @field_validator("input")
    @classmethod
    def _non_empty(cls, v: Any) -> list:
        if isinstance(v, str):
            return [v]
        if v and all(isinstance(x, int) for x in v):
            return [v]
        if not v or any(isinstance(x, list) and not x for x in v):
            raise ValueError("must be a string, a list of strings or of token ids, not empty")
        return v


_MODELS: dict[str, type[_Body]] = {
    "/chat/completions": ChatRequest,
    "/completions": CompletionRequest,
    "/embeddings": EmbeddingRequest,
}

# Meaning-changing fields the node does not implement: refused, never dropped.
_REFUSED: dict[str, dict[str, str]] = {
    "/chat/completions": {
        "functions": "the legacy 'functions' field is not supported; send 'tools'",
        "function_call": "the legacy 'function_call' field is not supported; send 'tool_choice'",
        "audio": "this node does not generate audio",
        "prediction": "predicted outputs are not supported; remove 'prediction'",
        "web_search_options": "this node has no web search (and never leaves your network)",
        "reasoning_effort": "this model has no reasoning-effort setting; remove it",
    },
    "/completions": {
        "suffix": "insertion (suffix) is not supported; remove 'suffix'",
    },
    "/embeddings": {},
}


def _union_member(part: int | str) -> bool:
    """pydantic names the union member that failed (``stop.str``); users want ``stop``."""
    return isinstance(part, str) and (
        part in ("str", "int", "float", "bool", "dict", "none", "function-after", "NamedTool")
        or "[" in part
        or part.startswith("literal")
        or part.startswith("function-")
    )


def _refuse(path: str, body: dict[str, Any]) -> None:
    for name, why in _REFUSED[path].items():
        if body.get(name) not in (None, [], {}):
            raise BadRequest(f"{name}: {why}", param=name)
    modalities = body.get("modalities")
    if modalities is not None and (
        not isinstance(modalities, list) or not all(isinstance(m, str) for m in modalities)
    ):
        raise BadRequest('modalities: must be a list of strings, e.g. ["text"]', param="modalities")
    if modalities and set(modalities) != {"text"}:
        raise BadRequest("modalities: this node answers with text only", param="modalities")
    best_of = body.get("best_of")
    if best_of is not None and best_of != (body.get("n") or 1):
        raise BadRequest("best_of: not supported; use n", param="best_of")
    if body.get("stream_options") and not body.get("stream"):
        raise BadRequest("stream_options: only allowed with stream: true", param="stream_options")


def _consistent(path: str, out: dict[str, Any]) -> None:
    if path == "/chat/completions":
        choice = out.get("tool_choice")
        if choice is not None and not out.get("tools"):
            raise BadRequest("tool_choice: needs 'tools'", param="tool_choice")
        if isinstance(choice, dict):
            names = [t["function"]["name"] for t in out["tools"]]
            if choice["function"]["name"] not in names:
                raise BadRequest(
                    f"tool_choice: function {choice['function']['name']!r} is not in tools "
                    f"({', '.join(names)})",
                    param="tool_choice",
                )
        if out.get("top_logprobs") is not None and not out.get("logprobs"):
            raise BadRequest("top_logprobs: needs logprobs: true", param="top_logprobs")
    if path == "/completions":
        choices = len(out["prompt"]) * (out.get("n") or 1)
        if choices > MAX_CHOICES:
            raise BadRequest(
                f"n: {choices} choices (prompts × n) asked; this node returns at most "
                f"{MAX_CHOICES} per request",
                param="n",
            )


def validate(path: str, body: dict[str, Any]) -> dict[str, Any]:
    """The body with its known fields checked and normalised (content parts flattened,
    a list of prompts, a list of inputs); raises BadRequest naming the first bad field."""
    _refuse(path, body)
    try:
        parsed = _MODELS[path].model_validate(body)
    except ValidationError as exc:
        errors = exc.errors()
        # A union reports every member that failed; our own checks say the most.
        err = next((e for e in errors if e["type"] == "value_error"), errors[0])
        param = ".".join(str(p) for p in err["loc"] if not _union_member(p)) or None
        msg = err["msg"]
        if err["type"] == "less_than_equal" and param == "n":
            msg = f"this node returns at most {MAX_CHOICES} choices per request"
        raise BadRequest(f"{param}: {msg}", param=param) from exc
    out = parsed.model_dump(exclude_none=True, by_alias=True)
    if "logit_bias" in out:
        out["logit_bias"] = {int(k): float(v) for k, v in out["logit_bias"].items()}
    _consistent(path, out)
    return out
