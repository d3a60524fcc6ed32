/* ledger_bench: how many usage records per second the ledger's writer commits to its journal (group commit),
 * submitted from a libuv loop as fast as it can, and how fast it then moves them into SQLite (WAL,
 * synchronous=NORMAL, 8,192 per transaction).
 *
 * Build and run (from the repository root; -O2, no sanitizers):
 *    cc -O2 -std=c11 -D_GNU_SOURCE -Isrc -I/usr/include/postgresql -o /tmp/ledger_bench bench/ledger_bench.c
 * \
 *      src/ledger/*.c \
 *      src/core/alloc.c src/core/buf.c src/core/slice.c src/core/log.c src/core/clock.c -lsqlite3 -luv -lpq
 * -lm \
 *   && /tmp/ledger_bench [DIR] [N]
 * Prints records/s and commits (journal writes) for N records (default 500,000) in DIR (default /tmp), then the
 * rate at which SQLite was filled. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "ledger/journal.h"
#include "ledger/writer.h"

static int acked;
static void ack_cb(void *arg, int status) { acked += status == 0; }

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : "/tmp";
  int n = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 500000;
  char path[512], err[256];
  snprintf(path, sizeof path, "%s/ledger-bench-%d.db", dir, (int)getpid());
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct ledger_writer *w;
  if (ledger_writer_start(&w, &loop, path, err, sizeof err) != 0) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  struct ledger_record r = {.ts_ms = 1700000000000LL,
                            .prompt_tokens = 512,
                            .cached_tokens = 256,
                            .completion_tokens = 128,
                            .ttft_ms = 40,
                            .duration_ms = 900,
                            .status = 200,
                            .cost_nano = 123456,
                            .contribution_nano = 123456};
  strcpy(r.tenant, "team-a");
  strcpy(r.model, "meta-llama/Llama-3.1-8B-Instruct");
  strcpy(r.ingress, "gw-1");
  strcpy(r.serving, "gpu-7");
  strcpy(r.target, "gpu-7/vllm0");
  strcpy(r.provider, "acme");
  strcpy(r.currency, "USD");
  double t0 = now_s();
  for (int i = 0; i < n; i++) {
    snprintf(r.request_id, sizeof r.request_id, "req-%016x", i);
    ledger_writer_submit(w, &r, ack_cb, NULL);
    if (i % 1024 == 0) uv_run(&loop, UV_RUN_NOWAIT); /* acks flow while we submit, as on a busy agent */
  }
  while (acked < n)
    uv_run(&loop, UV_RUN_ONCE);
  double dt = now_s() - t0;
  struct ledger_writer_stats st;
  ledger_writer_stats(w, &st);
  double t1 = now_s();
  ledger_writer_sync(w, ack_cb, NULL);
  while (acked < n + 1)
    uv_run(&loop, UV_RUN_ONCE);
  double fill = now_s() - t1;
  printf("records %d in %.3f s: %.0f records/s, %llu commits (%.0f records per commit); SQLite filled in %.3f s:"
         " %.0f records/s\n",
         n, dt, n / dt, (unsigned long long)st.batches, (double)n / (double)st.batches, fill, n / fill);
  ledger_writer_close(w, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  char p2[600];
  unlink(path);
  snprintf(p2, sizeof p2, "%s-wal", path);
  unlink(p2);
  snprintf(p2, sizeof p2, "%s-shm", path);
  unlink(p2);
  if (journal_path(path, p2, sizeof p2) == 0) unlink(p2);
  return 0;
}
