"""The inference engine behind a small Protocol, so queueing, sync and the API are
testable without llama.cpp. Every method of a loaded model runs on that model's
one worker thread: llama.cpp contexts are not thread-safe."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from node_runtime.errors import BadRequest, ContextLengthExceeded

Chunk = dict[str, Any]

# OpenAI request fields we pass to llama.cpp; the rest are accepted and ignored.
_SAMPLING = (
    "max_tokens",
    "temperature",
    "top_p",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
)


class LoadedModel(Protocol):
    def chat(
        self, body: dict[str, Any], *, model: str, cancel: threading.Event
    ) -> dict | Iterator[Chunk]: ...

    def complete(
        self, body: dict[str, Any], *, model: str, cancel: threading.Event
    ) -> dict | Iterator[Chunk]: ...

    def embed(self, body: dict[str, Any], *, model: str) -> dict: ...

    def close(self) -> None: ...


class Engine(Protocol):
    def load(self, path: Path) -> LoadedModel: ...


def sampling(body: dict[str, Any]) -> dict[str, Any]:
    args = {k: body[k] for k in _SAMPLING if body.get(k) is not None}
    if "max_completion_tokens" in body and "max_tokens" not in args:
        args["max_tokens"] = body["max_completion_tokens"]
    if body.get("logit_bias"):
        try:
            args["logit_bias"] = {int(k): float(v) for k, v in body["logit_bias"].items()}
        except (TypeError, ValueError, AttributeError) as exc:
            raise BadRequest('logit_bias must map token ids to numbers, e.g. {"2": -100}') from exc
    return args


def _overflow(exc: ValueError, n_ctx: int, param: str = "messages") -> Exception:
    """llama.cpp says a prompt is too long with a ValueError; the client gets a 400."""
    text = str(exc)
    if "exceed context window" in text or "exceed batch size" in text:
        return ContextLengthExceeded(
            f"this model's context window is {n_ctx} tokens and the request does not fit "
            f"({text}); shorten the messages or the prompt",
            param=param,
        )
    return exc


def _overflow_checked(chunks: Iterator[Chunk], n_ctx: int, param: str) -> Iterator[Chunk]:
    try:
        yield from chunks
    except ValueError as exc:
        raise _overflow(exc, n_ctx, param) from exc


def _pooled(vector: list) -> list[float]:
    """One vector of floats: the mean over tokens if llama.cpp handed back one per token."""
    if vector and isinstance(vector[0], list):
        n = len(vector)
        return [float(sum(col)) / n for col in zip(*vector, strict=True)]
    return [float(x) for x in vector]


class LlamaModel:
    def __init__(self, path: Path, *, n_ctx: int, n_threads: int | None):
        import llama_cpp  # the heavy import only where a model is loaded
        from llama_cpp import Llama

        self._llama_cls = Llama
        self._mean_pooling = llama_cpp.LLAMA_POOLING_TYPE_MEAN
        self.path, self.n_ctx, self.n_threads = path, n_ctx, n_threads
        self.llm = Llama(str(path), n_ctx=n_ctx, n_threads=n_threads, verbose=False)
        self._embedder = None

    def chat(self, body, *, model, cancel):
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("'messages' must be a non-empty list of {role, content} objects")
        args = sampling(body)
        if body.get("stream"):
            return self._stream(
                self.llm.create_chat_completion(messages=messages, stream=True, **args),
                model=model,
                cancel=cancel,
                delta=True,
            )
        try:
            out = self.llm.create_chat_completion(messages=messages, **args)
        except ValueError as exc:
            raise _overflow(exc, self.n_ctx) from exc
        return {**out, "model": model}

    def complete(self, body, *, model, cancel):
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise BadRequest("'prompt' must be a string")
        args = sampling(body) | {"max_tokens": body.get("max_tokens") or 16}
        if body.get("stream"):
            return self._stream(
                self.llm.create_completion(prompt, stream=True, **args),
                model=model,
                cancel=cancel,
                delta=False,
            )
        try:
            out = self.llm.create_completion(prompt, **args)
        except ValueError as exc:
            raise _overflow(exc, self.n_ctx, "prompt") from exc
        return {**out, "model": model}

    def _stream(
        self, chunks: Iterator[Chunk], *, model: str, cancel: threading.Event, delta: bool
    ) -> Iterator[Chunk]:
        """Pass llama.cpp's chunks on, and put usage on the chunk that carries the
        finish reason (llama.cpp streams none). Prompt tokens: the context length when
        the first chunk arrives; completion tokens: the generated text re-tokenized."""
        prompt_tokens, text = None, []
        try:
            param = "messages" if delta else "prompt"
            for chunk in _overflow_checked(chunks, self.n_ctx, param):
                if prompt_tokens is None:
                    prompt_tokens = self.llm.n_tokens
                choice = chunk["choices"][0]
                text.append(
                    ((choice.get("delta") or {}).get("content") if delta else choice.get("text"))
                    or ""
                )
                chunk = {**chunk, "model": model}
                if choice.get("finish_reason"):
                    completion = len(
                        self.llm.tokenize("".join(text).encode(), add_bos=False, special=True)
                    )
                    chunk["usage"] = {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": completion,
                        "total_tokens": prompt_tokens + completion,
                    }
                yield chunk
                if cancel.is_set():  # the client went away: free the model for the next request
                    return
        finally:
            chunks.close()  # type: ignore[attr-defined]

    def embed(self, body, *, model):
        data = body.get("input")
        if isinstance(data, str):
            data = [data]
        if not isinstance(data, list) or not data or not all(isinstance(x, str) for x in data):
            raise BadRequest("'input' must be a string or a non-empty list of strings")
        if self._embedder is None:
            # A context with embeddings on cannot generate, so embeddings get their own.
            try:
                self._embedder = self._llama_cls(
                    str(self.path),
                    n_ctx=self.n_ctx,
                    n_threads=self.n_threads,
                    embedding=True,
                    # One vector per input, as OpenAI returns: mean-pool the tokens.
                    pooling_type=self._mean_pooling,
                    verbose=False,
                )
            except Exception as exc:  # llama.cpp refuses: the model does not allow it
                raise BadRequest(f"model {model} does not support embeddings: {exc}") from exc
        try:
            out = self._embedder.create_embedding(data)
        except ValueError as exc:
            raise _overflow(exc, self.n_ctx, "input") from exc
        for item in out["data"]:
            item["embedding"] = _pooled(item["embedding"])
        return {**out, "model": model}

    def close(self) -> None:
        self.llm.close()
        if self._embedder is not None:
            self._embedder.close()


class LlamaEngine:
    def __init__(self, *, n_ctx: int, n_threads: int | None):
        self.n_ctx, self.n_threads = n_ctx, n_threads

    def load(self, path: Path) -> LoadedModel:
        return LlamaModel(path, n_ctx=self.n_ctx, n_threads=self.n_threads)
