/* Simulated-engine profiles: built-in default, strict JSON loading, the step-time model. */
#include "sim/profile.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/err.h"
#include "core/slice.h"

/* Keep in sync with profiles/llama-3.1-8b-h100.json (the sources of every number are written there). */
void sim_profile_default(struct sim_profile *out) {
  *out = (struct sim_profile){
      .name = "llama-3.1-8b-h100",
      .model = "meta-llama/Llama-3.1-8B-Instruct",
      .block_size = 16,
      .num_gpu_blocks = 27500,
      .max_num_seqs = 256,
      .max_num_batched_tokens = 8192,
      .max_model_len = 131072,
      .step_overhead_s = 0.001,
      .weights_read_s = 0.0057,
      .token_compute_s = 0.00004,
      .kv_read_per_token_s = 5.5e-8,
      .attn_pair_s = 1.3e-9,
  };
}

static void seterr(char *errmsg, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void seterr(char *errmsg, size_t errlen, const char *fmt, ...) {
  if (!errmsg || errlen == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(errmsg, errlen, fmt, ap);
  va_end(ap);
}

int sim_profile_validate(const struct sim_profile *p, char *errmsg, size_t errlen) {
  if (!p->name[0]) return seterr(errmsg, errlen, "name is empty"), -EINVAL;
  if (!p->model[0]) return seterr(errmsg, errlen, "model is empty"), -EINVAL;
  if (p->block_size < 1 || p->block_size > 4096)
    return seterr(errmsg, errlen, "block_size %d is outside 1..4096", p->block_size), -EINVAL;
  if (p->num_gpu_blocks < 1 || p->num_gpu_blocks > (1 << 24))
    return seterr(errmsg, errlen, "num_gpu_blocks %d is outside 1..16777216", p->num_gpu_blocks), -EINVAL;
  if (p->max_num_seqs < 1 || p->max_num_seqs > 65536)
    return seterr(errmsg, errlen, "max_num_seqs %d is outside 1..65536", p->max_num_seqs), -EINVAL;
  if (p->max_num_batched_tokens < p->max_num_seqs || p->max_num_batched_tokens > (1 << 24))
    return seterr(errmsg, errlen, "max_num_batched_tokens %d must be >= max_num_seqs (%d) and <= 16777216",
                  p->max_num_batched_tokens, p->max_num_seqs),
           -EINVAL;
  if (p->max_model_len < 1 || p->max_model_len > (1 << 24))
    return seterr(errmsg, errlen, "max_model_len %d is outside 1..16777216", p->max_model_len), -EINVAL;
  /* vLLM refuses to start when one max_model_len sequence cannot fit in the KV cache; so do we, which also
   * guarantees that a lone request can always be scheduled. */
  long long need = ((long long)p->max_model_len + p->block_size - 1) / p->block_size;
  if (need > p->num_gpu_blocks)
    return seterr(errmsg, errlen, "max_model_len %d needs %lld blocks of %d tokens but num_gpu_blocks is %d",
                  p->max_model_len, need, p->block_size, p->num_gpu_blocks),
           -EINVAL;
  const struct {
    const char *key;
    double v;
  } t[] = {{"step_overhead_s", p->step_overhead_s},
           {"weights_read_s", p->weights_read_s},
           {"token_compute_s", p->token_compute_s},
           {"kv_read_per_token_s", p->kv_read_per_token_s},
           {"attn_pair_s", p->attn_pair_s}};
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
    if (!isfinite(t[i].v) || t[i].v < 0 || t[i].v > 60)
      return seterr(errmsg, errlen, "%s %g is outside 0..60 seconds", t[i].key, t[i].v), -EINVAL;
  if (p->step_overhead_s + p->weights_read_s + p->token_compute_s <= 0)
    return seterr(errmsg, errlen,
                  "a step must take some time: step_overhead_s, weights_read_s and "
                  "token_compute_s are all 0"),
           -EINVAL;
  return 0;
}

static bool valid_name(const char *s) {
  if (!s[0] || s[0] == '.') return false;
  for (const char *c = s; *c; c++) {
    bool ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '.' ||
              *c == '_' || *c == '-';
    if (!ok) return false;
  }
  return true;
}

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

enum ftype { F_STR_NAME, F_STR_MODEL, F_INT, F_DBL, F_SOURCES, F_DESC };

struct field {
  const char *key;
  enum ftype type;
  size_t off; /* offset in struct sim_profile for F_INT / F_DBL */
};

/* clang-format off */
#define FI(k) {#k, F_INT, offsetof(struct sim_profile, k)}
#define FD(k) {#k, F_DBL, offsetof(struct sim_profile, k)}
static const struct field fields[] = {
    {"name", F_STR_NAME, 0}, {"model", F_STR_MODEL, 0}, {"description", F_DESC, 0}, {"sources", F_SOURCES, 0},
    FI(block_size), FI(num_gpu_blocks), FI(max_num_seqs), FI(max_num_batched_tokens), FI(max_model_len),
    FD(step_overhead_s), FD(weights_read_s), FD(token_compute_s), FD(kv_read_per_token_s), FD(attn_pair_s),
};
/* clang-format on */
#undef FI
#undef FD
#define NFIELDS (sizeof fields / sizeof fields[0])

static int copy_str(char *dst, size_t cap, json_t *v, const char *key, char *errmsg, size_t errlen) {
  if (!json_is_string(v)) return seterr(errmsg, errlen, "\"%s\" must be a string", key), -EINVAL;
  size_t n = json_string_length(v);
  if (n == 0 || n >= cap)
    return seterr(errmsg, errlen, "\"%s\" must be 1..%zu bytes long", key, cap - 1), -EINVAL;
  if (memchr(json_string_value(v), '\0', n))
    return seterr(errmsg, errlen, "\"%s\" contains a NUL byte", key), -EINVAL;
  memcpy(dst, json_string_value(v), n);
  dst[n] = '\0';
  return 0;
}

static int parse_obj(json_t *root, struct sim_profile *out, char *errmsg, size_t errlen) {
  if (!json_is_object(root)) return seterr(errmsg, errlen, "the top level must be a JSON object"), -EINVAL;
  *out = (struct sim_profile){0};
  const char *key;
  json_t *v;
  json_object_foreach(root, key, v) {
    bool known = false;
    for (size_t i = 0; i < NFIELDS && !known; i++)
      known = strcmp(fields[i].key, key) == 0;
    if (!known) return seterr(errmsg, errlen, "unknown key \"%s\"", key), -EINVAL;
  }
  for (size_t i = 0; i < NFIELDS; i++) {
    const struct field *f = &fields[i];
    v = json_object_get(root, f->key);
    if (!v) {
      if (f->type == F_DESC) continue;
      return seterr(errmsg, errlen, "missing key \"%s\"", f->key), -EINVAL;
    }
    int rc = 0;
    switch (f->type) {
    case F_STR_NAME: rc = copy_str(out->name, sizeof out->name, v, f->key, errmsg, errlen); break;
    case F_STR_MODEL: rc = copy_str(out->model, sizeof out->model, v, f->key, errmsg, errlen); break;
    case F_DESC:
      if (!json_is_string(v)) return seterr(errmsg, errlen, "\"%s\" must be a string", f->key), -EINVAL;
      break;
    case F_SOURCES:
      /* Profiles are data with their sources beside the numbers (DESIGN §7): require them. */
      if (!json_is_array(v) || json_array_size(v) == 0)
        return seterr(errmsg, errlen, "\"sources\" must be a non-empty array of strings"), -EINVAL;
      for (size_t j = 0; j < json_array_size(v); j++)
        if (!json_is_string(json_array_get(v, j)))
          return seterr(errmsg, errlen, "\"sources\"[%zu] must be a string", j), -EINVAL;
      break;
    case F_INT: {
      if (!json_is_integer(v)) return seterr(errmsg, errlen, "\"%s\" must be an integer", f->key), -EINVAL;
      json_int_t x = json_integer_value(v);
      if (x < 1 || x > (1 << 24))
        return seterr(errmsg, errlen, "\"%s\" %lld is outside 1..16777216", f->key, (long long)x), -EINVAL;
      *(int *)((char *)out + f->off) = (int)x;
      break;
    }
    case F_DBL:
      if (!json_is_number(v)) return seterr(errmsg, errlen, "\"%s\" must be a number", f->key), -EINVAL;
      *(double *)((char *)out + f->off) = json_number_value(v);
      break;
    }
    if (rc) return rc;
  }
  return sim_profile_validate(out, errmsg, errlen);
}

int sim_profile_load(const char *name_or_path, const char *profiles_dir, struct sim_profile *out,
                     char *errmsg, size_t errlen) {
  char path[4096];
  if (!name_or_path || !name_or_path[0]) return seterr(errmsg, errlen, "no profile named"), -EINVAL;
  if (strchr(name_or_path, '/') || ends_with(name_or_path, ".json")) {
    int n = snprintf(path, sizeof path, "%s", name_or_path);
    if (n < 0 || (size_t)n >= sizeof path)
      return seterr(errmsg, errlen, "profile path too long"), -ENAMETOOLONG;
  } else {
    if (!valid_name(name_or_path))
      return seterr(errmsg, errlen, "profile name \"%s\" may only contain letters, digits, '.', '_' and '-'",
                    name_or_path),
             -EINVAL;
    if (!profiles_dir || !profiles_dir[0])
      return seterr(errmsg, errlen,
                    "profile \"%s\": no profiles directory given (pass a path to a .json file)",
                    name_or_path),
             -EINVAL;
    int n = snprintf(path, sizeof path, "%s/%s.json", profiles_dir, name_or_path);
    if (n < 0 || (size_t)n >= sizeof path)
      return seterr(errmsg, errlen, "profile path too long"), -ENAMETOOLONG;
  }
  FILE *fp = fopen(path, "rb");
  if (!fp) {
    int e = errno;
    seterr(errmsg, errlen, "cannot open profile %s: %s", path, strerror(e));
    return e == ENOENT ? -ENOENT : -e;
  }
  json_error_t jerr;
  json_t *root = json_loadf(fp, JSON_REJECT_DUPLICATES, &jerr);
  fclose(fp);
  if (!root) {
    seterr(errmsg, errlen, "%s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
    return IM_EPARSE;
  }
  char inner[256] = "";
  int rc = parse_obj(root, out, inner, sizeof inner);
  json_decref(root);
  if (rc) seterr(errmsg, errlen, "%s: %s", path, inner);
  return rc;
}

double sim_profile_attn_s(const struct sim_profile *p, int ctx, int n) {
  double c = ctx, k = n;
  double kv = p->kv_read_per_token_s * (c + k);
  double pairs = k * c + k * (k + 1) / 2;
  double comp = p->attn_pair_s * pairs;
  return kv > comp ? kv : comp;
}

double sim_profile_step_s(const struct sim_profile *p, int tokens, double attn_s) {
  double lin = p->token_compute_s * (double)tokens;
  if (lin < p->weights_read_s) lin = p->weights_read_s;
  return p->step_overhead_s + lin + attn_s;
}

void sim_profiles_dir(char *out, size_t cap) {
  const char *env = getenv("INFERMESH_PROFILES_DIR");
  out[0] = '\0';
  if (env && *env) {
    str_copy(out, cap, env);
    return;
  }
  char exe[900];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0';
    snprintf(out, cap, "%s/../profiles", exe);
  }
}
