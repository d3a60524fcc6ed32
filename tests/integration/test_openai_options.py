"""What users hit at once with real runtimes: a runtime's model under an alias (the runtime still gets its own
name), GET /v1/models/{id}, and the simulated engine honouring n, stop, logprobs, response_format and tools
through the agent (it used to answer 200 and ignore them)."""

import json

import pytest

from conftest import MODEL, chat_body, http_get, http_request, post_json, read_sse, wait_for


@pytest.mark.timeout(60)
def test_alias_routes_to_runtimes_that_know_the_model_by_other_names(procs):
    a = procs.engine(model="org/model-a", name="engine-a")
    b = procs.engine(model="org/model-b", name="engine-b")
    agent = procs.agent([f"{a.url}#alias=chat", f"{b.url}#kind=vllm&alias=chat"])
    # listed under the alias only
    ids = [m["id"] for m in http_get(agent.port, "/v1/models").json()["data"]]
    assert ids == ["chat"], ids
    # each runtime gets the name it knows (a sim-engine answers 404 for any other), whichever serves it; the
    # client sees the name it asked for
    served = set()
    for i in range(12):
        r = post_json(agent.port, "/v1/chat/completions", chat_body(f"hello {i}", model="chat", max_tokens=2))
        assert r.status == 200 and r.json()["model"] == "chat", r
        served.add(r.headers["x-infermesh-target"])
    assert len(served) == 2, served
    status, _, events = read_sse(agent.port, "/v1/completions",
                                 {"model": "chat", "prompt": "x", "max_tokens": 3, "stream": True})
    assert status == 200 and events[-1][1] == "[DONE]", events
    assert all(json.loads(d)["model"] == "chat" for _, d in events[:-1]), events
    # the runtime's own name is not the mesh's name for it
    r = post_json(agent.port, "/v1/chat/completions", chat_body(model="org/model-a"))
    assert r.status == 404 and r.json()["error"]["code"] == "model_not_found", r


@pytest.mark.timeout(60)
def test_agent_aliases_name_served_models(procs):
    a = procs.engine(model="org/model-a", name="engine-a")
    b = procs.engine(model="org/model-b", name="engine-b")
    agent = procs.agent([f"{a.url}#alias=chat", b], "--alias", "llama=chat", "--alias", "big=org/model-b",
                        "--alias", "ghost=not-served")
    ids = sorted(m["id"] for m in http_get(agent.port, "/v1/models").json()["data"])
    assert ids == ["big", "chat", "llama", "org/model-b"], ids  # an alias of a model nobody serves is not listed
    for name, target in (("llama", a.url.split("//")[1]), ("big", b.url.split("//")[1])):
        r = post_json(agent.port, "/v1/chat/completions", chat_body(model=name, max_tokens=2))
        # an alias of a runtime's alias reaches that runtime under its own name; the client sees its own
        assert r.status == 200 and r.json()["model"] == name and r.headers["x-infermesh-target"] == target, \
            (name, r)
        assert http_get(agent.port, f"/v1/models/{name}").json()["id"] == name
    status, _, events = read_sse(agent.port, "/v1/chat/completions",
                                 chat_body(model="llama", max_tokens=3, stream=True))
    assert status == 200 and json.loads(events[0][1])["model"] == "llama", events
    assert http_get(agent.port, "/v1/models/ghost").status == 404


@pytest.mark.timeout(60)
def test_get_one_model(procs):
    eng = procs.engine()
    agent = procs.agent([eng], "--tenant", "name=t1,key=sk-tenant-1", "--tenant", "name=t2,key=sk-tenant-2,model=other")
    auth = {"Authorization": "Bearer sk-tenant-1"}
    for path in (f"/v1/models/{MODEL}", "/v1/models/" + MODEL.replace("/", "%2F")):
        r = http_request(agent.port, "GET", path, headers=auth)
        assert r.status == 200, (path, r)
        assert r.json() == {"id": MODEL, "object": "model", "created": 0, "owned_by": "infermesh"}
    r = http_request(agent.port, "GET", "/v1/models/no-such-model", headers=auth)
    assert r.status == 404, r
    err = r.json()["error"]
    assert err["code"] == "model_not_found" and err["type"] == "invalid_request_error" and "no-such-model" in \
        err["message"], err
    # a tenant sees only the models it may use; without a key: 401
    r = http_request(agent.port, "GET", f"/v1/models/{MODEL}", headers={"Authorization": "Bearer sk-tenant-2"})
    assert r.status == 404, r
    assert http_request(agent.port, "GET", f"/v1/models/{MODEL}").status == 401


@pytest.fixture
def sim_agent(procs):
    eng = procs.engine(speed="20")
    return procs.agent([eng])


def chat(port, **extra):
    return post_json(port, "/v1/chat/completions", chat_body("options", max_tokens=6, **extra))


TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                   "required": ["city", "days"]}}}]


@pytest.mark.timeout(60)
def test_sim_engine_honours_n_stop_and_logprobs(sim_agent):
    r = chat(sim_agent.port, n=3, stop=["red"], logprobs=True, top_logprobs=2)
    assert r.status == 200, r
    j = r.json()
    assert [c["index"] for c in j["choices"]] == [0, 1, 2]
    first = j["choices"][0]
    assert first["message"]["content"] == "the big " and first["finish_reason"] == "stop", first
    assert all("red" not in c["message"]["content"] for c in j["choices"])
    lp = first["logprobs"]["content"]
    assert "".join(t["token"] for t in lp) == "the big " and all(len(t["top_logprobs"]) == 2 for t in lp), lp
    assert j["usage"]["completion_tokens"] == sum((len(c["message"]["content"]) + 3) // 4 for c in j["choices"])
    # streamed: chunks of every choice, each ending with its own finish_reason
    status, _, events = read_sse(sim_agent.port, "/v1/chat/completions",
                                 chat_body("options", max_tokens=6, n=2, stop="red", stream=True, logprobs=True))
    assert status == 200 and events[-1][1] == "[DONE]"
    text, finish = {0: "", 1: ""}, {}
    for _, d in events[:-1]:
        for c in json.loads(d)["choices"]:
            text[c["index"]] += c["delta"].get("content") or ""
            if c["finish_reason"]:
                finish[c["index"]] = c["finish_reason"]
            elif c["delta"].get("content"):
                assert c["logprobs"]["content"][0]["token"] == c["delta"]["content"], c
    assert text[0] == "the big " and finish == {0: "stop", 1: "length"}, (text, finish)
    bad = chat(sim_agent.port, n=0)
    assert bad.status == 400 and "'n'" in bad.json()["error"]["message"], bad


@pytest.mark.timeout(60)
def test_sim_engine_answers_json_for_response_format(sim_agent):
    r = chat(sim_agent.port, response_format={"type": "json_object"})
    assert r.status == 200 and isinstance(json.loads(r.json()["choices"][0]["message"]["content"]), dict), r
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                                               "pet": {"enum": ["cat", "dog"]}},
              "required": ["name", "age", "pet"]}
    r = chat(sim_agent.port, response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": schema}})
    doc = json.loads(r.json()["choices"][0]["message"]["content"])
    assert isinstance(doc["name"], str) and isinstance(doc["age"], int) and doc["pet"] == "cat", doc
    bad = chat(sim_agent.port, response_format={"type": "json_schema"})
    assert bad.status == 400, bad


@pytest.mark.timeout(60)
def test_sim_engine_calls_the_tool_it_is_told_to(sim_agent):
    # auto: text
    r = chat(sim_agent.port, tools=TOOLS, tool_choice="auto")
    assert r.status == 200 and r.json()["choices"][0]["message"]["content"], r
    for choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
        r = chat(sim_agent.port, tools=TOOLS, tool_choice=choice)
        c = r.json()["choices"][0]
        assert c["finish_reason"] == "tool_calls" and c["message"]["content"] is None, c
        call = c["message"]["tool_calls"][0]
        assert call["type"] == "function" and call["function"]["name"] == "get_weather" and call["id"], call
        args = json.loads(call["function"]["arguments"])
        assert isinstance(args["city"], str) and isinstance(args["days"], int), args
    # streamed in OpenAI's delta format: the name first, then argument pieces that join into JSON
    status, _, events = read_sse(sim_agent.port, "/v1/chat/completions",
                                 chat_body("options", max_tokens=6, stream=True, tools=TOOLS, tool_choice="required"))
    assert status == 200 and events[-1][1] == "[DONE]"
    calls = [c["delta"]["tool_calls"][0] for _, d in events[:-1] for c in json.loads(d)["choices"]
             if c["delta"].get("tool_calls")]
    assert calls[0]["function"]["name"] == "get_weather" and calls[0]["id"]
    args = json.loads("".join(c["function"]["arguments"] for c in calls))
    assert set(args) == {"city", "days"}, args
    assert json.loads(events[-2][1])["choices"][0]["finish_reason"] == "tool_calls"
    bad = chat(sim_agent.port, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "nope"}})
    assert bad.status == 400 and "nope" in bad.json()["error"]["message"], bad


@pytest.mark.timeout(90)
def test_aliases_across_the_mesh(procs, tmp_path):
    """Node a serves org/model-a under its runtime alias `chat`; gateway c (no runtime) adds `gpt` for it."""
    from test_mesh import init_cluster, remote_healthy, share_key, start_node, wait_members

    init_cluster(tmp_path / "a")
    share_key(tmp_path / "a", tmp_path / "c")
    ea = procs.engine(model="org/model-a", name="engine-a")
    a = start_node(procs, tmp_path, "a", [f"{ea.url}#alias=chat"], data_dir=tmp_path / "a")
    c = start_node(procs, tmp_path, "c", [], join=[a.gossip], extra=("--alias", "gpt=chat"))
    wait_members([a, c], ["a", "c"])
    wait_for(lambda: remote_healthy(c, 1), timeout=15, what="a's target healthy at c")
    assert sorted(m["id"] for m in http_get(c.port, "/v1/models").json()["data"]) == ["chat", "gpt"]
    for name in ("chat", "gpt"):
        r = post_json(c.port, "/v1/chat/completions", chat_body(model=name, max_tokens=2))
        assert r.status == 200 and r.headers["x-infermesh-node"] == "a" and r.json()["model"] == name, (name, r)
        status, _, events = read_sse(c.port, "/v1/chat/completions", chat_body(model=name, max_tokens=2, stream=True))
        assert status == 200 and all(json.loads(d)["model"] == name for _, d in events[:-1]), events
