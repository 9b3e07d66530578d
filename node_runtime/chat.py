"""Chat requests turned into a prompt and a grammar: the model's own chat template
(rendered here, so tool-call and tool-result turns work with any template) and, for
tools and structured outputs, a GBNF grammar built by llama.cpp's JSON-schema
converter so even a small model can only produce valid JSON."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from node_runtime.errors import BadRequest

# Hermes/Qwen style: widely trained on, and easy to spot at the start of a reply.
CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
_SEPARATOR = CALL_CLOSE + "\n" + CALL_OPEN
# A reply may hold this many calls when parallel_tool_calls is on.
MAX_PARALLEL_CALLS = 4


@dataclass
class ChatPlan:
    prompt: str
    stop: list[str]
    tools: list[dict] = field(default_factory=list)
    # "none" | "auto" | "required" | the name of the one function to call
    tool_choice: str = "none"
    parallel: bool = True
    # GBNF constraining a text reply (response_format), None: free text
    text_grammar: str | None = None

    @property
    def names(self) -> list[str]:
        return [t["function"]["name"] for t in self.tools]


def _schema_grammar(schema: dict, param: str) -> str:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        return json_schema_to_gbnf(json.dumps(schema))
    except Exception as exc:  # the converter's own error says which keyword
        raise BadRequest(
            f"{param}: this JSON schema cannot be enforced ({type(exc).__name__}: {exc})",
            param=param,
        ) from exc


def _json_object_grammar() -> str:
    from llama_cpp.llama_grammar import JSON_GBNF

    return JSON_GBNF  # its root is an object, which is what json_object promises


def response_grammar(response_format: dict | None) -> str | None:
    if not response_format or response_format.get("type") == "text":
        return None
    if response_format["type"] == "json_object":
        return _json_object_grammar()
    spec = response_format.get("json_schema") or {}
    return _schema_grammar(spec.get("schema") or {}, "response_format.json_schema.schema")


def _call_schema(tool: dict) -> dict:
    fn = tool["function"]
    params = fn.get("parameters") or {"type": "object", "properties": {}}
    return {
        "type": "object",
        "properties": {"name": {"const": fn["name"]}, "arguments": params},
        "required": ["name", "arguments"],
    }


def tool_grammar(plan: ChatPlan) -> str:
    """Calls written as ``{"name": …, "arguments": {…}}``, separated by the call tags,
    only to the functions the request allows."""
    allowed = [
        t
        for t in plan.tools
        if plan.tool_choice in ("auto", "required") or t["function"]["name"] == plan.tool_choice
    ]
    schemas = [_call_schema(t) for t in allowed]
    schema = schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
    gbnf = _schema_grammar(schema, "tools")
    # The converter names its root "root"; ours repeats it for parallel calls.
    gbnf = re.sub(r"^root ::=", "tool-call ::=", gbnf, count=1, flags=re.M)
    more = f"({json.dumps(_SEPARATOR)} tool-call){{0,{MAX_PARALLEL_CALLS - 1}}}"
    root = "root ::= tool-call" + (f" {more}" if plan.parallel else "")
    return root + "\n" + gbnf


def parse_calls(text: str) -> list[dict]:
    """The calls in a grammar-constrained reply, in OpenAI's shape (arguments as a JSON
    string). A last call cut short by max_tokens is dropped, and a call repeated with the
    same arguments is made once (small models like to repeat themselves). Raises
    ValueError when not even one call is complete."""
    calls, seen = [], set()
    parts = [p.replace(CALL_CLOSE, "").strip() for p in text.split(CALL_OPEN)]
    parts = [p for p in parts if p]
    for i, part in enumerate(parts):
        try:
            call = json.loads(part)
        except ValueError:
            if i == len(parts) - 1 and calls:
                break
            raise
        arguments = json.dumps(call["arguments"], ensure_ascii=False)
        if (call["name"], arguments) in seen:
            continue
        seen.add((call["name"], arguments))
        calls.append(
            {
                "id": f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {"name": call["name"], "arguments": arguments},
            }
        )
    if not calls:
        raise ValueError("no complete call")
    return calls


def _tools_text(tools: list[dict]) -> str:
    listed = "\n".join(json.dumps(t["function"], ensure_ascii=False) for t in tools)
    return (
        "You can call these functions:\n"
        f"{listed}\n"
        "To call one, reply with only\n"
        f'{CALL_OPEN}{{"name": <function name>, "arguments": <arguments object>}}{CALL_CLOSE}\n'
        "Function results come back in messages from the tool role."
    )


def _as_text(content: Any) -> str:
    if content is None:
        return ""
    return content if isinstance(content, str) else json.dumps(content)


def _turns(messages: list[dict], tools: list[dict]) -> list[dict]:
    """Messages as plain {role, content} turns any chat template can render: calls the
    assistant made are written as it would write them, tool results as tool turns."""
    out = []
    for m in messages:
        m = dict(m)
        if m["role"] == "developer":
            m["role"] = "system"
        if m["role"] == "assistant" and m.get("tool_calls"):
            written = [
                CALL_OPEN
                + json.dumps(
                    {
                        "name": c["function"]["name"],
                        "arguments": _loads(c["function"].get("arguments")),
                    },
                    ensure_ascii=False,
                )
                + CALL_CLOSE
                for c in m["tool_calls"]
            ]
            m["content"] = (_as_text(m.get("content")) + "\n".join(written)).strip()
            m.pop("tool_calls")
        elif m["role"] in ("tool", "function"):
            m["role"] = "tool"
        out.append(m)
    if tools:
        text = _tools_text(tools)
        if out and out[0]["role"] == "system":
            out[0] = {**out[0], "content": f"{_as_text(out[0].get('content'))}\n\n{text}"}
        else:
            out.insert(0, {"role": "system", "content": text})
    return out


def _loads(arguments: Any) -> Any:
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except ValueError:
            return arguments
    return arguments


def plan(body: dict[str, Any], formatter) -> ChatPlan:
    tools = body.get("tools") or []
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        choice = choice["function"]["name"]
    choice = choice or ("auto" if tools else "none")
    try:
        rendered = formatter(messages=_turns(body["messages"], tools if choice != "none" else []))
    except Exception as exc:  # jinja2 errors, raise_exception() in the template, None + str
        raise BadRequest(
            f"messages: the model's chat template cannot render these messages "
            f"({type(exc).__name__}: {exc}); check roles, order and that each message has content",
            param="messages",
        ) from exc
    return ChatPlan(
        prompt=rendered.prompt,
        stop=[s for s in (rendered.stop or []) if s] if isinstance(rendered.stop, list) else [],
        tools=tools,
        tool_choice=choice,
        parallel=body.get("parallel_tool_calls", True),
        text_grammar=response_grammar(body.get("response_format")),
    )
