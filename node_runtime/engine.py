"""The inference engine behind a small Protocol, so queueing, sync and the API are
testable without llama.cpp. Every method of a loaded model runs on that model's
one worker thread: llama.cpp contexts are not thread-safe."""

from __future__ import annotations

import base64
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from node_runtime import chat as chat_plan
from node_runtime.errors import BadRequest, ContextLengthExceeded
from node_runtime.generate import chat_response, chat_stream, completion_chunks

Chunk = dict[str, Any]

# OpenAI request fields passed to llama.cpp as they are.
_SAMPLING = (
    "max_tokens",
    "temperature",
    "top_p",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
)
# OpenAI's values for fields a client leaves out (llama.cpp's own differ).
OPENAI_DEFAULTS = {"temperature": 1.0, "top_p": 1.0}

# Rendered when a GGUF carries no chat template.
_CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
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
    args = OPENAI_DEFAULTS | {k: body[k] for k in _SAMPLING if body.get(k) is not None}
    if "max_completion_tokens" in body and "max_tokens" not in args:
        args["max_tokens"] = body["max_completion_tokens"]
    args.setdefault("max_tokens", None)  # None: until the model stops or the context is full
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


def _pooled(vector: list) -> list[float]:
    """One vector of floats: the mean over tokens if llama.cpp handed back one per token."""
    if vector and isinstance(vector[0], list):
        n = len(vector)
        return [float(sum(col)) / n for col in zip(*vector, strict=True)]
    return [float(x) for x in vector]


def _base64(vector: list[float]) -> str:
    """OpenAI's base64 encoding: little-endian float32s."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def llama_class(*, weight_repacking: bool = True):
    """``Llama``, or a subclass that loads without llama.cpp's extra buffer types (the
    bindings do not expose that model parameter, so it is set on the defaults)."""
    import llama_cpp  # the heavy import only where a model is loaded
    from llama_cpp import Llama

    if weight_repacking:
        return Llama

    class PlainLlama(Llama):
        def __init__(self, *args, **kwargs):
            low = llama_cpp.llama_cpp
            defaults = low.llama_model_default_params

            def plain():
                params = defaults()
                params.use_extra_bufts = False
                return params

            with _PATCH_LOCK:
                low.llama_model_default_params = plain
                try:
                    super().__init__(*args, **kwargs)
                finally:
                    low.llama_model_default_params = defaults

    return PlainLlama


_PATCH_LOCK = threading.Lock()


class LlamaModel:
    def __init__(
        self,
        path: Path,
        *,
        n_ctx: int,
        n_threads: int | None,
        weight_repacking: bool = True,
        gpu_layers: int = 0,
    ):
        import llama_cpp  # the heavy import only where a model is loaded

        Llama = llama_class(weight_repacking=weight_repacking)
        self._llama_cls = Llama
        self._mean_pooling = llama_cpp.LLAMA_POOLING_TYPE_MEAN
        self.path, self.n_ctx, self.n_threads = path, n_ctx, n_threads
        self.gpu_layers = gpu_layers
        self.llm = Llama(
            str(path), n_ctx=n_ctx, n_threads=n_threads, n_gpu_layers=gpu_layers, verbose=False
        )
        self.formatter = self._formatter()
        self._embedder = None
        self._scorer = None

    def _formatter(self):
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        def text(token: int) -> str:
            return self.llm._model.token_get_text(token) if token != -1 else ""

        template = self.llm.metadata.get("tokenizer.chat_template") or _CHATML
        return Jinja2ChatFormatter(
            template, eos_token=text(self.llm.token_eos()), bos_token=text(self.llm.token_bos())
        )

    def _with_logprobs(self):
        """llama.cpp keeps every position's logits only in a context made for it, which
        costs memory and prompt speed: a second context, made on the first request that
        asks for logprobs."""
        if self._scorer is None:
            self._scorer = self._llama_cls(
                str(self.path),
                n_ctx=self.n_ctx,
                n_threads=self.n_threads,
                logits_all=True,
                n_gpu_layers=self.gpu_layers,
                verbose=False,
            )
        return self._scorer

    def _check_ids(self, ids: list[int], param: str) -> None:
        vocab = self.llm.n_vocab()
        bad = [t for t in ids if not 0 <= t < vocab]
        if bad:
            raise BadRequest(
                f"{param}: token id {bad[0]} is outside this model's vocabulary (0..{vocab - 1})",
                param=param,
            )

    def _fits(self, n_tokens: int, param: str) -> None:
        if n_tokens >= self.n_ctx:
            raise ContextLengthExceeded(
                f"this model's context window is {self.n_ctx} tokens and the request's "
                f"{n_tokens} prompt tokens do not fit; shorten the {param}",
                param=param,
            )

    def chat(self, body, *, model, cancel):
        plan = chat_plan.plan(body, self.formatter)
        llm = self._with_logprobs() if body.get("logprobs") else self.llm
        tokens = llm.tokenize(plan.prompt.encode(), add_bos=False, special=True)
        self._fits(len(tokens), "messages")
        args = sampling(body)
        args["stop"] = plan.stop + _as_list(args.get("stop"))
        top = (body.get("top_logprobs") or 0) if body.get("logprobs") else None
        run = dict(
            llm=llm,
            plan=plan,
            tokens=tokens,
            args=args,
            top=top,
            n=body.get("n") or 1,
            model=model,
            cancel=cancel,
        )
        if body.get("stream"):
            return _checked(chat_stream(**run), self.n_ctx, "messages")
        try:
            return chat_response(**run)
        except ValueError as exc:
            raise _overflow(exc, self.n_ctx) from exc

    def complete(self, body, *, model, cancel):
        prompts = body["prompt"]
        for i, p in enumerate(prompts):
            if isinstance(p, list):
                self._check_ids(p, "prompt" if len(prompts) == 1 else f"prompt.{i}")
        logprobs = body.get("logprobs")
        if body.get("echo") and logprobs is not None and any(isinstance(p, list) for p in prompts):
            raise BadRequest(
                "echo: with logprobs, echo needs text prompts (not token ids)", param="echo"
            )
        llm = self._with_logprobs() if logprobs is not None else self.llm
        args = sampling(body)
        args["max_tokens"] = body.get("max_tokens") or 16  # OpenAI's default here
        if args.get("stop") is None:
            args["stop"] = []
        chunks = completion_chunks(
            llm,
            prompts,
            args=args | {"logprobs": logprobs, "echo": bool(body.get("echo"))},
            n=body.get("n") or 1,
            model=model,
            cancel=cancel,
            stream=bool(body.get("stream")),
        )
        if body.get("stream"):
            return _checked(chunks, self.n_ctx, "prompt")
        try:
            return next(chunks)
        except ValueError as exc:
            raise _overflow(exc, self.n_ctx, "prompt") from exc

    def embed(self, body, *, model):
        data = body["input"]
        if self._embedder is None:
            # A context with embeddings on cannot generate, so embeddings get their own.
            try:
                self._embedder = self._llama_cls(
                    str(self.path),
                    n_ctx=self.n_ctx,
                    n_threads=self.n_threads,
                    embedding=True,
                    n_gpu_layers=self.gpu_layers,
                    # One vector per input, as OpenAI returns: mean-pool the tokens.
                    pooling_type=self._mean_pooling,
                    verbose=False,
                )
            except Exception as exc:  # llama.cpp refuses: the model does not allow it
                raise BadRequest(f"model {model} does not support embeddings: {exc}") from exc
        size = self._embedder.n_embd()
        if body.get("dimensions") not in (None, size):
            raise BadRequest(
                f"dimensions: this model's embeddings have {size} dimensions and cannot be "
                "shortened; leave 'dimensions' out",
                param="dimensions",
            )
        texts, token_inputs = [], {}
        for i, item in enumerate(data):
            if isinstance(item, list):
                self._check_ids(item, "input")
                # Embedded as these exact ids: a placeholder the tokenizer below resolves.
                key = f"\x00hangar-tokens-{i}"
                token_inputs[key.encode()] = item
                texts.append(key)
            else:
                texts.append(item)
        embedder = self._embedder
        tokenize = type(embedder).tokenize.__get__(embedder)
        embedder.tokenize = lambda text, *a, **k: token_inputs.get(text) or tokenize(text, *a, **k)
        try:
            out = embedder.create_embedding(texts)
        except ValueError as exc:
            raise _overflow(exc, self.n_ctx, "input") from exc
        finally:
            del embedder.tokenize
        base64_out = body.get("encoding_format") == "base64"
        for item in out["data"]:
            vector = _pooled(item["embedding"])
            item["embedding"] = _base64(vector) if base64_out else vector
        return {**out, "model": model}

    def close(self) -> None:
        self.llm.close()
        for extra in (self._embedder, self._scorer):
            if extra is not None:
                extra.close()


def _as_list(stop: str | list[str] | None) -> list[str]:
    if stop is None:
        return []
    return [stop] if isinstance(stop, str) else list(stop)


def _checked(chunks: Iterator[Chunk], n_ctx: int, param: str) -> Iterator[Chunk]:
    try:
        yield from chunks
    except ValueError as exc:
        raise _overflow(exc, n_ctx, param) from exc
    finally:
        chunks.close()  # type: ignore[attr-defined]


class LlamaEngine:
    def __init__(
        self,
        *,
        n_ctx: int,
        n_threads: int | None,
        weight_repacking: bool = True,
        gpu_layers: int = 0,
    ):
        self.n_ctx, self.n_threads = n_ctx, n_threads
        self.weight_repacking = weight_repacking
        self.gpu_layers = gpu_layers

    def load(self, path: Path) -> LoadedModel:
        return LlamaModel(
            path,
            n_ctx=self.n_ctx,
            n_threads=self.n_threads,
            weight_repacking=self.weight_repacking,
            gpu_layers=self.gpu_layers,
        )
