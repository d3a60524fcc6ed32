/* Simulated-engine profiles: KV pool size, scheduler limits and the step-time model of a model on a GPU. */
#ifndef IM_SIM_PROFILE_H
#define IM_SIM_PROFILE_H

#include <stddef.h>

#define SIM_PROFILE_NAME_MAX 64
#define SIM_PROFILE_MODEL_MAX 128

/* A profile is plain data (no pointers): copy it freely. Field names equal the JSON keys.
 *
 * Step-time model (seconds) of one engine step (one forward pass of a continuous batch), a roofline:
 *
 *   step_s = step_overhead_s
 *          + max(weights_read_s, token_compute_s * T)               linear layers
 *          + sum over scheduled requests r of
 *              max(kv_read_per_token_s * (c_r + n_r),                 attention, KV-bandwidth bound
 *                  attn_pair_s * (n_r * c_r + n_r * (n_r + 1) / 2))   attention, compute bound (causal)
 *
 * where T = tokens computed in the step (prefill chunk tokens + one per decoding request), n_r the tokens of
 * request r computed in the step and c_r the tokens of r already in the KV cache before the step.
 * Small batches are bound by reading all weights once per step; large prefill chunks by 2*params FLOPs per
 * token; decode attention by reading each request's KV cache; long-prompt prefill attention by its quadratic
 * FLOPs. */
struct sim_profile {
  char name[SIM_PROFILE_NAME_MAX];   /* profile name, e.g. "llama-3.1-8b-h100" */
  char model[SIM_PROFILE_MODEL_MAX]; /* served model id; seeds the block hashes */
  int block_size;                    /* tokens per KV block (vLLM --block-size) */
  int num_gpu_blocks;                /* KV blocks in the pool */
  int max_num_seqs;                  /* running-request limit (vLLM --max-num-seqs) */
  int max_num_batched_tokens;        /* per-step token budget; longer prompts are chunked */
  int max_model_len;                 /* prompt + max_tokens limit per request */
  double step_overhead_s;            /* fixed per-step cost: scheduling, input prep, sampling, launch */
  double weights_read_s;             /* streaming all weights from HBM once */
  double token_compute_s;            /* linear-layer compute per token (2 * params FLOPs at achieved rate) */
  double kv_read_per_token_s;        /* reading one token's KV (all layers, K and V) from HBM */
  double attn_pair_s;                /* attention compute per (query, key) pair over all layers and heads */
};

/* sim_profiles_dir writes where profiles are looked up into out (cap bytes): INFERMESH_PROFILES_DIR, else
 * <directory of the running binary>/../profiles (a build tree or an install); "" when neither is known. */
void sim_profiles_dir(char *out, size_t cap);

/* sim_profile_default fills OUT with the built-in llama-3.1-8b-h100 profile, equal to
 * profiles/llama-3.1-8b-h100.json (a unit test checks it), so the binary works without the file. */
void sim_profile_default(struct sim_profile *out);

/* sim_profile_load reads a profile from JSON. NAME_OR_PATH is either a name ([A-Za-z0-9._-], no ".json"),
 * resolved to PROFILES_DIR/NAME.json, or a path (contains '/' or ends in ".json"), used as is.
 * Duplicate keys, unknown keys (the message names the key), missing keys, wrong types and values out of range
 * are errors. On success fills *OUT and returns 0; on failure returns a negative code (-ENOENT: no such file,
 * IM_EPARSE: invalid JSON, -EINVAL: bad content) with a human-readable reason in ERRMSG (ERRLEN bytes,
 * always NUL-terminated when ERRLEN > 0) and leaves *OUT unspecified. */
int sim_profile_load(const char *name_or_path, const char *profiles_dir, struct sim_profile *out,
                     char *errmsg, size_t errlen);

/* sim_profile_validate checks the limits sim_profile_load enforces (positive sizes, max_num_batched_tokens >=
 * max_num_seqs, a max_model_len sequence fits in the pool, finite non-negative times). 0 or -EINVAL with a
 * reason in ERRMSG. */
int sim_profile_validate(const struct sim_profile *p, char *errmsg, size_t errlen);

/* sim_profile_attn_s is the attention term of one request that computes N new tokens on top of CTX cached
 * ones in a step (see the model above). */
double sim_profile_attn_s(const struct sim_profile *p, int ctx, int n);

/* sim_profile_step_s is the duration in seconds of a step that computes TOKENS tokens in total and whose
 * per-request attention terms sum to ATTN_S. */
double sim_profile_step_s(const struct sim_profile *p, int tokens, double attn_s);

#endif
