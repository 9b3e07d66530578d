"""The node's Prometheus metrics (``GET /metrics``): what an operator graphs and
alerts on. One registry per runtime, so two runtimes in a process never mix."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from wire.contract import MAX_MODEL_COUNTERS, Counters, ModelCounters, SyncState

if TYPE_CHECKING:
    from node_runtime.serving import Serving
    from node_runtime.sync import Syncer

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter(
            "hangar_node_requests",
            "API requests by model, endpoint and outcome "
            "(ok, client_error, unavailable, forwarded, error)",
            ["model", "endpoint", "outcome"],
            registry=r,
        )
        self.prompt_tokens = Counter(
            "hangar_node_prompt_tokens", "Prompt tokens processed", ["model"], registry=r
        )
        self.completion_tokens = Counter(
            "hangar_node_completion_tokens", "Completion tokens generated", ["model"], registry=r
        )
        self.ttft = Histogram(
            "hangar_node_time_to_first_token_seconds",
            "From request to the first streamed chunk (includes queueing)",
            ["model"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
            registry=r,
        )
        self.tokens_per_second = Histogram(
            "hangar_node_tokens_per_second",
            "Completion tokens per second of a request, queueing included",
            ["model"],
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
            registry=r,
        )
        self.load_seconds = Histogram(
            "hangar_node_model_load_seconds",
            "Time to load a model into memory",
            ["model"],
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
            registry=r,
        )
        self.queue_depth = Gauge(
            "hangar_node_queue_depth",
            "Requests running or waiting, per loaded model",
            ["model"],
            registry=r,
        )
        self.loaded = Gauge("hangar_node_loaded_models", "Models in memory", registry=r)
        self.downloads = Gauge(
            "hangar_node_downloads_in_progress", "Model downloads running", registry=r
        )

    def render(self, serving: Serving, syncer: Syncer) -> bytes:
        """Gauges are read from the live state at scrape time, never kept in step by hand."""
        self.queue_depth.clear()
        for runner in serving.runners.values():
            self.queue_depth.labels(runner.name).set(runner.admitted)
        self.loaded.set(sum(r.ready for r in serving.runners.values()))
        self.downloads.set(
            len(
                {
                    e.desired.digest
                    for e in syncer.entries.values()
                    if e.status.state == SyncState.downloading
                }
            )
        )
        return generate_latest(self.registry)

    def outcome(self, model: str, endpoint: str, status: int, *, forwarded: bool = False) -> None:
        if forwarded:
            outcome = "forwarded"
        elif status < 400:
            outcome = "ok"
        elif status == 503:
            outcome = "unavailable"
        elif status < 500:
            outcome = "client_error"
        else:
            outcome = "error"
        self.requests.labels(model, endpoint, outcome).inc()

    def usage(self, model: str, usage: dict, seconds: float) -> None:
        prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
        self.prompt_tokens.labels(model).inc(prompt)
        self.completion_tokens.labels(model).inc(completion)
        if completion and seconds > 0:
            self.tokens_per_second.labels(model).observe(completion / seconds)


def count_model(counters: Counters, digest: str, status: int) -> None:
    """One request answered by this model version (``status`` as the client saw it),
    for the heartbeat's per-model counters a rollout's health gate reads. Only server
    errors count against the model: a 4xx is the client's, a 503 is a full queue."""
    found = counters.by_model.get(digest)
    if found is None:
        if len(counters.by_model) >= MAX_MODEL_COUNTERS:  # the oldest version goes first
            counters.by_model.pop(next(iter(counters.by_model)))
        found = counters.by_model[digest] = ModelCounters()
    found.requests += 1
    found.errors += status >= 500 and status != 503
