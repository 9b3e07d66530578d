"""The Responses API (``POST /v1/responses``, the OpenAI Agents SDK's default) on top
of chat completions: input items become chat messages, the chat answer becomes
output items, and streams become Responses events. ``previous_response_id`` works for
responses this node gave since it started (kept in memory, the newest few thousand).
What is not supported is a 400 naming the field."""

from __future__ import annotations

import json
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

from node_runtime.errors import BadRequest

_KEEP = 2000
_IGNORED = {"model", "store", "metadata", "user", "service_tier", "truncation", "include"}
_REFUSED = {
    "reasoning": "this model has no reasoning settings; remove 'reasoning'",
    "background": "background responses are not supported; remove 'background'",
    "prompt": "stored prompts are not supported; send 'input' and 'instructions'",
    "conversation": "conversations are not supported; use previous_response_id",
}


class ResponseStore:
    """Each response's whole conversation as chat messages, for previous_response_id."""

    def __init__(self) -> None:
        self.items: OrderedDict[str, list[dict]] = OrderedDict()

    def get(self, response_id: str) -> list[dict]:
        if response_id not in self.items:
            raise BadRequest(
                f"previous_response_id: response {response_id!r} is not known to this node "
                "(responses are kept in memory since the node started)",
                param="previous_response_id",
            )
        return list(self.items[response_id])

    def put(self, response_id: str, messages: list[dict]) -> None:
        self.items[response_id] = messages
        while len(self.items) > _KEEP:
            self.items.popitem(last=False)


def _text_of(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise BadRequest(f"{where}: must be a string or a list of parts", param=where)
    out = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            text = part.get("text") or ""
            if not isinstance(text, str):
                raise BadRequest(f"{where}.{i}.text: must be a string", param=f"{where}.{i}.text")
            out.append(text)
        elif kind in ("input_image", "input_file", "input_audio"):
            raise BadRequest(
                f"{where}.{i}: this model has no {kind[6:]} input; send text parts only",
                param=f"{where}.{i}",
            )
        else:
            raise BadRequest(f"{where}.{i}: part type {kind!r} is not supported", param=where)
    return "".join(out)


def _messages(items: Any) -> list[dict]:
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    if not isinstance(items, list):
        raise BadRequest("input: must be a string or a list of items", param="input")
    out: list[dict] = []
    for i, item in enumerate(items):
        where = f"input.{i}"
        kind = item.get("type", "message") if isinstance(item, dict) else None
        if kind == "message" and item.get("role") in ("user", "assistant", "system", "developer"):
            out.append({"role": item["role"], "content": _text_of(item.get("content"), where)})
        elif kind == "function_call":
            if not isinstance(item.get("name"), str) or not item["name"]:
                raise BadRequest(
                    f"{where}.name: a function_call item needs the function's name",
                    param=f"{where}.name",
                )
            call = {
                "id": item.get("call_id") or item.get("id") or "",
                "type": "function",
                "function": {"name": item["name"], "arguments": item.get("arguments") or "{}"},
            }
            if out and out[-1]["role"] == "assistant" and out[-1].get("tool_calls"):
                out[-1]["tool_calls"].append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": item.get("call_id", ""),
                    "content": output if isinstance(output, str) else json.dumps(output),
                }
            )
        else:
            raise BadRequest(
                f"{where}: item type {kind!r} is not supported (messages, function_call, "
                "function_call_output)",
                param=where,
            )
    return out


def _tools(tools: Any) -> list[dict]:
    if not isinstance(tools, list):
        raise BadRequest("tools: must be a list of function tools", param="tools")
    out = []
    for i, t in enumerate(tools):
        if not isinstance(t, dict) or t.get("type") != "function":
            kind = t.get("type") if isinstance(t, dict) else t
            raise BadRequest(
                f"tools.{i}.type: only function tools are supported here, not {kind!r}",
                param=f"tools.{i}.type",
            )
        fn = {k: t[k] for k in ("name", "description", "parameters", "strict") if k in t}
        out.append({"type": "function", "function": fn})
    return out


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict):
        if choice.get("type") != "function":
            raise BadRequest(
                "tool_choice: only function choices are supported", param="tool_choice"
            )
        return {"type": "function", "function": {"name": choice.get("name")}}
    return choice


def _format(text: Any) -> dict | None:
    if text is None:
        return None
    if not isinstance(text, dict):
        raise BadRequest(
            'text: must be an object such as {"format": {"type": "json_object"}}', param="text"
        )
    fmt = text.get("format")
    if fmt is not None and not isinstance(fmt, dict):
        raise BadRequest(
            'text.format: must be an object such as {"type": "json_object"}',
            param="text.format",
        )
    if not fmt or fmt.get("type") == "text":
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema":
        spec = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"type": "json_schema", "json_schema": spec}
    raise BadRequest(f"text.format: type {fmt.get('type')!r} is not supported", param="text.format")


def to_chat(body: dict[str, Any], store: ResponseStore) -> tuple[dict[str, Any], list[dict]]:
    """The chat completion body for a Responses request, and the conversation so far."""
    for name, why in _REFUSED.items():
        if body.get(name) not in (None, {}, []):
            raise BadRequest(f"{name}: {why}", param=name)
    if "input" not in body:
        raise BadRequest("input: required (a string or a list of items)", param="input")
    previous = body.get("previous_response_id")
    if previous is not None and not isinstance(previous, str):
        raise BadRequest(
            "previous_response_id: must be the id of a response (resp_…)",
            param="previous_response_id",
        )
    history = store.get(previous) if previous else []
    history = [m for m in history if m["role"] != "system"]
    conversation = history + _messages(body["input"])
    system = (
        [{"role": "system", "content": body["instructions"]}] if body.get("instructions") else []
    )
    chat: dict[str, Any] = {"model": body["model"], "messages": system + conversation}
    if body.get("tools"):
        chat["tools"] = _tools(body["tools"])
    if body.get("tool_choice") is not None:
        chat["tool_choice"] = _tool_choice(body["tool_choice"])
    for src, dst in (
        ("parallel_tool_calls", "parallel_tool_calls"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("max_output_tokens", "max_tokens"),
        ("stream", "stream"),
    ):
        if body.get(src) is not None:
            chat[dst] = body[src]
    if (fmt := _format(body.get("text"))) is not None:
        chat["response_format"] = fmt
    if body.get("top_logprobs"):
        raise BadRequest("top_logprobs: not supported on /v1/responses", param="top_logprobs")
    return chat, conversation


def _base(body: dict, response_id: str, status: str, model: str) -> dict:
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": model,
        "instructions": body.get("instructions"),
        "previous_response_id": body.get("previous_response_id"),
        "tools": body.get("tools") or [],
        "tool_choice": body.get("tool_choice") or "auto",
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "temperature": body.get("temperature", 1.0),
        "top_p": body.get("top_p", 1.0),
        "max_output_tokens": body.get("max_output_tokens"),
        "text": body.get("text") or {"format": {"type": "text"}},
        "metadata": body.get("metadata") or {},
        "error": None,
        "incomplete_details": None,
        "output": [],
        "usage": None,
    }


def _usage(usage: dict | None) -> dict | None:
    if not usage:
        return None
    return {
        "input_tokens": usage["prompt_tokens"],
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": usage["completion_tokens"],
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage["total_tokens"],
    }


def _message_item(text: str) -> dict:
    return {
        "type": "message",
        "id": f"msg_{uuid.uuid4().hex}",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def _call_item(call: dict) -> dict:
    return {
        "type": "function_call",
        "id": f"fc_{uuid.uuid4().hex}",
        "call_id": call["id"],
        "name": call["function"]["name"],
        "arguments": call["function"]["arguments"],
        "status": "completed",
    }


def _finish(out: dict, finish: str) -> dict:
    if finish == "length":
        out["status"] = "incomplete"
        out["incomplete_details"] = {"reason": "max_output_tokens"}
    return out


def from_chat(
    body: dict, chat: dict, conversation: list[dict], store: ResponseStore
) -> dict[str, Any]:
    choice = chat["choices"][0]
    message = choice["message"]
    response_id = f"resp_{uuid.uuid4().hex}"
    out = _base(body, response_id, "completed", chat["model"])
    if message.get("tool_calls"):
        out["output"] = [_call_item(c) for c in message["tool_calls"]]
    else:
        out["output"] = [_message_item(message.get("content") or "")]
    out["usage"] = _usage(chat.get("usage"))
    store.put(response_id, conversation + [_assistant(message)])
    return _finish(out, choice["finish_reason"])


def _assistant(message: dict) -> dict:
    kept = {"role": "assistant", "content": message.get("content")}
    if message.get("tool_calls"):
        kept["tool_calls"] = message["tool_calls"]
    return kept


async def events(
    body: dict,
    first: dict | None,
    rest: AsyncIterator[dict],
    conversation: list[dict],
    store: ResponseStore,
    model: str,
) -> AsyncIterator[dict]:
    """Chat chunks as Responses stream events, ending with response.completed."""
    response_id = f"resp_{uuid.uuid4().hex}"
    seq = 0

    def event(kind: str, **fields) -> dict:
        nonlocal seq
        seq += 1
        return {"type": kind, "sequence_number": seq - 1, **fields}

    yield event("response.created", response=_base(body, response_id, "in_progress", model))
    yield event("response.in_progress", response=_base(body, response_id, "in_progress", model))
    text, calls, usage, finish = "", [], None, "stop"
    message: dict | None = None
    chunk = first
    while chunk is not None:
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            finish = choice.get("finish_reason") or finish
            if delta.get("content"):
                if message is None:
                    message = _message_item("") | {"status": "in_progress", "content": []}
                    yield event("response.output_item.added", output_index=0, item=message)
                    part = {"type": "output_text", "text": "", "annotations": []}
                    yield event(
                        "response.content_part.added",
                        item_id=message["id"],
                        output_index=0,
                        content_index=0,
                        part=part,
                    )
                text += delta["content"]
                yield event(
                    "response.output_text.delta",
                    item_id=message["id"],
                    output_index=0,
                    content_index=0,
                    delta=delta["content"],
                )
            for call in delta.get("tool_calls") or []:
                if call.get("id"):
                    calls.append(
                        {"id": call["id"], "type": "function", "function": dict(call["function"])}
                    )
                else:
                    calls[call["index"]]["function"]["arguments"] += call["function"]["arguments"]
        chunk = await anext(rest, None)
    output = []
    if message is not None or not calls:
        item = _message_item(text) | ({"id": message["id"]} if message else {})
        if message is None:
            yield event("response.output_item.added", output_index=0, item=item | {"content": []})
        yield event(
            "response.output_text.done",
            item_id=item["id"],
            output_index=0,
            content_index=0,
            text=text,
        )
        yield event(
            "response.content_part.done",
            item_id=item["id"],
            output_index=0,
            content_index=0,
            part=item["content"][0],
        )
        yield event("response.output_item.done", output_index=0, item=item)
        output.append(item)
    for call in calls:
        item = _call_item(call)
        index = len(output)
        yield event("response.output_item.added", output_index=index, item=item | {"arguments": ""})
        yield event(
            "response.function_call_arguments.delta",
            item_id=item["id"],
            output_index=index,
            delta=item["arguments"],
        )
        yield event(
            "response.function_call_arguments.done",
            item_id=item["id"],
            output_index=index,
            arguments=item["arguments"],
        )
        yield event("response.output_item.done", output_index=index, item=item)
        output.append(item)
    done = _base(body, response_id, "completed", model) | {"output": output, "usage": _usage(usage)}
    assistant = {"role": "assistant", "content": None if calls else text}
    if calls:
        assistant["tool_calls"] = calls
    store.put(response_id, conversation + [assistant])
    done = _finish(done, finish)
    yield event(
        "response.completed" if done["status"] == "completed" else "response.incomplete",
        response=done,
    )
