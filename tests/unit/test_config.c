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
}

static void test_yaml_then_flags_then_env(void **state) {
  struct agent_config c;
  char err[256];
  write_yaml("node: {name: gpu-a, roles: [gpu]}\n"
             "listen: 127.0.0.1:9000\n"
             "runtimes:\n"
             "  - {kind: vllm, url: \"http://127.0.0.1:8000\", exec: \"vllm serve m\"}\n"
             "  - {url: \"http://127.0.0.1:8001\", name: second}\n"
             "limits: {max_body_bytes: 1234}\n"
             "scrape_interval_ms: 300\n");
  /* roles is not known yet: an unknown key is an error, not silently ignored */
  char *argv0[] = {"--config", path};
  assert_int_equal(load(&c, argv0, 2, err), -EINVAL);
  assert_non_null(strstr(err, "node.roles"));

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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_yaml_then_flags_then_env),
      cmocka_unit_test(test_errors_name_the_problem),
      cmocka_unit_test(test_env_targets_comma_separated),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
