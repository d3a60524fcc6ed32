"""Prefix caching is visible to the client: a repeated long prompt reports cached_tokens."""

import pytest

from conftest import MODEL, chat_body, post_json, read_sse

LONG = ("You are a helpful assistant for the infermesh project. Answer precisely and cite sources. " * 30)


@pytest.fixture
def one_engine(procs):
    engine = procs.engine(speed="0", name="engine")
    agent = procs.agent([engine])
    return engine, agent


def test_repeated_prompt_reports_cached_tokens(one_engine):
    engine, agent = one_engine
    hits0 = engine.gauge("vllm:prefix_cache_hits_total") or 0
    body = chat_body(LONG + " First question?", max_tokens=4)
    r1 = post_json(agent.port, "/v1/chat/completions", body)
    assert r1.status == 200, r1
    u1 = r1.json()["usage"]
    assert u1["prompt_tokens"] > 500
    assert u1.get("prompt_tokens_details", {}).get("cached_tokens", 0) == 0, u1
    r2 = post_json(agent.port, "/v1/chat/completions", body)
    assert r2.status == 200, r2
    u2 = r2.json()["usage"]
    assert u2["prompt_tokens"] == u1["prompt_tokens"]
    cached = u2["prompt_tokens_details"]["cached_tokens"]
    assert cached > 0, u2
    assert cached >= u2["prompt_tokens"] * 0.8, f"most of a repeated {u2['prompt_tokens']}-token prompt is cached"
    assert cached <= u2["prompt_tokens"]
    # The engine's own counters agree, and the agent reports the hit rate it scraped.
    assert (engine.gauge("vllm:prefix_cache_hits_total") or 0) - hits0 >= cached


def test_shared_prefix_different_suffix_is_partly_cached(one_engine):
    _, agent = one_engine
    r1 = post_json(agent.port, "/v1/chat/completions", chat_body(LONG + " Question one: what is a mesh?"))
    r2 = post_json(agent.port, "/v1/chat/completions", chat_body(LONG + " Question two: why C?"))
    assert r1.status == r2.status == 200
    u2 = r2.json()["usage"]
    cached = u2["prompt_tokens_details"]["cached_tokens"]
    assert 0 < cached < u2["prompt_tokens"], u2


def test_cached_tokens_in_the_streamed_usage(one_engine):
    _, agent = one_engine
    body = chat_body(LONG + " Stream it.", max_tokens=3, stream=True, stream_options={"include_usage": True})
    read_sse(agent.port, "/v1/chat/completions", body)
    status, _, events = read_sse(agent.port, "/v1/chat/completions", body)
    assert status == 200
    import json
    usage = json.loads(events[-2][1])["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] > 0, usage


def test_completions_prefix_cache(one_engine):
    _, agent = one_engine
    body = {"model": MODEL, "prompt": LONG, "max_tokens": 2}
    post_json(agent.port, "/v1/completions", body)
    r = post_json(agent.port, "/v1/completions", body)
    assert r.status == 200
    assert r.json()["usage"]["prompt_tokens_details"]["cached_tokens"] > 0
