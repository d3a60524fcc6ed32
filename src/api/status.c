/* Node and target views rendered as JSON and Prometheus gauges. */
#include "api/status.h"

#include <math.h>
#include <string.h>

void status_json(struct buf *out, const struct status_info *info, const struct store *s) {
  int healthy = 0, total = 0;
  for (int i = 0; i < s->ntargets; i++) healthy += s->targets[i].healthy, total += !s->targets[i].gone;
  buf_puts(out, "{\"node\":");
  buf_json_str(out, slice_cstr(info->node_name));
  buf_puts(out, ",\"version\":");
  buf_json_str(out, slice_cstr(info->version));
  buf_puts(out, ",\"listen\":");
  buf_json_str(out, slice_cstr(info->listen));
  buf_printf(out, ",\"uptime_s\":%.1f,\"inflight\":%d,\"requests_total\":%llu", info->uptime_s, info->inflight,
             (unsigned long long)info->requests_total);
  buf_printf(out, ",\"targets\":{\"total\":%d,\"healthy\":%d},\"models\":[", total, healthy);
  int n = 0;
  for (int i = 0; i < s->ntargets; i++) {
    const struct target *t = &s->targets[i];
    for (int j = 0; j < t->nmodels; j++) {
      bool dup = false;
      for (int k = 0; k < i && !dup; k++) dup = store_target_serves(&s->targets[k], slice_cstr(t->models[j]));
      if (dup) continue;
      if (n++) buf_puts(out, ",");
      int serving = 0, up = 0;
      for (int k = 0; k < s->ntargets; k++)
        if (store_target_serves(&s->targets[k], slice_cstr(t->models[j]))) serving++, up += s->targets[k].healthy;
      buf_puts(out, "{\"id\":");
      buf_json_str(out, slice_cstr(t->models[j]));
      buf_printf(out, ",\"targets\":%d,\"healthy\":%d}", serving, up);
    }
  }
  buf_puts(out, "]");
  if (info->gpus_json) {
    buf_puts(out, ",\"gpus\":");
    buf_puts(out, info->gpus_json);
  }
  buf_puts(out, "}");
}

static void proc_json(struct buf *out, const struct status_proc *pr) {
  if (!pr || !pr->state) {
    buf_puts(out, "null");
    return;
  }
  buf_puts(out, "{\"state\":");
  buf_json_str(out, slice_cstr(pr->state));
  buf_printf(out, ",\"since_s\":%.1f,\"pid\":", pr->since_s);
  if (pr->pid > 0)
    buf_printf(out, "%d", pr->pid);
  else
    buf_puts(out, "null");
  buf_printf(out, ",\"restarts\":%d,\"crash_loop\":%s,\"last_exit\":", pr->restarts,
             pr->crash_loop ? "true" : "false");
  if (!pr->exited)
    buf_puts(out, "null");
  else if (pr->exit_signal)
    buf_printf(out, "{\"code\":null,\"signal\":%d,\"ago_s\":%.1f}", pr->exit_signal, pr->exit_ago_s);
  else
    buf_printf(out, "{\"code\":%lld,\"signal\":null,\"ago_s\":%.1f}", pr->exit_status, pr->exit_ago_s);
  buf_puts(out, ",\"health_wait\":");
  if (pr->health_timeout_s > 0)
    buf_printf(out, "{\"elapsed_s\":%.1f,\"timeout_s\":%.1f}", pr->health_elapsed_s, pr->health_timeout_s);
  else
    buf_puts(out, "null");
  buf_puts(out, ",\"restart_in_s\":");
  if (pr->restart_in_s > 0)
    buf_printf(out, "%.1f", pr->restart_in_s);
  else
    buf_puts(out, "null");
  buf_puts(out, "}");
}

void status_targets_json(struct buf *out, const struct store *s, const struct score_params *p, uint64_t now_ns,
                         const struct status_proc *procs) {
  buf_puts(out, "{\"targets\":[");
  int n = 0;
  for (int i = 0; i < s->ntargets; i++) {
    const struct target *t = &s->targets[i];
    if (t->gone) continue;
    if (n++) buf_puts(out, ",");
    buf_printf(out, "{\"id\":%d,\"name\":", t->id);
    buf_json_str(out, slice_cstr(t->name));
    buf_puts(out, ",\"node\":");
    buf_json_str(out, slice_cstr(t->node));
    buf_printf(out, ",\"remote\":%s,\"draining\":%s", t->remote ? "true" : "false", t->draining ? "true" : "false");
    buf_puts(out, ",\"url\":");
    buf_json_str(out, slice_cstr(t->url));
    buf_puts(out, ",\"kind\":");
    buf_json_str(out, slice_cstr(t->kind));
    buf_printf(out, ",\"healthy\":%s,\"models\":[", t->healthy ? "true" : "false");
    for (int j = 0; j < t->nmodels; j++) {
      if (j) buf_puts(out, ",");
      buf_json_str(out, slice_cstr(t->models[j]));
    }
    buf_printf(out, "],\"waiting\":%g,\"running\":%g,\"kv_usage\":", t->load.waiting, t->load.running);
    if (t->load.kv_usage >= 0)
      buf_printf(out, "%.4f", t->load.kv_usage);
    else
      buf_puts(out, "null");
    int64_t cap = store_kv_capacity(t);
    if (cap > 0)
      buf_printf(out, ",\"kv_capacity_tokens\":%lld", (long long)cap);
    else
      buf_puts(out, ",\"kv_capacity_tokens\":null");
    /* window rates: tokens/s, and latencies in ms; null when unknown */
    const struct {
      const char *name;
      double v, scale;
    } win[] = {{"prompt_tps", t->load.prompt_tps, 1},   {"gen_tps", t->load.gen_tps, 1},
               {"ttft_p50_ms", t->load.ttft_p50, 1e3},  {"ttft_p95_ms", t->load.ttft_p95, 1e3},
               {"itl_p50_ms", t->load.itl_p50, 1e3},    {"itl_p95_ms", t->load.itl_p95, 1e3}};
    for (size_t w = 0; w < sizeof win / sizeof win[0]; w++) {
      if (win[w].v >= 0 && isfinite(win[w].v))
        buf_printf(out, ",\"%s\":%.4g", win[w].name, win[w].v * win[w].scale);
      else
        buf_printf(out, ",\"%s\":null", win[w].name);
    }
    double hit = t->load.prefix_queries > 0 ? t->load.prefix_hits / t->load.prefix_queries : 0;
    buf_printf(out, ",\"prefix_hit_rate\":%.4f,\"inflight\":%d,\"routed_since_report\":%d,\"age_ms\":", hit,
               t->inflight, t->routed_since_report);
    if (t->updated_ns)
      buf_printf(out, "%.0f", (double)(now_ns - t->updated_ns) / 1e6);
    else
      buf_puts(out, "null");
    /* What the runtime itself reports holding (KV-cache events, directly or through the mesh): null when
     * nothing was ever reported. */
    if (t->kv_ns)
      buf_printf(out, ",\"kv_cached_blocks\":%d,\"kv_report_age_ms\":%.0f", store_kv_blocks(t),
                 (double)(now_ns - t->kv_ns) / 1e6);
    else
      buf_puts(out, ",\"kv_cached_blocks\":null,\"kv_report_age_ms\":null");
    buf_printf(out, ",\"gpu_degraded\":%s,\"score\":%.3f,\"last_error\":", t->gpu_degraded ? "true" : "false",
               score_target(t, p, now_ns));
    buf_json_str(out, slice_cstr(t->last_error));
    if (procs && procs[i].breaker) {
      buf_puts(out, ",\"breaker\":");
      buf_json_str(out, slice_cstr(procs[i].breaker));
    }
    buf_puts(out, ",\"process\":");
    proc_json(out, procs ? &procs[i] : NULL);
    buf_puts(out, "}");
  }
  buf_puts(out, "]}");
}

static void gauge(struct buf *out, const struct store *s, const char *name, const char *help, int which,
                  const struct score_params *p, uint64_t now_ns) {
  buf_printf(out, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
  for (int i = 0; i < s->ntargets; i++) {
    const struct target *t = &s->targets[i];
    double v = 0;
    if (t->gone) continue;
    switch (which) {
    case 0: v = t->healthy; break;
    case 1: v = t->load.waiting; break;
    case 2: v = t->load.running; break;
    case 3: v = t->inflight; break;
    case 4: v = score_target(t, p, now_ns); break;
    case 5: v = t->load.kv_usage; break;
    }
    buf_printf(out, "%s{target=\"", name);
    buf_label_value(out, t->name);
    buf_printf(out, "\"} %g\n", v);
  }
}

void status_targets_metrics(struct buf *out, const struct store *s, const struct score_params *p, uint64_t now_ns) {
  gauge(out, s, "infermesh_target_healthy", "1 when the target passed its last health check.", 0, p, now_ns);
  gauge(out, s, "infermesh_target_waiting", "Waiting requests the target last reported.", 1, p, now_ns);
  gauge(out, s, "infermesh_target_running", "Running requests the target last reported.", 2, p, now_ns);
  gauge(out, s, "infermesh_target_inflight", "Requests this agent has in flight to the target.", 3, p, now_ns);
  gauge(out, s, "infermesh_target_score", "Current routing score (estimated queueing; lower is better).", 4, p,
        now_ns);
  gauge(out, s, "infermesh_target_kv_usage", "KV-cache use the target last reported (0..1, -1 unknown).", 5, p,
        now_ns);
}
