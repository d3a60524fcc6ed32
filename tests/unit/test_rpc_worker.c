/* Unit tests for agent/rpc_worker.c: the lease rules (one host at a time, known by its node id; idempotent
 * for its holder, release by the holder only) on a real loop and real supervised processes, and the
 * free-memory announce step. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/rpc_worker.h"
#include "agent/supervisor.h"
#include "core/clock.h"

/* A stand-in rpc-server: any arguments, stays up until stopped. */
static char fake_bin[64];

static void run_for(uv_loop_t *loop, int ms) {
  uint64_t end = clock_mono_ns() + (uint64_t)ms * 1000000u;
  while (clock_mono_ns() < end)
    uv_run(loop, UV_RUN_NOWAIT), usleep(5000);
}

static void closed_cb(void *arg) { *(bool *)arg = true; }

static void test_one_host_at_a_time(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct rpc_worker *w;
  char err[256], holder[64] = "";
  assert_int_equal(rpc_worker_start(&w, &loop, "/nonexistent/rpc-server", 50052, err, sizeof err), -EINVAL);
  assert_non_null(strstr(err, "not an executable rpc-server"));
  assert_int_equal(rpc_worker_start(&w, &loop, fake_bin, 50052, err, sizeof err), 0);
  assert_string_equal(rpc_worker_holder(w), "");
  assert_false(rpc_worker_running(w)); /* nothing runs until a host asks */
  assert_true(rpc_worker_mem_mb(w) > 0);

  static const uint8_t H1[RPC_ID_LEN] = {1}, H2[RPC_ID_LEN] = {2};
  assert_int_equal(rpc_worker_lease(w, "h1", H1, holder, sizeof holder), 0);
  run_for(&loop, 200);
  assert_true(rpc_worker_running(w));
  assert_string_equal(rpc_worker_holder(w), "h1");
  assert_memory_equal(rpc_worker_holder_id(w), H1, RPC_ID_LEN);
  assert_int_equal(rpc_worker_lease(w, "h2", H2, holder, sizeof holder), -EBUSY);
  assert_string_equal(holder, "h1");
  assert_int_equal(rpc_worker_lease(w, "h1", H1, holder, sizeof holder), 0); /* h1 restarted and asks again */
  /* another member under h1's name is not h1 */
  assert_int_equal(rpc_worker_lease(w, "h1", H2, holder, sizeof holder), -EBUSY);
  assert_int_equal(rpc_worker_release(w, "h1", H2, "test"), -ENOENT);
  assert_int_equal(rpc_worker_release(w, "h2", H2, "test"), -ENOENT);
  assert_true(rpc_worker_running(w));
  assert_memory_equal(rpc_worker_holder_id(w), H1, RPC_ID_LEN);

  assert_int_equal(rpc_worker_release(w, "h1", H1, "test"), 0);
  assert_false(rpc_worker_running(w));
  assert_string_equal(rpc_worker_holder(w), "");
  assert_int_equal(rpc_worker_lease(w, "h2", H2, holder, sizeof holder), 0); /* free again: h2 gets it */
  run_for(&loop, 200);
  assert_true(rpc_worker_running(w));
  assert_int_equal(rpc_worker_release(w, "h2", NULL, "the holder left"), 0); /* this node's own decision */
  assert_false(rpc_worker_running(w));

  bool closed = false;
  rpc_worker_stop(w, closed_cb, &closed);
  for (int i = 0; i < 400 && !closed; i++)
    uv_run(&loop, UV_RUN_NOWAIT), usleep(10000);
  assert_true(closed);
  assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_memory_announce_step(void **state) {
  (void)state;
  assert_false(rpc_worker_mem_moved(20000, 20000));
  assert_false(rpc_worker_mem_moved(20000, 19001)); /* under 5% of 20000 = 1000 MiB */
  assert_true(rpc_worker_mem_moved(20000, 19000));
  assert_true(rpc_worker_mem_moved(20000, 21000));
  assert_false(rpc_worker_mem_moved(500, 437)); /* small machines: 64 MiB at least */
  assert_true(rpc_worker_mem_moved(500, 436));
  assert_true(rpc_worker_mem_moved(0, 64));
}

int main(int argc, char **argv) {
  /* child_proc runs helpers as `SELF _exec-child PID -- CMD`: this binary plays the agent's part. */
  if (argc >= 2 && strcmp(argv[1], "_exec-child") == 0) return exec_child_main(argc - 2, argv + 2);
  snprintf(fake_bin, sizeof fake_bin, "/tmp/im-fake-rpc-%d", (int)getpid());
  FILE *f = fopen(fake_bin, "w");
  if (!f) return 1;
  fputs("#!/bin/sh\nexec sleep 60\n", f);
  fclose(f);
  chmod(fake_bin, 0700);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_one_host_at_a_time),
      cmocka_unit_test(test_memory_announce_step),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  unlink(fake_bin);
  return rc;
}
