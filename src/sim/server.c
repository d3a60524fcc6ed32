/* The simulated engine's HTTP face: OpenAI endpoints, SSE paced by the model, vLLM metrics, faults. */
#include "sim/server.h"

#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/rng.h"
#include "kv/kv_pub.h"
#include "route/jscan.h"
#include "net/http_server.h"
#include "sim/engine.h"
#include "sim/lora.h"
#include "sim/oai_gen.h"
#include "sim/sim_text.h"

#define DEFAULT_PROFILE "llama-3.1-8b-h100"
#define DEFAULT_MAX_TOKENS 128
#define DEFAULT_MAX_LORAS 8

struct sim_opts {
  char host[64];
  int port;
  char profile[256];
  char profiles_dir[512];
  char model[SIM_PROFILE_MODEL_MAX];
  double speed; /* virtual seconds per real second; 0 = instant */
  double error_rate, hang_rate;
  uint32_t added_latency_ms;
  long crash_after; /* exit when request crash_after+1 arrives; -1 never */
  int max_loras;    /* LoRA adapters loadable at once; 0 = no runtime LoRA API */
  uint64_t seed;
  char log_level[8];
  char kv_events[256]; /* ZMQ endpoint of the KV-cache event publisher; "" = none */
};

struct simsrv {
  uv_loop_t *loop;
  struct sim_opts o;
  struct sim_profile prof;
  struct sim_engine *eng;
  struct sim_loras loras;
  struct http_server http;
  uv_timer_t step_timer;
  uv_signal_t sigterm, sigint;
  uint64_t t0_ns;      /* real time origin */
  uint64_t virt_ns;    /* virtual time reached (instant mode) */
  struct rng rng;
  long requests;       /* completion requests received */
  uint64_t errors_injected, hangs_injected, next_id;
  struct kv_pub *kvpub; /* --kv-events: what the KV pool stores and evicts, as vLLM publishes it */
};

struct sreq {
  struct simsrv *s;
  struct http_req *req;
  uint64_t id;
  bool chat, stream, include_usage, hung;
  bool lora; /* model names a LoRA adapter (counted in flight until freed) */
  char model[SIM_LORA_NAME_MAX]; /* as requested: the base model or a LoRA adapter */
  int prompt_tokens, max_tokens, cached_tokens, tokens_out;
  char rid[40];
  int64_t created;
  struct buf prompt; /* the prompt text, kept only until submit */
  /* What its KV blocks are named by (hashed), kept until submit: the raw JSON span of "messages" or "prompt",
   * as routers hash it (policy_prompt_hashes over route/jscan's span), so that a router predicts this
   * engine's prefix cache block for block and its KV-cache events name blocks in the routers' hashing. */
  struct buf blocks_src;
  uv_timer_t *delay;
  /* What each choice says (sim/oai_gen.h), and how much of it a stream has sent */
  struct sim_gen gen;
  struct sim_choice choices[SIM_GEN_MAX_N];
  size_t sent[SIM_GEN_MAX_N];
  int tokens_sent[SIM_GEN_MAX_N];
};

static void schedule(struct simsrv *s);

/* ---- time ---- */

static uint64_t virt_now(struct simsrv *s) {
  if (s->o.speed <= 0) return s->virt_ns;
  return (uint64_t)((double)(clock_mono_ns() - s->t0_ns) * s->o.speed);
}

/* ---- responses ---- */

static void send_error(struct http_req *req, int status, const char *type, const char *msg) {
  /* vLLM's error shape: {"object":"error","message",...} plus OpenAI's nested form for clients. */
  struct buf b = {0};
  http_error_json(&b, msg, type, NULL);
  http_resp_send(req, status, "application/json", b.base, b.len, NULL, 0);
  buf_free(&b);
}

static void usage_json(struct buf *b, const struct sreq *r) {
  int out = 0;
  for (int i = 0; i < r->gen.n; i++)
    out += r->choices[i].tokens;
  buf_printf(b,
             "\"usage\":{\"prompt_tokens\":%d,\"total_tokens\":%d,\"completion_tokens\":%d,"
             "\"prompt_tokens_details\":{\"cached_tokens\":%d}}",
             r->prompt_tokens, r->prompt_tokens + out, out, r->cached_tokens);
}

static void chunk_begin(struct buf *b, const struct sreq *r) {
  buf_printf(b, "data: {\"id\":\"%s\",\"object\":\"%s\",\"created\":%lld,\"model\":", r->rid,
             r->chat ? "chat.completion.chunk" : "text_completion", (long long)r->created);
  buf_json_str(b, slice_cstr(r->model));
  buf_puts(b, ",\"choices\":[");
}

/* One stream chunk for choice i: its next output piece (len bytes at off; role and tool call head first). */
static void piece_chunk(struct buf *b, struct sreq *r, int i, size_t off, size_t len) {
  const struct sim_choice *c = &r->choices[i];
  struct slice piece = slice_make(c->text.base ? c->text.base + off : "", len);
  bool first = off == 0;
  chunk_begin(b, r);
  buf_printf(b, "{\"index\":%d,", i);
  if (!r->chat) {
    buf_puts(b, "\"text\":");
    buf_json_str(b, piece);
  } else if (r->gen.tool_call) {
    buf_puts(b, first ? "\"delta\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":0,"
                      : "\"delta\":{\"tool_calls\":[{\"index\":0,");
    if (first) {
      buf_printf(b, "\"id\":\"call_%s_%d\",\"type\":\"function\",\"function\":{\"name\":", r->rid, i);
      buf_json_str(b, slice_cstr(r->gen.tool_name));
      buf_puts(b, ",\"arguments\":");
    } else {
      buf_puts(b, "\"function\":{\"arguments\":");
    }
    buf_json_str(b, piece);
    buf_puts(b, "}}]}");
  } else {
    buf_puts(b, first ? "\"delta\":{\"role\":\"assistant\",\"content\":" : "\"delta\":{\"content\":");
    buf_json_str(b, piece);
    buf_puts(b, "}");
  }
  buf_puts(b, ",\"logprobs\":");
  if (r->chat && r->gen.logprobs && !r->gen.tool_call)
    sim_gen_logprobs(b, piece.base, piece.len, r->tokens_sent[i], r->gen.top_logprobs);
  else
    buf_puts(b, "null");
  buf_puts(b, ",\"finish_reason\":null}]}\n\n");
}

/* Send each choice's next piece; all that is left when rest (the engine is done). */
static void send_pieces(struct sreq *r, bool rest) {
  struct buf b = {0};
  for (int i = 0; i < r->gen.n; i++) {
    const struct sim_choice *c = &r->choices[i];
    do {
      size_t n = sim_gen_piece(c->text.base, c->text.len, r->sent[i]);
      if (n == 0 && !(r->sent[i] == 0 && r->tokens_sent[i] == 0)) break;
      piece_chunk(&b, r, i, r->sent[i], n); /* an empty choice still gets its role chunk */
      r->sent[i] += n;
      r->tokens_sent[i]++;
    } while (rest);
  }
  if (b.len) http_resp_write(r->req, b.base, b.len);
  buf_free(&b);
}

static void sreq_free(struct sreq *r) {
  if (r->lora) sim_loras_end(&r->s->loras, r->model, (double)clock_wall_s());
  buf_free(&r->prompt);
  buf_free(&r->blocks_src);
  for (int i = 0; i < SIM_GEN_MAX_N; i++)
    sim_choice_free(&r->choices[i]);
  sim_gen_free(&r->gen);
  free(r);
}

static void finish_stream(struct sreq *r) {
  struct buf b = {0};
  send_pieces(r, true);
  for (int i = 0; i < r->gen.n; i++) {
    chunk_begin(&b, r);
    buf_printf(&b,
               r->chat ? "{\"index\":%d,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"%s\"}]}\n\n"
                       : "{\"index\":%d,\"text\":\"\",\"logprobs\":null,\"finish_reason\":\"%s\"}]}\n\n",
               i, r->choices[i].finish);
  }
  if (r->include_usage) {
    chunk_begin(&b, r);
    buf_puts(&b, "],");
    usage_json(&b, r);
    buf_puts(&b, "}\n\n");
  }
  buf_puts(&b, "data: [DONE]\n\n");
  http_resp_write(r->req, b.base, b.len);
  buf_free(&b);
  r->req->abort_cb = NULL;
  http_resp_end(r->req);
  sreq_free(r);
}

static void finish_full(struct sreq *r) {
  struct buf b = {0};
  buf_printf(&b, "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%lld,\"model\":", r->rid,
             r->chat ? "chat.completion" : "text_completion", (long long)r->created);
  buf_json_str(&b, slice_cstr(r->model));
  buf_puts(&b, ",\"choices\":[");
  for (int i = 0; i < r->gen.n; i++) {
    const struct sim_choice *c = &r->choices[i];
    buf_printf(&b, "%s{\"index\":%d,", i ? "," : "", i);
    if (!r->chat) {
      buf_puts(&b, "\"text\":");
      buf_json_str(&b, buf_slice(&c->text));
    } else if (r->gen.tool_call) {
      buf_printf(
          &b,
          "\"message\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_%s_%d\","
          "\"type\":\"function\",\"function\":{\"name\":",
          r->rid, i);
      buf_json_str(&b, slice_cstr(r->gen.tool_name));
      buf_puts(&b, ",\"arguments\":");
      buf_json_str(&b, buf_slice(&c->text));
      buf_puts(&b, "}}]}");
    } else {
      buf_puts(&b, "\"message\":{\"role\":\"assistant\",\"content\":");
      buf_json_str(&b, buf_slice(&c->text));
      buf_puts(&b, "}");
    }
    buf_puts(&b, ",\"logprobs\":");
    if (r->chat && r->gen.logprobs && !r->gen.tool_call)
      sim_gen_logprobs(&b, c->text.base, c->text.len, 0, r->gen.top_logprobs);
    else
      buf_puts(&b, "null");
    buf_printf(&b, ",\"finish_reason\":\"%s\"}", c->finish);
  }
  buf_puts(&b, "],");
  usage_json(&b, r);
  buf_puts(&b, "}");
  r->req->abort_cb = NULL;
  http_resp_send(r->req, 200, "application/json", b.base, b.len, NULL, 0);
  buf_free(&b);
  sreq_free(r);
}

/* ---- engine events ---- */

static void event_cb(void *arg, const struct sim_event *ev) {
  struct sreq *r = ev->udata;
  (void)arg;
  r->tokens_out = ev->tokens_out;
  r->cached_tokens = ev->cached_tokens;
  switch (ev->kind) {
  case SIM_EV_FIRST_TOKEN:
    if (r->stream) {
      struct http_header h[2] = {{SLICE_LIT("Content-Type"), SLICE_LIT("text/event-stream")},
                                 {SLICE_LIT("Cache-Control"), SLICE_LIT("no-cache")}};
      http_resp_start(r->req, 200, h, 2, -1);
      send_pieces(r, false);
    }
    break;
  case SIM_EV_TOKEN:
    if (r->stream) send_pieces(r, false);
    break;
  case SIM_EV_DONE:
    if (r->stream)
      finish_stream(r);
    else
      finish_full(r);
    break;
  }
}

/* advance runs the engine to NOW_NS and publishes the KV-cache events of the steps it completed, one batch
 * per call (vLLM publishes one per scheduler step). */
static void advance(struct simsrv *s, uint64_t now_ns) {
  sim_engine_advance(s->eng, now_ns, event_cb, s);
  if (s->kvpub) kv_pub_flush(s->kvpub);
}

static void step_cb(uv_timer_t *t) {
  struct simsrv *s = t->data;
  advance(s, virt_now(s));
  schedule(s);
}

/* Arm the timer for the engine's next step end, converted to real milliseconds. In instant mode, run
 * virtual time forward until the engine is idle. */
static void schedule(struct simsrv *s) {
  uint64_t next = sim_engine_next_event(s->eng);
  if (s->o.speed <= 0) {
    while (next != UINT64_MAX) {
      if (next > s->virt_ns) s->virt_ns = next;
      advance(s, s->virt_ns);
      next = sim_engine_next_event(s->eng);
    }
    return;
  }
  if (next == UINT64_MAX) {
    uv_timer_stop(&s->step_timer);
    return;
  }
  uint64_t now = virt_now(s);
  double real_ns = next > now ? (double)(next - now) / s->o.speed : 0;
  uint64_t ms = (uint64_t)(real_ns / 1e6 + 0.999);
  uv_timer_start(&s->step_timer, step_cb, ms, 0);
}

/* ---- requests ---- */

/* The added-latency timer closes on its own: the request no longer refers to it once this returns. */
static void delay_closed_cb(uv_handle_t *h) { free(h); }

static void release_delay(struct sreq *r) {
  uv_timer_stop(r->delay);
  uv_close((uv_handle_t *)r->delay, delay_closed_cb);
  r->delay = NULL;
}

static void sreq_abort_cb(struct http_req *req) {
  struct sreq *r = req->data;
  if (r->delay) {
    release_delay(r);
  } else if (r->id) {
    sim_engine_abort(r->s->eng, r->id); /* the KV blocks free now: running count drops */
  }
  log_debug("client went away", "id=%s tokens_out=%d", r->rid, r->tokens_out);
  req->abort_cb = NULL;
  http_resp_end(req);
  sreq_free(r);
}

static void submit(struct sreq *r) {
  struct simsrv *s = r->s;
  const struct buf *src = r->blocks_src.len ? &r->blocks_src : &r->prompt;
  int max = src->len / ((size_t)s->prof.block_size * 4) + 1;
  uint64_t *hashes = xmalloc((size_t)max * sizeof *hashes);
  int nb = sim_block_hashes(&s->prof, src->base, src->len, hashes, max);
  r->id = sim_engine_submit(s->eng, virt_now(s), hashes, nb, r->prompt_tokens, r->max_tokens, r);
  free(hashes);
  buf_free(&r->prompt);
  buf_free(&r->blocks_src);
  schedule(s);
}

static void delay_cb(uv_timer_t *t) {
  struct sreq *r = t->data;
  release_delay(r);
  submit(r);
}

/* Append a message content (string or array of text parts) to the prompt. */
static void add_content(struct buf *p, json_t *content) {
  if (json_is_string(content)) {
    buf_append(p, json_string_value(content), json_string_length(content));
  } else if (json_is_array(content)) {
    size_t i;
    json_t *part;
    json_array_foreach(content, i, part) {
      json_t *text = json_object_get(part, "text");
      if (json_is_string(text)) buf_append(p, json_string_value(text), json_string_length(text));
    }
  }
}

/* Build the prompt text the way a chat template would: role markers around each message. */
static const char *build_prompt(struct sreq *r, json_t *root) {
  if (r->chat) {
    json_t *msgs = json_object_get(root, "messages");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0) return "'messages' must be a non-empty array";
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
      json_t *role = json_object_get(m, "role");
      if (!json_is_object(m) || !json_is_string(role)) return "each message needs a 'role' string";
      buf_printf(&r->prompt, "<|%s|>\n", json_string_value(role));
      add_content(&r->prompt, json_object_get(m, "content"));
      buf_puts(&r->prompt, "\n");
    }
    buf_puts(&r->prompt, "<|assistant|>\n");
  } else {
    json_t *prompt = json_object_get(root, "prompt");
    if (json_is_string(prompt))
      buf_append(&r->prompt, json_string_value(prompt), json_string_length(prompt));
    else if (json_is_array(prompt) && json_array_size(prompt) > 0 && json_is_string(json_array_get(prompt, 0)))
      add_content(&r->prompt, json_array_get(prompt, 0));
    else
      return "'prompt' must be a string or an array of strings";
  }
  return NULL;
}

static void handle_completion(struct simsrv *s, struct http_req *req, bool chat) {
  char msg[512];
  json_error_t jerr;
  if (s->o.crash_after >= 0 && s->requests >= s->o.crash_after) {
    log_warn("fault: crashing as asked", "after=%ld", s->o.crash_after);
    _exit(3);
  }
  s->requests++;
  /* what a runtime sees of the caller's trace (tests follow a trace into the engine with --log-level debug) */
  struct slice tp = http_req_header(req, "traceparent"), ts = http_req_header(req, "tracestate");
  log_debug("request", "n=%ld traceparent=%.*s tracestate=\"%.*s\"", s->requests, (int)tp.len, tp.len ? tp.base : "",
            (int)ts.len, ts.len ? ts.base : "");
  if (s->o.error_rate > 0 && rng_unit(&s->rng) < s->o.error_rate) {
    s->errors_injected++;
    send_error(req, 500, "internal_server_error", "injected fault: simulated engine error");
    return;
  }
  json_t *root = json_loadb(req->body.base, req->body.len, JSON_REJECT_DUPLICATES, &jerr);
  if (!root || !json_is_object(root)) {
    snprintf(msg, sizeof msg, "invalid JSON body: %s", root ? "not an object" : jerr.text);
    json_decref(root);
    send_error(req, 400, "BadRequestError", msg);
    return;
  }
  json_t *model = json_object_get(root, "model");
  const char *mname = json_string_value(model);
  bool is_lora = mname && sim_loras_find(&s->loras, mname);
  if (!mname || (strcmp(mname, s->prof.model) != 0 && !is_lora)) {
    snprintf(msg, sizeof msg, "The model `%.200s` does not exist.", json_is_string(model) ? json_string_value(model) : "");
    json_decref(root);
    send_error(req, 404, "NotFoundError", msg);
    return;
  }
  struct sreq *r = xcalloc(1, sizeof *r);
  r->s = s;
  r->req = req;
  r->chat = chat;
  str_copy(r->model, sizeof r->model, mname);
  if (is_lora) {
    r->lora = true; /* served by the base model's engine, like vLLM with the adapter applied */
    sim_loras_begin(&s->loras, mname, (double)clock_wall_s());
  }
  r->created = clock_wall_s();
  snprintf(r->rid, sizeof r->rid, "%s-%llu", chat ? "chatcmpl" : "cmpl", (unsigned long long)++s->next_id);
  r->stream = json_is_true(json_object_get(root, "stream"));
  r->include_usage = json_is_true(json_object_get(json_object_get(root, "stream_options"), "include_usage"));
  json_t *mt = json_object_get(root, "max_completion_tokens");
  if (!mt) mt = json_object_get(root, "max_tokens");
  r->max_tokens = DEFAULT_MAX_TOKENS;
  if (mt && !json_is_null(mt)) {
    if (!json_is_integer(mt) || json_integer_value(mt) < 1 || json_integer_value(mt) > INT_MAX) {
      json_decref(root);
      sreq_free(r);
      send_error(req, 400, "BadRequestError", "max_tokens must be a positive integer");
      return;
    }
    r->max_tokens = (int)json_integer_value(mt);
  }
  if (sim_gen_parse(root, chat, &r->gen, msg, sizeof msg) != 0) {
    json_decref(root);
    sreq_free(r);
    send_error(req, 400, "BadRequestError", msg);
    return;
  }
  for (int i = 0; i < r->gen.n; i++)
    sim_gen_choice(&r->gen, i, r->max_tokens, &r->choices[i]);
  const char *bad = build_prompt(r, root);
  json_decref(root);
  struct oai_req oai;
  if (!bad && jscan_request(req->body.base, req->body.len, &oai, NULL, 0) == 0 && oai.prompt.len)
    buf_append(&r->blocks_src, oai.prompt.base, oai.prompt.len);
  r->prompt_tokens = sim_tokens_for_bytes(r->prompt.len);
  if (!bad && sim_engine_check(s->eng, r->prompt_tokens, r->max_tokens, msg, sizeof msg) != 0) bad = msg;
  if (bad) {
    send_error(req, 400, "BadRequestError", bad);
    sreq_free(r);
    return;
  }
  req->data = r;
  req->abort_cb = sreq_abort_cb;
  if (s->o.hang_rate > 0 && rng_unit(&s->rng) < s->o.hang_rate) {
    s->hangs_injected++;
    r->hung = true; /* never answered; only the client going away ends it */
    buf_free(&r->prompt);
    buf_free(&r->blocks_src);
    return;
  }
  if (s->o.added_latency_ms) {
    r->delay = xmalloc(sizeof *r->delay);
    uv_timer_init(s->loop, r->delay);
    r->delay->data = r;
    uv_timer_start(r->delay, delay_cb, s->o.added_latency_ms, 0);
    return;
  }
  submit(r);
}

static void render_metrics(struct simsrv *s, struct buf *b) {
  const struct sim_stats *st = sim_engine_stats(s->eng);
  char lbl[SIM_PROFILE_MODEL_MAX + 32];
  snprintf(lbl, sizeof lbl, "model_name=\"%s\"", s->prof.model);
  buf_printf(b,
             "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
             "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{%s} %d\n"
             "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
             "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{%s} %d\n"
             "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.\n"
             "# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc{%s} %.6f\n"
             "# HELP vllm:prefix_cache_queries_total Prefix cache queries, in terms of number of queried tokens.\n"
             "# TYPE vllm:prefix_cache_queries_total counter\nvllm:prefix_cache_queries_total{%s} %llu\n"
             "# HELP vllm:prefix_cache_hits_total Prefix cache hits, in terms of number of cached tokens.\n"
             "# TYPE vllm:prefix_cache_hits_total counter\nvllm:prefix_cache_hits_total{%s} %llu\n"
             "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.\n"
             "# TYPE vllm:prompt_tokens_total counter\nvllm:prompt_tokens_total{%s} %llu\n"
             "# HELP vllm:generation_tokens_total Number of generation tokens processed.\n"
             "# TYPE vllm:generation_tokens_total counter\nvllm:generation_tokens_total{%s} %llu\n"
             "# HELP vllm:request_success_total Count of successfully processed requests.\n"
             "# TYPE vllm:request_success_total counter\nvllm:request_success_total{%s,finished_reason=\"length\"} %llu\n"
             "# HELP vllm:num_preemptions_total Cumulative number of preemption from the engine.\n"
             "# TYPE vllm:num_preemptions_total counter\nvllm:num_preemptions_total{%s} %llu\n"
             "# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig\n"
             "# TYPE vllm:cache_config_info gauge\n"
             "vllm:cache_config_info{block_size=\"%d\",enable_prefix_caching=\"True\",num_gpu_blocks=\"%d\"} 1.0\n",
             lbl, st->running, lbl, st->waiting, lbl, st->kv_usage, lbl,
             (unsigned long long)st->prefix_queries_tokens, lbl, (unsigned long long)st->prefix_hits_tokens, lbl,
             (unsigned long long)st->prompt_tokens_total, lbl, (unsigned long long)st->generation_tokens_total, lbl,
             (unsigned long long)st->requests_finished, lbl, (unsigned long long)st->preemptions,
             s->prof.block_size, s->prof.num_gpu_blocks);
  buf_puts(b, "# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds (model time).\n"
              "# TYPE vllm:time_to_first_token_seconds histogram\n");
  hist_render(&st->ttft, b, "vllm:time_to_first_token_seconds", lbl);
  buf_puts(b, "# HELP vllm:e2e_request_latency_seconds Histogram of end to end request latency in seconds.\n"
              "# TYPE vllm:e2e_request_latency_seconds histogram\n");
  hist_render(&st->e2e, b, "vllm:e2e_request_latency_seconds", lbl);
  buf_puts(b, "# HELP vllm:inter_token_latency_seconds Histogram of inter-token latency in seconds.\n"
              "# TYPE vllm:inter_token_latency_seconds histogram\n");
  hist_render(&st->itl, b, "vllm:inter_token_latency_seconds", lbl);
  buf_printf(b,
             "# HELP infermesh_sim_faults_total Faults injected by the simulated engine.\n"
             "# TYPE infermesh_sim_faults_total counter\ninfermesh_sim_faults_total{kind=\"error\"} %llu\n"
             "infermesh_sim_faults_total{kind=\"hang\"} %llu\n",
             (unsigned long long)s->errors_injected, (unsigned long long)s->hangs_injected);
  sim_loras_metric(&s->loras, b);
}

/* vLLM's runtime LoRA API (VLLM_ALLOW_RUNTIME_LORA_UPDATING): plain-text success, JSON errors. */
static void handle_lora(struct simsrv *s, struct http_req *req, bool load) {
  struct sim_lora_answer a;
  double now = (double)clock_wall_s();
  if (load) sim_loras_load(&s->loras, req->body.base, req->body.len, now, &a);
  else sim_loras_unload(&s->loras, req->body.base, req->body.len, now, &a);
  if (a.status != 200) return send_error(req, a.status, a.type, a.msg);
  log_info(load ? "LoRA adapter loaded" : "LoRA adapter unloaded", "loras=%d msg=\"%s\"", s->loras.n, a.msg);
  http_resp_send(req, 200, "text/plain; charset=utf-8", a.msg, strlen(a.msg), NULL, 0);
}

static void handle(struct http_req *req, void *arg) {
  struct simsrv *s = arg;
  bool post = req->method == HTTP_M_POST, get = req->method == HTTP_M_GET;
  if (post && slice_eqz(req->path, "/v1/chat/completions")) return handle_completion(s, req, true);
  if (post && slice_eqz(req->path, "/v1/completions")) return handle_completion(s, req, false);
  bool lora = post && s->loras.max; /* vLLM's runtime LoRA API, unless --max-loras 0 */
  if (lora && slice_eqz(req->path, "/v1/load_lora_adapter")) return handle_lora(s, req, true);
  if (lora && slice_eqz(req->path, "/v1/unload_lora_adapter")) return handle_lora(s, req, false);
  if (get && slice_eqz(req->path, "/health")) return http_resp_send(req, 200, "application/json", "", 0, NULL, 0);
  if (get && slice_eqz(req->path, "/v1/models")) {
    struct buf b = {0};
    buf_puts(&b, "{\"object\":\"list\",\"data\":[{\"id\":");
    buf_json_str(&b, slice_cstr(s->prof.model));
    buf_printf(&b, ",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"infermesh-sim\",\"root\":",
               (long long)clock_wall_s());
    buf_json_str(&b, slice_cstr(s->prof.model));
    buf_printf(&b, ",\"max_model_len\":%d}", s->prof.max_model_len);
    sim_loras_model_cards(&s->loras, s->prof.model, clock_wall_s(), &b);
    buf_puts(&b, "]}");
    http_resp_send(req, 200, "application/json", b.base, b.len, NULL, 0);
    buf_free(&b);
    return;
  }
  if (get && slice_eqz(req->path, "/metrics")) {
    struct buf b = {0};
    render_metrics(s, &b);
    http_resp_send(req, 200, "text/plain; version=0.0.4", b.base, b.len, NULL, 0);
    buf_free(&b);
    return;
  }
  send_error(req, 404, "NotFoundError", "no such endpoint on the simulated engine");
}

/* ---- setup ---- */

static void usage(FILE *f) {
  fprintf(f,
          "usage: infermesh sim-engine [options]\n\n"
          "A simulated vLLM-like engine: OpenAI API (/v1/chat/completions, /v1/completions, /v1/models),\n"
          "/health and vLLM metrics on /metrics. Token counts, timing and prefix caching follow the profile.\n\n"
          "  --host H               listen address (127.0.0.1)\n"
          "  --port P               listen port (8000; 0 = any free port, printed on stdout)\n"
          "  --profile NAME|FILE    engine profile (" DEFAULT_PROFILE ")\n"
          "  --profiles-dir DIR     where profile names are looked up (INFERMESH_PROFILES_DIR, ../profiles)\n"
          "  --model ID             served model id (the profile's)\n"
          "  --speed X              model seconds per real second (1); 0 = instant (zero-latency mode)\n"
          "  --max-loras N          LoRA adapters loadable at once through vLLM's runtime API\n"
          "                         (POST /v1/load_lora_adapter, /v1/unload_lora_adapter); 0 = no such API (8)\n"
          "  --seed N               fault-injection seed\n"
          "  --kv-events ENDPOINT   publish KV-cache events as vLLM's --kv-events-config does (ZMQ PUB,\n"
          "                         msgpack KVEventBatch), e.g. tcp://*:5557 (bound; a host without '*' connects)\n"
          "faults:\n"
          "  --error-rate F         answer this fraction of requests with 500\n"
          "  --added-latency-ms N   hold every request N ms before it enters the queue\n"
          "  --hang-rate F          never answer this fraction of requests\n"
          "  --crash-after N        exit abruptly when request N+1 arrives\n"
          "  --log-level L          debug|info|warn|error (info)\n");
}

static int parse_args(struct sim_opts *o, int argc, char **argv) {
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      return 1;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "infermesh sim-engine: %s needs a value (see --help)\n", a);
      return -1;
    }
    const char *v = argv[++i];
    char *end = NULL;
    double d = strtod(v, &end);
    bool num = end && *end == '\0' && end != v;
    if (strcmp(a, "--host") == 0) str_copy(o->host, sizeof o->host, v);
    else if (strcmp(a, "--profile") == 0) str_copy(o->profile, sizeof o->profile, v);
    else if (strcmp(a, "--profiles-dir") == 0) str_copy(o->profiles_dir, sizeof o->profiles_dir, v);
    else if (strcmp(a, "--model") == 0) str_copy(o->model, sizeof o->model, v);
    else if (strcmp(a, "--log-level") == 0) str_copy(o->log_level, sizeof o->log_level, v);
    else if (strcmp(a, "--kv-events") == 0) str_copy(o->kv_events, sizeof o->kv_events, v);
    else if (!num) {
      fprintf(stderr, "infermesh sim-engine: %s '%s': %s\n", a, v,
              strncmp(a, "--", 2) == 0 ? "expected a number (or an unknown option: see --help)" : "unknown argument");
      return -1;
    } else if (strcmp(a, "--port") == 0 && d >= 0 && d <= 65535) o->port = (int)d;
    else if (strcmp(a, "--speed") == 0 && d >= 0) o->speed = d;
    else if (strcmp(a, "--seed") == 0 && d >= 0) o->seed = (uint64_t)d;
    else if (strcmp(a, "--error-rate") == 0 && d >= 0 && d <= 1) o->error_rate = d;
    else if (strcmp(a, "--hang-rate") == 0 && d >= 0 && d <= 1) o->hang_rate = d;
    else if (strcmp(a, "--added-latency-ms") == 0 && d >= 0) o->added_latency_ms = (uint32_t)d;
    else if (strcmp(a, "--crash-after") == 0 && d >= 0) o->crash_after = (long)d;
    else if (strcmp(a, "--max-loras") == 0 && d >= 0 && d <= 1024) o->max_loras = (int)d;
    else {
      fprintf(stderr, "infermesh sim-engine: bad option or value: %s %s (see --help)\n", a, v);
      return -1;
    }
  }
  return 0;
}

static void find_profiles_dir(struct sim_opts *o) {
  if (!o->profiles_dir[0]) sim_profiles_dir(o->profiles_dir, sizeof o->profiles_dir);
}

static void kv_stored_cb(void *arg, uint64_t hash, bool has_parent, uint64_t parent) {
  struct simsrv *s = arg;
  kv_pub_stored(s->kvpub, hash, has_parent, parent, s->prof.block_size);
}

static void kv_removed_cb(void *arg, uint64_t hash) {
  struct simsrv *s = arg;
  kv_pub_removed(s->kvpub, hash);
}

static void signal_cb(uv_signal_t *sig, int signum) {
  struct simsrv *s = sig->data;
  log_info("stopping", "signal=%d", signum);
  /* An engine stops at once: streams in flight are cut, like a killed vLLM. */
  uv_stop(s->loop);
}

int sim_server_main(int argc, char **argv) {
  static struct simsrv srv;
  struct simsrv *s = &srv;
  char err[512];
  *s = (struct simsrv){0};
  struct sim_opts *o = &s->o;
  str_copy(o->host, sizeof o->host, "127.0.0.1");
  o->port = 8000;
  o->speed = 1;
  o->crash_after = -1;
  o->max_loras = DEFAULT_MAX_LORAS;
  str_copy(o->log_level, sizeof o->log_level, "info");
  int rc = parse_args(o, argc, argv);
  if (rc) return rc > 0 ? 0 : 2;
  if (log_level_parse(o->log_level) < 0) {
    fprintf(stderr, "infermesh sim-engine: log level '%s' is not one of debug, info, warn, error\n", o->log_level);
    return 2;
  }
  log_setup((enum log_level)log_level_parse(o->log_level), "sim-engine");
  find_profiles_dir(o);
  if (o->profile[0]) {
    if (sim_profile_load(o->profile, o->profiles_dir, &s->prof, err, sizeof err) != 0) {
      fprintf(stderr, "infermesh sim-engine: profile '%s': %s\n", o->profile, err);
      return 2;
    }
  } else if (sim_profile_load(DEFAULT_PROFILE, o->profiles_dir, &s->prof, err, sizeof err) != 0) {
    sim_profile_default(&s->prof); /* the built-in copy of the same numbers */
  }
  if (o->model[0]) str_copy(s->prof.model, sizeof s->prof.model, o->model);
  s->eng = sim_engine_new(&s->prof, o->seed);
  if (!s->eng) {
    fprintf(stderr, "infermesh sim-engine: profile '%s' is not valid\n", s->prof.name);
    return 2;
  }
  sim_loras_init(&s->loras, o->max_loras);
  rng_seed(&s->rng, o->seed ? o->seed : clock_mono_ns());
  s->loop = uv_default_loop();
  s->t0_ns = clock_mono_ns();
  signal(SIGPIPE, SIG_IGN);
  struct http_limits lim;
  http_limits_default(&lim);
  lim.max_body = 64 * 1024 * 1024;
  http_server_init(&s->http, s->loop, &lim, handle, s);
  if (http_server_listen(&s->http, o->host, o->port) != 0) {
    fprintf(stderr, "infermesh sim-engine: %s\n", s->http.errmsg);
    return 1;
  }
  if (o->kv_events[0]) {
    if (kv_pub_open(&s->kvpub, o->kv_events, err, sizeof err) != 0) {
      fprintf(stderr, "infermesh sim-engine: %s\n", err);
      return 1;
    }
    struct sim_cache_cb cc = {.stored = kv_stored_cb, .removed = kv_removed_cb, .arg = s};
    sim_engine_set_cache_cb(s->eng, &cc);
  }
  uv_timer_init(s->loop, &s->step_timer);
  s->step_timer.data = s;
  uv_signal_init(s->loop, &s->sigterm);
  uv_signal_init(s->loop, &s->sigint);
  s->sigterm.data = s->sigint.data = s;
  uv_signal_start(&s->sigterm, signal_cb, SIGTERM);
  uv_signal_start(&s->sigint, signal_cb, SIGINT);
  int port = http_server_port(&s->http);
  log_info("sim-engine listening", "listen=%s:%d model=\"%s\" profile=%s speed=%g blocks=%d block_size=%d", o->host,
           port, s->prof.model, s->prof.name, o->speed, s->prof.num_gpu_blocks, s->prof.block_size);
  printf("listening on http://%s:%d model=%s\n", o->host, port, s->prof.model);
  fflush(stdout);
  uv_run(s->loop, UV_RUN_DEFAULT);
  sim_engine_free(s->eng);
  sim_loras_free(&s->loras);
  kv_pub_close(s->kvpub);
  jscan_thread_free();
  return 0;
}
