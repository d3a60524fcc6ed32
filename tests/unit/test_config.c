/* Agent configuration tests: YAML, then flags, then INFERMESH_* environment; errors name the problem. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/config.h"

static char path[64];

static void write_yaml(const char *text) {
  snprintf(path, sizeof path, "/tmp/infermesh-test-config-%d.yaml", (int)getpid());
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static int load(struct agent_config *c, char **argv, int argc, char *err) {
  config_defaults(c);
  return config_load_args(c, argc, argv, err, 256);
}

static void test_defaults(void **state) {
  struct agent_config c;
  char err[256];
  assert_int_equal(load(&c, NULL, 0, err), 0);
  assert_string_equal(c.listen_host, "127.0.0.1");
  assert_int_equal(c.listen_port, 8080);
  assert_int_equal(c.nruntimes, 0);
  assert_int_equal(c.max_attempts, 3);
  assert_int_equal(c.max_targets, 1024);
}

/* The target cap is set at start: more than the old fixed 256 is fine, fewer than the node's own runtimes is
 * not (they could not all be routed to). */
static void test_max_targets(void **state) {
  struct agent_config c;
  char err[256];
  char *a1[] = {"--max-targets", "20000"};
  assert_int_equal(load(&c, a1, 2, err), 0);
  assert_int_equal(c.max_targets, 20000);
  char *a2[] = {"--target", "http://127.0.0.1:8000", "--target", "http://127.0.0.1:8001", "--max-targets", "1"};
  assert_int_equal(load(&c, a2, 6, err), -EINVAL);
  assert_non_null(strstr(err, "max_targets 1 must be at least the 2 runtimes"));
}

static void test_yaml_then_flags_then_env(void **state) {
  struct agent_config c;
  char err[256];
  write_yaml("node: {name: gpu-a, colour: blue}\n"
             "listen: 127.0.0.1:9000\n"
             "runtimes:\n"
             "  - {kind: vllm, url: \"http://127.0.0.1:8000\", exec: \"vllm serve m\"}\n"
             "  - {url: \"http://127.0.0.1:8001\", name: second}\n"
             "limits: {max_body_bytes: 1234}\n"
             "scrape_interval_ms: 300\n");
  /* an unknown key is an error, not silently ignored */
  char *argv0[] = {"--config", path};
  assert_int_equal(load(&c, argv0, 2, err), -EINVAL);
  assert_non_null(strstr(err, "node.colour"));

  write_yaml("node: {name: gpu-a}\n"
             "listen: 127.0.0.1:9000\n"
             "runtimes:\n"
             "  - {kind: vllm, url: \"http://127.0.0.1:8000\", exec: \"vllm serve m\", gpus: [0, 1]}\n"
             "  - {url: \"http://127.0.0.1:8001\", name: second, gpus: \"GPU-abc\"}\n"
             "limits: {max_body_bytes: 1234}\n"
             "scrape_interval_ms: 300\n");
  char *argv[] = {"--config", path, "--listen", "127.0.0.1:9001", "--scrape-interval-ms=400"};
  setenv("INFERMESH_LISTEN", "127.0.0.1:9002", 1);
  assert_int_equal(load(&c, argv, 5, err), 0);
  unsetenv("INFERMESH_LISTEN");
  assert_string_equal(c.node_name, "gpu-a");
  assert_int_equal(c.listen_port, 9002); /* env beats flag beats file */
  assert_int_equal(c.scrape_interval_ms, 400);
  assert_int_equal(c.limits.max_body, 1234);
  assert_int_equal(c.nruntimes, 2);
  assert_string_equal(c.runtimes[0].url, "http://127.0.0.1:8000");
  assert_string_equal(c.runtimes[1].name, "second");
  assert_string_equal(c.runtimes[0].gpus, "0,1");
  assert_string_equal(c.runtimes[1].gpus, "GPU-abc");
  unlink(path);
}

/* The global resource bounds: defaults, then YAML, flags and environment like the other limits. */
static void test_global_limits(void **state) {
  struct agent_config c;
  char err[256];
  assert_int_equal(load(&c, NULL, 0, err), 0);
  assert_int_equal(c.limits.max_buffered_bodies, 64 * 1024 * 1024);
  assert_int_equal(c.limits.fd_reserve, 64);
  assert_int_equal(c.events_max_streams, 64);
  assert_int_equal(c.events_max_per_client, 8);
  write_yaml("limits: {max_buffered_body_bytes: 1000000, fd_reserve: 10, max_event_streams: 5,\n"
             "         max_event_streams_per_client: 2}\n");
  char *argv[] = {"--config", path, "--fd-reserve", "20"};
  setenv("INFERMESH_MAX_EVENT_STREAMS_PER_CLIENT", "3", 1);
  assert_int_equal(load(&c, argv, 4, err), 0);
  unsetenv("INFERMESH_MAX_EVENT_STREAMS_PER_CLIENT");
  assert_int_equal(c.limits.max_buffered_bodies, 1000000);
  assert_int_equal(c.limits.fd_reserve, 20);
  assert_int_equal(c.events_max_streams, 5);
  assert_int_equal(c.events_max_per_client, 3);
  char *bad[] = {"--fd-reserve", "-1"};
  assert_int_equal(load(&c, bad, 2, err), -EINVAL);
  unlink(path);
}

static void test_errors_name_the_problem(void **state) {
  struct agent_config c;
  char err[256];
  char *a1[] = {"--listen", "nowhere"};
  assert_int_equal(load(&c, a1, 2, err), -EINVAL);
  assert_non_null(strstr(err, "HOST:PORT"));
  char *a2[] = {"--bogus", "1"};
  assert_int_equal(load(&c, a2, 2, err), -EINVAL);
  assert_non_null(strstr(err, "--bogus"));
  char *a3[] = {"--max-attempts", "many"};
  assert_int_equal(load(&c, a3, 2, err), -EINVAL);
  assert_non_null(strstr(err, "not a non-negative integer"));
  char *a4[] = {"--target", "127.0.0.1:8000"};
  assert_int_equal(load(&c, a4, 2, err), -EINVAL);
  assert_non_null(strstr(err, "http://"));
  char *a5[] = {"--config", "/nonexistent/infermesh.yaml"};
  assert_int_equal(load(&c, a5, 2, err), -EINVAL);
  assert_non_null(strstr(err, "cannot open"));
  write_yaml("listen: [a, b\n");
  char *a6[] = {"--config", path};
  assert_int_equal(load(&c, a6, 2, err), -EINVAL);
  assert_non_null(strstr(err, path));
  unlink(path);
}

static void test_env_targets_comma_separated(void **state) {
  struct agent_config c;
  char err[256];
  setenv("INFERMESH_TARGETS", "http://127.0.0.1:1,two=http://127.0.0.1:2", 1);
  assert_int_equal(load(&c, NULL, 0, err), 0);
  unsetenv("INFERMESH_TARGETS");
  assert_int_equal(c.nruntimes, 2);
  assert_string_equal(c.runtimes[1].url, "http://127.0.0.1:2");
  assert_string_equal(c.runtimes[1].name, "two");
  assert_string_equal(c.runtimes[0].name, "");
}

/* --target [NAME=]URL[#kind=KIND]: the kind is optional (vllm), checked, and works in the environment too. */
static void test_target_kind(void **state) {
  struct agent_config c;
  char err[256];
  char *a1[] = {"--target", "sg=http://127.0.0.1:30000#kind=sglang", "--target", "http://127.0.0.1:8000",
                "--target", "http://127.0.0.1:8080#kind=TGI"};
  assert_int_equal(load(&c, a1, 6, err), 0);
  assert_int_equal(c.nruntimes, 3);
  assert_string_equal(c.runtimes[0].name, "sg");
  assert_string_equal(c.runtimes[0].url, "http://127.0.0.1:30000");
  assert_string_equal(c.runtimes[0].kind, "sglang");
  assert_string_equal(c.runtimes[1].name, "");
  assert_string_equal(c.runtimes[1].url, "http://127.0.0.1:8000");
  assert_string_equal(c.runtimes[1].kind, "vllm"); /* no kind: vllm, as before */
  assert_string_equal(c.runtimes[2].url, "http://127.0.0.1:8080");
  assert_string_equal(c.runtimes[2].kind, "tgi"); /* case-insensitive, stored canonical */

  char *a2[] = {"--target", "x=http://127.0.0.1:1#kind=vllmx"};
  assert_int_equal(load(&c, a2, 2, err), -EINVAL);
  assert_non_null(strstr(err, "--target"));
  assert_non_null(strstr(err, "'vllmx' is unknown"));
  assert_non_null(strstr(err, "vllm, sglang, tgi, llamacpp, triton, ollama"));
  char *a3[] = {"--target", "http://127.0.0.1:1#sglang"};
  assert_int_equal(load(&c, a3, 2, err), -EINVAL);
  assert_non_null(strstr(err, "#kind=KIND"));
  assert_non_null(strstr(err, "sglang, tgi"));
  char *a4[] = {"--target", "http://127.0.0.1:1#kind="};
  assert_int_equal(load(&c, a4, 2, err), -EINVAL);
  assert_non_null(strstr(err, "#kind=KIND"));

  setenv("INFERMESH_TARGETS", "a=http://127.0.0.1:1#kind=ollama,http://127.0.0.1:2", 1);
  assert_int_equal(load(&c, NULL, 0, err), 0);
  unsetenv("INFERMESH_TARGETS");
  assert_int_equal(c.nruntimes, 2);
  assert_string_equal(c.runtimes[0].name, "a");
  assert_string_equal(c.runtimes[0].kind, "ollama");
  assert_string_equal(c.runtimes[1].kind, "vllm");
}

/* A runtime's alias and API key: YAML keys, or #alias=NAME&api_key=KEY after a --target URL. */
static void test_runtime_alias_and_api_key(void **state) {
  struct agent_config c;
  char err[256];
  char *a1[] = {"--target", "ll=http://127.0.0.1:8101#kind=llamacpp&alias=llama&api_key=sk-run-1", "--target",
                "http://127.0.0.1:8000#alias=org/m-8b"};
  assert_int_equal(load(&c, a1, 4, err), 0);
  assert_int_equal(c.nruntimes, 2);
  assert_string_equal(c.runtimes[0].kind, "llamacpp");
  assert_string_equal(c.runtimes[0].alias, "llama");
  assert_string_equal(c.runtimes[0].api_key, "sk-run-1");
  assert_string_equal(c.runtimes[1].kind, "vllm");
  assert_string_equal(c.runtimes[1].alias, "org/m-8b");
  assert_string_equal(c.runtimes[1].api_key, "");
  char *a2[] = {"--target", "http://127.0.0.1:1#kind=vllm&colour=red"};
  assert_int_equal(load(&c, a2, 2, err), -EINVAL);
  assert_non_null(strstr(err, "&alias=NAME"));
  char *a3[] = {"--target", "http://127.0.0.1:1#alias=has\"quote"};
  assert_int_equal(load(&c, a3, 2, err), -EINVAL);
  assert_non_null(strstr(err, "alias"));
  write_yaml(
      "runtimes:\n  - {kind: llamacpp, url: \"http://127.0.0.1:8101\", alias: llama, api_key: sk-yaml}\n");
  char *a4[] = {"--config", path};
  assert_int_equal(load(&c, a4, 2, err), 0);
  assert_string_equal(c.runtimes[0].alias, "llama");
  assert_string_equal(c.runtimes[0].api_key, "sk-yaml");
  write_yaml("runtimes:\n  - {kind: llamacpp, url: \"http://127.0.0.1:8101\", api_key: \"two words\"}\n");
  assert_int_equal(load(&c, a4, 2, err), -EINVAL);
  assert_non_null(strstr(err, "api_key"));
  unlink(path);
}

/* Agent-wide aliases: YAML mapping, then --alias flags replace it, then INFERMESH_ALIASES. */
static void test_model_aliases(void **state) {
  struct agent_config c;
  char err[256];
  write_yaml("aliases: {llama: tiny-llama, gpt-4o: \"meta-llama/Llama-3.1-8B-Instruct\"}\n");
  char *a1[] = {"--config", path};
  assert_int_equal(load(&c, a1, 2, err), 0);
  assert_int_equal(c.naliases, 2);
  assert_string_equal(c.aliases[1].name, "gpt-4o");
  assert_string_equal(c.aliases[1].model, "meta-llama/Llama-3.1-8B-Instruct");
  assert_string_equal(model_alias_find(c.aliases, c.naliases, slice_cstr("llama")), "tiny-llama");
  assert_null(model_alias_find(c.aliases, c.naliases, slice_cstr("tiny-llama")));
  char *a2[] = {"--config", path, "--alias", "a=b", "--alias", "c=d=e"};
  assert_int_equal(load(&c, a2, 6, err), 0);
  assert_int_equal(c.naliases, 2);
  assert_string_equal(c.aliases[1].model, "d=e");
  setenv("INFERMESH_ALIASES", "x=y,z=w", 1);
  assert_int_equal(load(&c, a2, 6, err), 0);
  unsetenv("INFERMESH_ALIASES");
  assert_int_equal(c.naliases, 2);
  assert_string_equal(c.aliases[0].name, "x");
  char *a3[] = {"--alias", "no-equals"};
  assert_int_equal(load(&c, a3, 2, err), -EINVAL);
  assert_non_null(strstr(err, "NAME=MODEL"));
  char *a4[] = {"--alias", "=m"};
  assert_int_equal(load(&c, a4, 2, err), -EINVAL);
  unlink(path);
}

/* Mesh settings: lists and mappings in YAML, repeatable flags, comma lists in the environment. */
static void test_cluster_settings(void **state) {
  struct agent_config c;
  char err[256];
  write_yaml("node: {name: gpu-a, roles: [gpu, server], zone: eu-1, labels: {rack: r4, row: \"7\"}}\n"
             "data_dir: /tmp/im-x\n"
             "cluster: {gossip: 10.0.0.1:7946, join: [10.0.0.2:7946, 10.0.0.3:7946], probe_interval_ms: 250}\n");
  char *argv[] = {"--config", path, "--label", "gpu=h100"};
  assert_int_equal(load(&c, argv, 4, err), 0);
  assert_string_equal(c.cluster.roles, "gpu,server");
  assert_string_equal(c.cluster.zone, "eu-1");
  assert_string_equal(c.cluster.labels, "rack=r4,row=7,gpu=h100");
  assert_string_equal(c.cluster.data_dir, "/tmp/im-x");
  assert_string_equal(c.cluster.gossip, "10.0.0.1:7946");
  assert_int_equal(c.cluster.njoin, 2);
  assert_string_equal(c.cluster.join[1], "10.0.0.3:7946");
  assert_int_equal(c.cluster.probe_interval_ms, 250);
  /* flags replace the file's join list; the environment replaces both */
  char *argv2[] = {"--config", path, "--join", "10.0.0.9:7946"};
  assert_int_equal(load(&c, argv2, 4, err), 0);
  assert_int_equal(c.cluster.njoin, 1);
  assert_string_equal(c.cluster.join[0], "10.0.0.9:7946");
  setenv("INFERMESH_JOIN", "10.0.0.5:1,10.0.0.6:2", 1);
  assert_int_equal(load(&c, argv2, 4, err), 0);
  unsetenv("INFERMESH_JOIN");
  assert_int_equal(c.cluster.njoin, 2);
  assert_string_equal(c.cluster.join[1], "10.0.0.6:2");
  char *bad[] = {"--label", "novalue"};
  assert_int_equal(load(&c, bad, 2, err), -EINVAL);
  assert_non_null(strstr(err, "KEY=VALUE"));
  config_defaults(&c);
  assert_string_equal(c.cluster.gossip, "127.0.0.1:7946");
}

static void test_prices_and_provider(void **state) {
  struct agent_config c;
  char err[256];
  assert_int_equal(load(&c, NULL, 0, err), 0);
  assert_true(c.ledger_enabled);
  write_yaml("node: {name: gpu-a, provider: acme}\nledger: {enabled: false}\n"
             "prices:\n  - {model: llama, prompt: 0.5, completion: 1.5, cached: 0.1}\n"
             "  - {model: qwen, prompt: 0, completion: 2, currency: EUR}\n");
  char *a1[] = {"--config", path};
  assert_int_equal(load(&c, a1, 2, err), 0);
  assert_string_equal(c.provider, "acme");
  assert_false(c.ledger_enabled);
  assert_int_equal(c.nprices, 2);
  assert_string_equal(c.prices[0].model, "llama");
  assert_true(c.prices[0].price.prompt_per_mtok == 0.5 && c.prices[0].price.cached_per_mtok == 0.1);
  assert_true(c.prices[1].price.cached_per_mtok < 0);
  assert_string_equal(c.prices[1].price.currency, "EUR");
  /* flags replace the file's list */
  char *a2[] = {"--config", path, "--price", "model=m,prompt=1,completion=2"};
  assert_int_equal(load(&c, a2, 4, err), 0);
  assert_int_equal(c.nprices, 1);
  assert_string_equal(c.prices[0].price.currency, "USD");
  /* bad prices say what is wrong */
  char *bad[][2] = {{"--price", "model=m,prompt=-1,completion=2"},
                    {"--price", "model=m,prompt=1"},
                    {"--price", "model=m,prompt=1,completion=2,currency=usd"},
                    {"--price", "model=m,prompt=1,completion=2,colour=red"}};
  const char *why[] = {"not a number >= 0", "needs model, prompt and completion", "ISO 4217", "unknown price"};
  for (int i = 0; i < 4; i++) {
    assert_int_equal(load(&c, bad[i], 2, err), -EINVAL);
    assert_non_null(strstr(err, why[i]));
    assert_non_null(strstr(err, "--price"));
  }
  write_yaml("prices:\n  - {model: a, prompt: 1, completion: 1}\n  - {model: a, prompt: 2, completion: 2}\n");
  assert_int_equal(load(&c, a1, 2, err), -EINVAL);
  assert_non_null(strstr(err, "priced twice"));
  unlink(path);
}

/* tls: cert and key, client CA and the CN map from YAML; flags and environment; the checks across them. */
static void test_tls_settings(void **state) {
  struct agent_config c;
  char err[256];
  write_yaml("tls:\n  cert: /etc/im/cert.pem\n  key: /etc/im/key.pem\n  client_ca: /etc/im/ca.pem\n"
             "  client_map: {ops-laptop: admin, billing svc: team-a}\n"
             "cluster: {admin_token: tok}\n");
  char *a1[] = {"--config", path};
  assert_int_equal(load(&c, a1, 2, err), 0);
  assert_string_equal(c.tls.cert, "/etc/im/cert.pem");
  assert_string_equal(c.tls.key, "/etc/im/key.pem");
  assert_string_equal(c.tls.client_ca, "/etc/im/ca.pem");
  assert_int_equal(c.tls.nmap, 2);
  assert_string_equal(c.tls.map[0].cn, "ops-laptop");
  assert_string_equal(c.tls.map[0].role, "admin");
  assert_string_equal(c.tls.map[1].cn, "billing svc");
  assert_string_equal(c.tls.map[1].role, "team-a");
  /* flags replace the file's map; the environment's comma-separated list replaces the flags' */
  char *a2[] = {"--config", path, "--tls-client-map", "a=team-b", "--tls-client-map=b=admin"};
  assert_int_equal(load(&c, a2, 5, err), 0);
  assert_int_equal(c.tls.nmap, 2);
  assert_string_equal(c.tls.map[0].cn, "a");
  assert_string_equal(c.tls.map[1].role, "admin");
  setenv("INFERMESH_TLS_CLIENT_MAP", "x=team-x,y=team-y,z=team-z", 1);
  assert_int_equal(load(&c, a2, 5, err), 0);
  unsetenv("INFERMESH_TLS_CLIENT_MAP");
  assert_int_equal(c.tls.nmap, 3);
  assert_string_equal(c.tls.map[2].cn, "z");
  assert_string_equal(c.tls.map[2].role, "team-z");
  unlink(path);
  /* settings that cannot work together are refused, naming what to set */
  char *bad[][8] = {
      {"--tls-cert", "c.pem"},
      {"--tls-client-ca", "ca.pem"},
      {"--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-client-map", "x=team"},
      {"--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-client-ca", "ca.pem", "--tls-client-map", "ops=admin"},
      {"--tls-client-map", "no-role"},
      {"--tls-client-map", "=team"},
  };
  int nbad[] = {2, 2, 6, 8, 2, 2};
  const char *why[] = {"both a certificate and its key", "needs TLS on", "needs tls.client_ca",
                       "--admin-token" /* admin stands for the admin token: there must be one */, "must be CN=ROLE",
                       "must be CN=ROLE"};
  for (int i = 0; i < 6; i++) {
    assert_int_equal(load(&c, bad[i], nbad[i], err), -EINVAL);
    assert_non_null(strstr(err, why[i]));
  }
  write_yaml("tls: {cert: c.pem, key: k.pem, client_ca: ca.pem, client_map: {a: team, a: other}}\n");
  assert_int_equal(load(&c, a1, 2, err), -EINVAL);
  assert_non_null(strstr(err, "mapped twice"));
  write_yaml("tls: {cert: c.pem, key: k.pem, client_ca: ca.pem, client_map: [a, b]}\n");
  assert_int_equal(load(&c, a1, 2, err), -EINVAL);
  assert_non_null(strstr(err, "must map certificate CNs to roles"));
  unlink(path);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tls_settings),
      cmocka_unit_test(test_prices_and_provider),
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_max_targets),
      cmocka_unit_test(test_global_limits),
      cmocka_unit_test(test_yaml_then_flags_then_env),
      cmocka_unit_test(test_errors_name_the_problem),
      cmocka_unit_test(test_env_targets_comma_separated),
      cmocka_unit_test(test_target_kind),
      cmocka_unit_test(test_runtime_alias_and_api_key),
      cmocka_unit_test(test_model_aliases),
      cmocka_unit_test(test_cluster_settings),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
