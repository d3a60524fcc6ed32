#!/usr/bin/env python3
"""A tiny inference-runtime impostor that replays the captured fixtures (stdlib only).

    replay_server.py KIND FIXTURES_DIR [--port N] [--no-metrics]

KIND is vllm, sglang, tgi, llamacpp, triton or ollama. It serves that runtime's endpoints (the ones the
infermesh adapter and the detection probes fetch) from the files in FIXTURES_DIR (their `# source:` first line
is stripped), plus a canned OpenAI chat completion on POST /v1/chat/completions (--no-metrics: /metrics
answers 404, as Triton's API port does: its metrics are on another port). It prints
"replay KIND listening on http://127.0.0.1:PORT" once it accepts connections.

Behaviour can be flipped at run time so that tests can make the runtime misbehave:

    POST /_control {"health": 503, "metrics_delay_s": 3, "garbage": true}   -> the new knobs (JSON)
    GET  /_control                                                            -> knobs and per-path hit counts

  health           HTTP status of the health endpoint (200)
  metrics_delay_s  seconds the data endpoints wait before answering: /metrics (and /slots for llama.cpp;
                   /api/ps and /api/tags for Ollama)
  garbage          those data endpoints answer 200 with bytes that are no exposition / JSON at all
  runtime_control  accept the runtime's own load/unload endpoints (vLLM and SGLang LoRA adapters, llama.cpp
                   router-mode models, Triton explicit model control, Ollama's /api/generate) the way the
                   runtime answers them; GET /_control lists the requests under "controls" (off: 404, as a
                   runtime started without runtime control answers)
"""

import argparse
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

KINDS = ("vllm", "sglang", "tgi", "llamacpp", "triton", "ollama")

# The model each capture is about (its labels, or the example response it came with).
MODEL = {
    "vllm": "facebook/opt-125m",
    "sglang": "meta-llama/Llama-3.1-8B-Instruct",
    "tgi": "bigscience/bloom-560m",
    "llamacpp": "ggml-org/gemma-3-1b-it-GGUF",
    "triton": "densenet_onnx",
    "ollama": "mistral:latest",
}

METRICS_FILE = {
    "vllm": "vllm.metrics.txt",
    "sglang": "sglang.metrics.txt",
    "tgi": "tgi.metrics.txt",
    "llamacpp": "llamacpp.metrics.txt",
    "triton": "triton.metrics.txt",
}

# TGI GET /info as in tests/unit/test_adapters.c (tgi_info).
TGI_INFO = {
    "model_id": "bigscience/bloom-560m", "model_sha": "e985a63cdc139290c5f700ff1929f0b5942cced2",
    "model_dtype": "torch.float16", "model_device_type": "cuda", "model_pipeline_tag": "text-generation",
    "max_concurrent_requests": 128, "max_best_of": 2, "max_stop_sequences": 4, "max_input_tokens": 1024,
    "max_total_tokens": 2048, "validation_workers": 2, "max_client_batch_size": 4,
    "router": "text-generation-router", "version": "2.0.1", "sha": None, "docker_label": None,
    "max_batch_total_tokens": 16000,
}

# llama.cpp GET /slots as in tests/unit/test_adapters.c (llamacpp_slots): two slots of 4096, slot 1 busy with
# 1000 prompt tokens + 24 decoded.
LLAMACPP_SLOTS = (
    '[{"id":0,"id_task":-1,"n_ctx":4096,"speculative":false,"is_processing":false,'
    '"params":{"n_predict":-1,"seed":4294967295,"temperature":0.8,"top_k":40,"top_p":0.95,'
    '"stop":[],"stream":true},"prompt":"","next_token":{"has_next_token":true,'
    '"has_new_line":false,"n_remain":-1,"n_decoded":0,"stopping_word":""}},'
    '{"id":1,"id_task":12,"n_ctx":4096,"speculative":false,"is_processing":true,'
    '"n_prompt_tokens_processed":1000,'
    '"params":{"n_predict":256,"seed":4294967295,"temperature":0.8,"top_k":40,"top_p":0.95,'
    '"stop":[],"stream":true},"prompt":"","next_token":{"has_next_token":true,'
    '"has_new_line":false,"n_remain":232,"n_decoded":24,"stopping_word":""}}]'
)

GARBAGE = b"\x00\xff\xfe{{{ <html>502 Bad Gateway</html> ]]] \x01\x02 not an exposition\n}}}\"\n"


def strip_source(text):
    first, _, rest = text.partition("\n")
    return rest if first.startswith("# source:") else text


class Replay:
    def __init__(self, kind, fixtures):
        self.kind = kind
        self.fx = Path(fixtures)
        self.lock = threading.Lock()
        self.knobs = {"health": 200, "metrics_delay_s": 0.0, "garbage": False, "runtime_control": False}
        self.hits = {}
        self.controls = []
        self.metrics = None
        self.metrics_served = True
        if kind in METRICS_FILE:
            self.metrics = strip_source(self.read(METRICS_FILE[kind])).encode()
        if kind == "ollama":
            self.ps = strip_source(self.read("ollama.api_ps.json.txt")).encode()
            self.tags = strip_source(self.read("ollama.api_tags.json.txt")).encode()
        if kind == "triton":
            # every model the capture has metrics for, all READY (the repository index replaces that list)
            names = sorted(set(re.findall(r'model="([^"]+)"', self.metrics.decode())))
            self.index = json.dumps([{"name": n, "version": "1", "state": "READY"} for n in names]).encode()

    def read(self, name):
        return (self.fx / name).read_text()

    def knob(self, k):
        with self.lock:
            return self.knobs[k]

    def hit(self, path):
        with self.lock:
            self.hits[path] = self.hits.get(path, 0) + 1

    def models_json(self):
        owner = {"vllm": "vllm", "sglang": "sglang", "llamacpp": "llamacpp"}.get(self.kind, self.kind)
        item = {"id": MODEL[self.kind], "object": "model", "created": 1700000000, "owned_by": owner}
        if self.kind == "vllm":
            item["max_model_len"] = 2048
        return json.dumps({"object": "list", "data": [item]}).encode()

    def health_path(self):
        return {"triton": "/v2/health/ready", "ollama": "/"}.get(self.kind, "/health")


# The load/unload endpoints each runtime has (when started to allow them), and what it answers on success.
CONTROL_PATH = {
    "vllm": re.compile(r"/v1/(load|unload)_lora_adapter"),
    "sglang": re.compile(r"/(load|unload)_lora_adapter"),
    "llamacpp": re.compile(r"/models/(load|unload)"),
    "triton": re.compile(r"/v2/repository/models/[^/]+/(load|unload)"),
    "ollama": re.compile(r"/api/generate"),
    "tgi": re.compile(r"(?!)"),  # TGI has none
}
CONTROL_ANSWER = {
    "vllm": lambda p, b: (f"Success: LoRA adapter '{b.get('lora_name')}' "
                          f"{'added' if 'unload' not in p else 'removed'} successfully.", "text/plain"),
    "sglang": lambda p, b: (json.dumps({"success": True, "error_message": "", "loaded_adapters": {}}),),
    "llamacpp": lambda p, b: (json.dumps({"success": True}),),
    "triton": lambda p, b: ("",),
    "ollama": lambda p, b: (json.dumps({"model": b.get("model"), "created_at": "2024-01-01T00:00:00Z",
                                        "response": "", "done": True,
                                        "done_reason": "unload" if b.get("keep_alive") == 0 else "load"}),),
}


def make_handler(rp):
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # quiet: the tests read our stdout for the port only
            pass

        def send(self, status, body, ctype="application/json"):
            if isinstance(body, str):
                body = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def body(self):
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def data(self, payload, ctype):
            delay = rp.knob("metrics_delay_s")
            if delay:
                time.sleep(float(delay))  # the server misbehaving on purpose, not the test waiting
            if rp.knob("garbage"):
                return self.send(200, GARBAGE, ctype)
            return self.send(200, payload, ctype)

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            rp.hit(path)
            k = rp.kind
            if path == "/_control":
                with rp.lock:
                    return self.send(200, json.dumps({"knobs": rp.knobs, "hits": rp.hits, "controls": rp.controls}))
            if path == rp.health_path():
                st = int(rp.knob("health"))
                if k == "ollama":
                    return self.send(st, "Ollama is running" if st == 200 else "unavailable", "text/plain")
                if k == "llamacpp" and st == 503:
                    return self.send(st, '{"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}')
                return self.send(st, "{}" if st == 200 else '{"error":"unhealthy"}')
            if path == "/metrics" and rp.metrics is not None and rp.metrics_served:
                return self.data(rp.metrics, "text/plain; version=0.0.4; charset=utf-8")
            if k == "ollama" and path == "/api/ps":
                return self.data(rp.ps, "application/json")
            if k == "ollama" and path == "/api/tags":
                return self.data(rp.tags, "application/json")
            if path == "/v1/models" and k != "ollama":
                return self.send(200, rp.models_json())
            if k == "tgi" and path == "/info":
                return self.send(200, json.dumps(TGI_INFO))
            if k == "llamacpp" and path == "/slots":
                return self.data(LLAMACPP_SLOTS.encode(), "application/json")
            if k == "llamacpp" and path == "/props":
                return self.send(200, json.dumps({"default_generation_settings": {"n_ctx": 4096},
                                                  "total_slots": 2, "model_path": "/models/gemma-3-1b-it.gguf"}))
            return self.send(404, '{"error":"not found"}')

        def do_POST(self):
            path = self.path.split("?", 1)[0]
            rp.hit(path)
            raw = self.body()
            if path == "/_control":
                try:
                    upd = json.loads(raw or b"{}")
                    assert isinstance(upd, dict) and set(upd) <= set(rp.knobs), upd
                except Exception as e:  # noqa: BLE001 - tell the test what it sent wrong
                    return self.send(400, json.dumps({"error": str(e)}))
                with rp.lock:
                    rp.knobs.update(upd)
                    return self.send(200, json.dumps(rp.knobs))
            if rp.kind == "triton" and path == "/v2/repository/index":
                return self.send(200, rp.index)
            if rp.knob("runtime_control") and CONTROL_PATH[rp.kind].fullmatch(path):
                try:
                    body = json.loads(raw or b"null")
                except ValueError:
                    return self.send(400, '{"error":"bad json"}')
                with rp.lock:
                    rp.controls.append({"method": "POST", "path": path, "body": body})
                return self.send(200, *CONTROL_ANSWER[rp.kind](path, body))
            if path == "/v1/chat/completions":
                try:
                    req = json.loads(raw)
                except ValueError:
                    return self.send(400, '{"error":{"message":"bad json","type":"invalid_request_error"}}')
                resp = {
                    "id": "chatcmpl-replay-1", "object": "chat.completion", "created": 1700000000,
                    "model": req.get("model", MODEL[rp.kind]),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": f"hello from {rp.kind}"},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
                }
                return self.send(200, json.dumps(resp))
            return self.send(404, '{"error":"not found"}')

    return H


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=KINDS)
    ap.add_argument("fixtures")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--no-metrics", action="store_true")
    a = ap.parse_args()
    rp = Replay(a.kind, a.fixtures)
    if a.no_metrics:
        rp.metrics_served = False
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), make_handler(rp))
    srv.daemon_threads = True
    print(f"replay {a.kind} listening on http://127.0.0.1:{srv.server_address[1]}", flush=True)
    try:
        srv.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
