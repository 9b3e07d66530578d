"""Generation on a loaded llama.cpp model, shaped as OpenAI answers: chat choices
with content, logprobs or tool calls, streamed or whole, and completion choices for
several prompts. Usage is counted here once and handed on as the last chunk of a
stream (the API sends it only when the client asked)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from node_runtime.chat import CALL_OPEN, ChatPlan, parse_calls, tool_grammar

Event = tuple  # ("content", text, logprobs) | ("calls", calls) | ("finish", reason, tokens)


def _pieces(
    llm, tokens: list[int], *, args: dict, grammar: str | None, top: int | None, cancel
) -> Iterator[tuple[str, list, str | None]]:
    """(text, chat logprob entries, finish reason) as llama.cpp streams them."""
    from llama_cpp import LlamaGrammar

    chunks = llm.create_completion(
        tokens,
        stream=True,
        grammar=LlamaGrammar.from_string(grammar, verbose=False) if grammar else None,
        logprobs=top,
        **args,
    )
    try:
        for chunk in chunks:
            choice = chunk["choices"][0]
            yield (
                choice["text"],
                _chat_logprobs(choice.get("logprobs"), top),
                choice.get("finish_reason"),
            )
            if cancel.is_set():  # the client went away: free the model for the next request
                return
    finally:
        chunks.close()


def _chat_logprobs(lp: dict | None, top: int | None) -> list:
    if not lp or top is None:
        return []
    out = []
    for token, logprob, alternatives in zip(
        lp["tokens"], lp["token_logprobs"], lp["top_logprobs"], strict=False
    ):
        best = sorted((alternatives or {}).items(), key=lambda kv: -kv[1])[:top]
        out.append(
            {
                "token": token,
                "logprob": logprob,
                "bytes": list(token.encode()),
                "top_logprobs": [
                    {"token": t, "logprob": v, "bytes": list(t.encode())} for t, v in best
                ],
            }
        )
    return out


def _count(llm, text: str) -> int:
    return len(llm.tokenize(text.encode(), add_bos=False, special=True)) if text else 0


def _calls(llm, plan: ChatPlan, tokens, args, top, cancel) -> Iterator[Event]:
    """A grammar-constrained reply that can only be calls to the allowed functions."""
    opened = tokens + llm.tokenize(CALL_OPEN.encode(), add_bos=False, special=True)
    text, finish = "", None
    for piece, _lp, reason in _pieces(
        llm, opened, args=args, grammar=tool_grammar(plan), top=None, cancel=cancel
    ):
        text += piece
        finish = reason or finish
    try:
        calls = parse_calls(text)
    except (ValueError, KeyError, TypeError):
        # Cut short by max_tokens: no half call is ever handed out.
        yield ("finish", finish or "length", _count(llm, text))
        return
    yield ("calls", calls)
    yield ("finish", "tool_calls", _count(llm, CALL_OPEN + text))


def _text(pieces, llm) -> Iterator[Event]:
    text, finish = "", None
    for piece, lp, reason in pieces:
        text += piece
        finish = reason or finish
        if piece or lp:
            yield ("content", piece, lp)
    yield ("finish", finish or "stop", _count(llm, text))


def choice_events(llm, plan: ChatPlan, tokens, args, top, cancel) -> Iterator[Event]:
    if plan.tool_choice not in ("none", "auto"):  # required or a named function
        yield from _calls(llm, plan, tokens, args, top, cancel)
        return
    if plan.tool_choice == "auto":
        # Let the model start; if it opens a call, the call is made under the grammar,
        # so a malformed call never reaches the client.
        pieces = _pieces(llm, tokens, args=args, grammar=None, top=top, cancel=cancel)
        seen: list = []
        decided = None
        for item in pieces:
            seen.append(item)
            head = "".join(p[0] for p in seen).lstrip()
            if head.startswith(CALL_OPEN):
                decided = "call"
                break
            if item[2] or (head and not CALL_OPEN.startswith(head)):
                decided = "text"
                break
        if decided == "call":
            pieces.close()
            yield from _calls(llm, plan, tokens, args, top, cancel)
            return
        if plan.text_grammar is None:
            yield from _text(_chain(seen, pieces), llm)
            return
        pieces.close()
    yield from _text(
        _pieces(llm, tokens, args=args, grammar=plan.text_grammar, top=top, cancel=cancel), llm
    )


def _chain(first: list, rest: Iterator) -> Iterator:
    yield from first
    if not (first and first[-1][2]):
        yield from rest


def _seeded(args: dict, i: int) -> dict:
    # The same seed for every choice would make n choices identical.
    return args | {"seed": args["seed"] + i} if args.get("seed") is not None and i else args


def _usage(prompt: int, completion: int) -> dict:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def chat_response(*, llm, plan, tokens, args, top, n, model, cancel) -> dict:
    choices, generated = [], 0
    for i in range(n):
        content, logprobs, calls, finish = "", [], None, "stop"
        for event in choice_events(llm, plan, tokens, _seeded(args, i), top, cancel):
            if event[0] == "content":
                content += event[1]
                logprobs += event[2]
            elif event[0] == "calls":
                calls = event[1]
            else:
                finish, generated = event[1], generated + event[2]
        message: dict[str, Any] = {"role": "assistant", "content": None if calls else content}
        if calls:
            message["tool_calls"] = calls
        choices.append(
            {
                "index": i,
                "message": message,
                "logprobs": {"content": logprobs, "refusal": None} if top is not None else None,
                "finish_reason": finish,
            }
        )
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": _usage(len(tokens), generated),
    }


def chat_stream(*, llm, plan, tokens, args, top, n, model, cancel) -> Iterator[dict]:
    head = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }

    def chunk(i: int, delta: dict, finish: str | None = None, lp: list | None = None) -> dict:
        choice = {"index": i, "delta": delta, "logprobs": None, "finish_reason": finish}
        if lp:
            choice["logprobs"] = {"content": lp, "refusal": None}
        return head | {"choices": [choice]}

    generated = 0
    for i in range(n):
        yield chunk(i, {"role": "assistant", "content": ""})
        for event in choice_events(llm, plan, tokens, _seeded(args, i), top, cancel):
            if event[0] == "content":
                yield chunk(i, {"content": event[1]}, lp=event[2])
            elif event[0] == "calls":
                for j, call in enumerate(event[1]):
                    fn = call["function"]
                    opening = {
                        **call,
                        "index": j,
                        "function": {"name": fn["name"], "arguments": ""},
                    }
                    yield chunk(i, {"tool_calls": [opening]})
                    args_delta = {"index": j, "function": {"arguments": fn["arguments"]}}
                    yield chunk(i, {"tool_calls": [args_delta]})
            else:
                generated += event[2]
                yield chunk(i, {}, finish=event[1])
        if cancel.is_set():
            return
    yield head | {"choices": [], "usage": _usage(len(tokens), generated)}


def completion_chunks(
    llm, prompts: list, *, args: dict, n: int, model: str, cancel: threading.Event, stream: bool
) -> Iterator[dict]:
    """Every prompt × n choices, indexed as OpenAI does (prompt-major). Not streaming:
    one whole answer. Streaming: the chunks, then a usage chunk."""
    head = {
        "id": f"cmpl-{uuid.uuid4().hex}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
    }
    choices, prompt_tokens, generated = [], 0, 0
    for p, prompt in enumerate(prompts):
        # llama-cpp-python cannot echo token ids: the prompt's text is echoed here.
        echoed = llm.detokenize(prompt).decode(errors="replace") if echo_ids(prompt, args) else ""
        for j in range(n):
            index = p * n + j
            run = _seeded(args, index) | ({"echo": False} if echo_ids(prompt, args) else {})
            if not stream:
                out = llm.create_completion(prompt, **run)
                choice = _plain(out["choices"][0])
                choices.append(choice | {"index": index, "text": echoed + choice["text"]})
                generated += out["usage"]["completion_tokens"]
                prompt_tokens += out["usage"]["prompt_tokens"] if j == 0 else 0
                continue
            text = ""
            if echo_ids(prompt, args):
                yield head | {"choices": [_text_choice(index, echoed)]}
            for c in llm.create_completion(prompt, stream=True, **run):
                choice = _plain(c["choices"][0])
                text += choice.get("text") or ""
                yield head | {"choices": [choice | {"index": index}]}
                if cancel.is_set():
                    return
            generated += _count(llm, text)
            if j == 0:
                prompt_tokens += (
                    len(prompt)
                    if isinstance(prompt, list)
                    else len(llm.tokenize(prompt.encode(), special=True))
                )
    usage = _usage(prompt_tokens, generated)
    if not stream:
        yield head | {"choices": choices, "usage": usage}
        return
    yield head | {"choices": [], "usage": usage}


def echo_ids(prompt: str | list[int], args: dict) -> bool:
    return bool(args.get("echo")) and isinstance(prompt, list)


def _text_choice(index: int, text: str) -> dict:
    return {"index": index, "text": text, "logprobs": None, "finish_reason": None}


def _plain(value: Any) -> Any:
    """llama-cpp-python hands back some logprobs as numpy floats, which JSON cannot hold."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        return value.item()
    return value
