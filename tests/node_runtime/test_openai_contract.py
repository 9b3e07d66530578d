"""The node's OpenAI API as real applications use it: the official ``openai`` client
and ``langchain-openai`` against a real node process serving the real SmolLM2 GGUF.
Assertions are about what a client notices (valid JSON against the schema, ids that
match, shapes, status codes), never the model's wording."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Literal

import httpx
import pytest
from openai import AsyncOpenAI
from pydantic import BaseModel

from tests.factories import Tenants
from tests.node_runtime.conftest import NodeProcess

pytestmark = pytest.mark.timeout(900)

MODEL = "smollm2:prod"
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


class GetWeather(BaseModel):
    """Current weather in a city."""

    city: str


class GetTime(BaseModel):
    """Current time in a timezone."""

    timezone: Literal["UTC", "CET", "EST"]


class Forecast(BaseModel):
    city: str
    celsius: int
    sunny: bool


def tool(model: type[BaseModel]) -> dict:
    name = {"GetWeather": "get_weather", "GetTime": "get_time"}[model.__name__]
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": model.__doc__,
            "parameters": model.model_json_schema(),
        },
    }


TOOLS = {"get_weather": GetWeather, "get_time": GetTime}


def assert_valid_calls(calls) -> None:
    assert calls, "no tool calls"
    for call in calls:
        assert call.id.startswith("call_") and call.type == "function"
        TOOLS[call.function.name].model_validate_json(call.function.arguments)


@pytest.fixture(scope="module")
async def node(base_url, settings, smollm2, tmp_path_factory) -> AsyncIterator[NodeProcess]:
    """One node for the module: loading a model is the slow part, the requests are not."""
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as http:
        tenant = await Tenants(http, settings.operator_token.get_secret_value()).create()
        pushed = await tenant.push(smollm2, "smollm2", tag="prod")
        assert pushed.status_code == 201, pushed.text
        proc = NodeProcess(tmp_path_factory.mktemp("contract") / "node", tenant, base_url, {})
        await proc.enroll()
        await proc.start()
        deployed = await tenant.request(
            "POST", "/v1/deployments/", json={"model": MODEL, "node_id": proc.id}
        )
        assert deployed.status_code == 201, deployed.text
        await proc.wait_loaded(pushed.json()["version"]["digest"])
        yield proc
        await proc.stop()


@pytest.fixture
def client(node) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{node.url}/v1", api_key="unused", max_retries=0, timeout=600)


async def test_forced_and_required_tool_calls_are_valid(client):
    named = await client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=[tool(GetWeather), tool(GetTime)],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=48,
    )
    choice = named.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert_valid_calls(choice.message.tool_calls)
    assert {c.function.name for c in choice.message.tool_calls} == {"get_weather"}

    required = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What time is it in Berlin?"}],
        tools=[tool(GetWeather), tool(GetTime)],
        tool_choice="required",
        parallel_tool_calls=False,
        max_tokens=48,
    )
    assert required.choices[0].finish_reason == "tool_calls"
    assert len(required.choices[0].message.tool_calls) == 1
    assert_valid_calls(required.choices[0].message.tool_calls)


async def test_the_agent_loop_call_result_answer_completes(client):
    tools = [tool(GetWeather)]
    first = await client.chat.completions.create(
        model=MODEL, messages=ASK, tools=tools, tool_choice="required", max_tokens=48
    )
    calls = first.choices[0].message.tool_calls
    assert_valid_calls(calls)
    # The second turn every agent sends: its call (content null) and the tool's result.
    history = [
        *ASK,
        first.choices[0].message.model_dump(exclude_none=True),
        *({"role": "tool", "tool_call_id": c.id, "content": "18 C, sunny"} for c in calls),
    ]
    assert history[1]["role"] == "assistant" and "content" not in history[1]
    answer = await client.chat.completions.create(
        model=MODEL, messages=history, tools=tools, max_tokens=12
    )
    finish = answer.choices[0].finish_reason
    assert finish in ("stop", "length", "tool_calls")
    if finish == "tool_calls":  # auto may call again; then the calls are valid ones
        assert_valid_calls(answer.choices[0].message.tool_calls)
    else:
        assert answer.choices[0].message.content is not None


async def test_streamed_tool_calls_reassemble(client):
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=[tool(GetWeather)],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=48,
        stream=True,
    )
    calls: dict[int, dict] = {}
    finish = None
    async for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                call["id"] += delta.id or ""
                if delta.function:
                    call["name"] += delta.function.name or ""
                    call["arguments"] += delta.function.arguments or ""
    assert finish == "tool_calls" and calls
    for call in calls.values():
        assert call["id"].startswith("call_") and call["name"] == "get_weather"
        GetWeather.model_validate_json(call["arguments"])


async def test_structured_outputs_parse_into_the_model(client):
    parsed = await client.chat.completions.parse(
        model=MODEL,
        messages=[{"role": "user", "content": "Give the forecast for Rome."}],
        response_format=Forecast,
        temperature=0,
        max_tokens=64,
    )
    assert isinstance(parsed.choices[0].message.parsed, Forecast)

    as_object = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Describe Rome as JSON."}],
        response_format={"type": "json_object"},
        temperature=0,
        max_tokens=48,
    )
    if as_object.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(as_object.choices[0].message.content), dict)
    else:  # cut short by max_tokens: still the start of one JSON object
        assert as_object.choices[0].message.content.lstrip().startswith("{")


async def test_langchain_tools_and_structured_output(node):
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_openai import ChatOpenAI, OpenAIEmbeddings

    llm = ChatOpenAI(
        base_url=f"{node.url}/v1",
        api_key="unused",
        model=MODEL,
        max_tokens=48,
        temperature=0,
        max_retries=0,
    )
    bound = llm.bind_tools([GetWeather], tool_choice="GetWeather")
    ask = [HumanMessage("What is the weather in Paris?")]
    called = await bound.ainvoke(ask)
    assert [c["name"] for c in called.tool_calls] == ["GetWeather"]
    GetWeather.model_validate(called.tool_calls[0]["args"])
    results = [ToolMessage("18 C, sunny", tool_call_id=c["id"]) for c in called.tool_calls]
    answer = await llm.bind_tools([GetWeather]).ainvoke([*ask, called, *results])
    assert answer.content is not None or answer.tool_calls

    for method in ("json_schema", "function_calling"):
        structured = llm.with_structured_output(Forecast, method=method)
        got = await structured.ainvoke("Give the forecast for Rome.")
        assert isinstance(got, Forecast), method

    # Strings: LangChain's token arrays come from tiktoken, which needs the internet.
    embeddings = OpenAIEmbeddings(
        base_url=f"{node.url}/v1",
        api_key="unused",
        model=MODEL,
        check_embedding_ctx_length=False,
    )
    vectors = await embeddings.aembed_documents(["hello", "world"])
    assert len(vectors) == 2 and len(vectors[0]) == 576


async def test_models_embeddings_n_logprobs_and_completions(client):
    model = await client.models.retrieve(MODEL)
    assert model.id == MODEL
    assert (await client.models.retrieve("smollm2")).id == "smollm2"

    tokens = await client.embeddings.create(model=MODEL, input=[[1, 2, 3], [4, 5]])
    assert [len(d.embedding) for d in tokens.data] == [576, 576]
    assert tokens.usage.prompt_tokens == 5
    as_floats = await client.embeddings.create(model=MODEL, input="hello", encoding_format="float")
    assert len(as_floats.data[0].embedding) == 576

    two = await client.chat.completions.create(
        model=MODEL, messages=ASK, n=2, max_tokens=4, logprobs=True, top_logprobs=2
    )
    assert [c.index for c in two.choices] == [0, 1]
    for choice in two.choices:
        entries = choice.logprobs.content
        assert entries and all(e.logprob <= 0 and len(e.top_logprobs) <= 2 for e in entries)

    completions = await client.completions.create(
        model=MODEL, prompt=["The sky is", "Grass is"], n=2, max_tokens=3
    )
    assert sorted(c.index for c in completions.choices) == [0, 1, 2, 3]
    by_ids = await client.completions.create(model=MODEL, prompt=[1, 504, 3], max_tokens=3)
    assert by_ids.usage.prompt_tokens == 3
    echoed = await client.completions.create(
        model=MODEL, prompt="The sky is", echo=True, logprobs=2, max_tokens=3
    )
    assert echoed.choices[0].text.startswith("The sky is")
    assert echoed.choices[0].logprobs.tokens


async def test_usage_is_streamed_once_and_only_when_asked(client):
    for include in (True, False):
        extra = {"stream_options": {"include_usage": True}} if include else {}
        stream = await client.chat.completions.create(
            model=MODEL, messages=ASK, max_tokens=4, stream=True, **extra
        )
        chunks = [c async for c in stream]
        with_usage = [c for c in chunks if c.usage]
        assert len(with_usage) == (1 if include else 0)
        if include:
            assert chunks[-1].usage and chunks[-1].choices == []
            assert chunks[-1].usage.completion_tokens > 0


async def test_refused_fields_are_a_400_naming_them(node):
    msgs = ASK
    image = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]
    cases = [
        ("/chat/completions", {"messages": msgs, "n": 99}, "n", "at most"),
        ("/chat/completions", {"messages": msgs, "functions": [{"name": "f"}]}, "functions", ""),
        ("/chat/completions", {"messages": msgs, "audio": {"voice": "x"}}, "audio", ""),
        (
            "/chat/completions",
            {"messages": msgs, "modalities": ["text", "audio"]},
            "modalities",
            "",
        ),
        (
            "/chat/completions",
            {"messages": msgs, "prediction": {"type": "content"}},
            "prediction",
            "",
        ),
        (
            "/chat/completions",
            {"messages": [{"role": "user", "content": image}]},
            "messages.0.content.1",
            "vision",
        ),
        (
            "/chat/completions",
            {"messages": msgs, "tool_choice": "required"},
            "tool_choice",
            "tools",
        ),
        (
            "/chat/completions",
            {
                "messages": msgs,
                "tools": [tool(GetWeather)],
                "tool_choice": {"type": "function", "function": {"name": "nope"}},
            },
            "tool_choice",
            "nope",
        ),
        ("/chat/completions", {"messages": msgs, "top_logprobs": 2}, "top_logprobs", ""),
        (
            "/chat/completions",
            {"messages": msgs, "response_format": {"type": "json_schema"}},
            "response_format",
            "",
        ),
        (
            "/chat/completions",
            {"messages": msgs, "stream_options": {"include_usage": True}},
            "stream_options",
            "",
        ),
        # A malformed turn: an assistant message with neither content nor tool calls.
        (
            "/chat/completions",
            {"messages": [*msgs, {"role": "assistant", "content": None}, *msgs]},
            "messages",
            "template",
        ),
        # Malformed, not just unsupported: a 400 naming the field, never a 500.
        ("/chat/completions", {"messages": msgs, "modalities": 5}, "modalities", "list"),
        ("/chat/completions", {"messages": msgs, "modalities": [{}]}, "modalities", "list"),
        ("/chat/completions", {"messages": msgs, "modalities": "text"}, "modalities", "list"),
        ("/completions", {"prompt": "x", "suffix": "y"}, "suffix", ""),
        ("/completions", {"prompt": "x", "best_of": 3}, "best_of", ""),
        ("/completions", {"prompt": ["a", "b", "c"], "n": 3}, "n", "at most"),
        ("/completions", {"prompt": [1, 10**9]}, "prompt", "vocabulary"),
        ("/embeddings", {"input": "x", "dimensions": 8}, "dimensions", ""),
        ("/embeddings", {"input": "x", "encoding_format": "int8"}, "encoding_format", ""),
    ]
    async with httpx.AsyncClient(base_url=f"{node.url}/v1", timeout=120) as http:
        for path, body, param, says in cases:
            resp = await http.post(path, json={"model": MODEL, **body})
            assert resp.status_code == 400, (path, body, resp.text)
            err = resp.json()["error"]
            assert err["param"] == param and says in err["message"], (body, err)
            assert param.split(".")[0] in err["message"], err


async def test_metrics_and_one_log_line_per_model_event(node, client):
    await client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=2)
    stream = await client.chat.completions.create(
        model=MODEL, messages=ASK, max_tokens=2, stream=True
    )
    _ = [c async for c in stream]
    async with httpx.AsyncClient(base_url=node.url) as http:
        await http.post("/v1/chat/completions", json={"model": MODEL, "messages": []})
        resp = await http.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    ok = (
        'hangar_node_requests_total{endpoint="/chat/completions",model="smollm2:prod",outcome="ok"}'
    )
    assert ok in text
    assert 'outcome="client_error"' in text
    assert 'hangar_node_time_to_first_token_seconds_count{model="smollm2:prod"}' in text
    assert 'hangar_node_completion_tokens_total{model="smollm2:prod"}' in text
    assert "hangar_node_loaded_models 1.0" in text
    assert 'hangar_node_model_load_seconds_count{model="smollm2:prod"} 1.0' in text
    assert 'hangar_node_queue_depth{model="smollm2:prod"} 0.0' in text
    log = node.log.read_text()
    assert log.count("model smollm2:prod downloaded and verified") == 1, log[-3000:]
    assert log.count("model smollm2:prod loaded in") == 1, log[-3000:]


async def test_responses_api_text_tools_streaming_and_previous_response(client):
    first = await client.responses.create(
        model=MODEL, instructions="Answer briefly.", input="Name a colour.", max_output_tokens=8
    )
    assert first.id.startswith("resp_") and first.status in ("completed", "incomplete")
    assert first.output[0].type == "message" and first.output_text is not None
    assert first.usage.output_tokens > 0

    follow = await client.responses.create(
        model=MODEL, previous_response_id=first.id, input="And another?", max_output_tokens=8
    )
    assert follow.usage.input_tokens > first.usage.input_tokens  # the history was sent

    weather = {
        "type": "function",
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": GetWeather.model_json_schema(),
    }
    called = await client.responses.create(
        model=MODEL,
        input="What is the weather in Paris?",
        tools=[weather],
        tool_choice="required",
        max_output_tokens=48,
    )
    calls = [o for o in called.output if o.type == "function_call"]
    assert calls and calls[0].name == "get_weather"
    GetWeather.model_validate_json(calls[0].arguments)
    answered = await client.responses.create(
        model=MODEL,
        previous_response_id=called.id,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny"}],
        tools=[weather],
        max_output_tokens=8,
    )
    assert answered.status in ("completed", "incomplete")

    stream = await client.responses.create(
        model=MODEL, input="Say hi.", max_output_tokens=6, stream=True
    )
    kinds = [e.type async for e in stream]
    assert kinds[0] == "response.created" and kinds[-1] in (
        "response.completed",
        "response.incomplete",
    )
    assert "response.output_item.done" in kinds

    async with httpx.AsyncClient(base_url=str(client.base_url), timeout=60) as http:
        for body, param in (
            ({"input": "x", "tools": [{"type": "web_search"}]}, "tools.0.type"),
            ({"input": "x", "reasoning": {"effort": "high"}}, "reasoning"),
            ({"input": "x", "previous_response_id": "resp_nope"}, "previous_response_id"),
            (
                {"input": [{"role": "user", "content": [{"type": "input_image"}]}]},
                "input.0.0",
            ),
            # Malformed bodies: a 400 naming the field, never a 500.
            ({"input": [{"type": "function_call", "call_id": "c1"}]}, "input.0.name"),
            (
                {"input": [{"role": "user", "content": [{"type": "input_text", "text": 5}]}]},
                "input.0.0.text",
            ),
            ({"input": "x", "text": "plain"}, "text"),
            ({"input": "x", "text": {"format": "json"}}, "text.format"),
            ({"input": "x", "tools": 5}, "tools"),
            ({"input": "x", "previous_response_id": ["resp_1"]}, "previous_response_id"),
        ):
            resp = await http.post("responses", json={"model": MODEL, **body})
            assert resp.status_code == 400, (body, resp.text)
            assert resp.json()["error"]["param"] == param, resp.text
