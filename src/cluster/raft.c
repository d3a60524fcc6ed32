/* One Raft server on libraft 0.15: uv I/O, our authenticated transport, deferred proposals, membership steps. */
#include "cluster/raft.h"

#include <errno.h>
#include <raft.h>
#include <raft/uv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster/raft_fsm.h"
#include "cluster/raft_transport.h"
#include "core/alloc.h"
#include "core/log.h"
#include "core/slice.h"

struct creq {
  struct raft_apply req; /* first: raft hands it back */
  struct craft *c;
  struct creq *next;
  craft_apply_cb cb;
  void *arg;
  bool have_res;
  struct fsm_result res;
  size_t len;
  uint8_t cmd[];
};

struct craft {
  uv_loop_t *loop;
  struct craft_config cfg;
  struct raft raft;
  struct raft_io io;
  struct raft_uv_transport transport;
  struct raft_fsm rfsm;
  struct craft_fsm cfsm;
  struct fsm *fsm;
  bool has_state, started, closing, io_ready;
  craft_applied_cb applied_cb;
  void *applied_arg;
  uv_idle_t idle;              /* submits queued work on the next loop turn */
  struct creq *queue, **qtail; /* not yet proposed */
  struct creq *inflight;       /* proposed, waiting for raft's callback */
  struct raft_change change;
  bool change_pending;
  void (*closed_cb)(void *arg);
  void *closed_arg;
};

void craft_config_default(struct craft_config *c) {
  memset(c, 0, sizeof *c);
  c->election_ms = 300;
  c->heartbeat_ms = 30;
  c->snapshot_threshold = 16384;
  c->snapshot_trailing = 4096;
  c->connect_retry_ms = 100;
}

uint64_t craft_id_from_pk(const uint8_t pk[32]) {
  uint64_t id = 0;
  for (int i = 0; i < 8; i++) id = id << 8 | pk[i];
  return id ? id : 1;
}

/* ---- results ---- */

static void on_result(void *arg, uint64_t index, const struct fsm_result *res) {
  struct craft *c = arg;
  for (struct creq *q = c->inflight; q; q = q->next)
    if (q->req.index == index) {
      q->res = *res;
      q->have_res = true;
      break;
    }
  if (c->applied_cb) c->applied_cb(c->applied_arg, fsm_index(c->fsm));
}

static void unlink_inflight(struct craft *c, struct creq *q) {
  for (struct creq **pp = &c->inflight; *pp; pp = &(*pp)->next)
    if (*pp == q) {
      *pp = q->next;
      return;
    }
}

static int map_status(int rv) {
  switch (rv) {
  case 0: return 0;
  case RAFT_NOTLEADER: return CRAFT_ENOTLEADER;
  case RAFT_LEADERSHIPLOST: return CRAFT_EUNKNOWN;
  case RAFT_SHUTDOWN:
  case RAFT_CANCELED: return -ECANCELED;
  default: return -EIO;
  }
}

/* Runs inside libraft: only report; never call into raft from here (DESIGN §9). */
static void apply_done_cb(struct raft_apply *req, int status, void *result) {
  struct creq *q = (struct creq *)req;
  struct craft *c = q->c;
  unlink_inflight(c, q);
  int st = map_status(status);
  if (st == 0 && !q->have_res) st = -EIO; /* cannot happen: every applied command reports its result */
  if (st == -EIO) log_warn("raft apply failed", "code=%d err=\"%s\"", status, raft_errmsg(&c->raft));
  q->cb(q->arg, st, st == 0 ? &q->res : NULL);
  free(q);
}

/* ---- the deferred queue ---- */

static void submit(struct craft *c, struct creq *q) {
  if (c->closing) {
    q->cb(q->arg, -ECANCELED, NULL);
    free(q);
    return;
  }
  if (!c->started || raft_state(&c->raft) != RAFT_LEADER) {
    q->cb(q->arg, CRAFT_ENOTLEADER, NULL);
    free(q);
    return;
  }
  /* libraft 0.15's message decoder reads entries in 8-byte units: pad with spaces (JSON ignores them), or a
   * follower reads past the end of the received buffer. */
  size_t padded = (q->len + 7) & ~(size_t)7;
  struct raft_buffer b = {raft_malloc(padded ? padded : 8), padded ? padded : 8};
  if (!b.base) {
    q->cb(q->arg, -EIO, NULL);
    free(q);
    return;
  }
  memset(b.base, ' ', b.len);
  memcpy(b.base, q->cmd, q->len);
  q->req.data = q;
  q->next = c->inflight;
  c->inflight = q;
  int rv = raft_apply(&c->raft, &q->req, &b, 1, apply_done_cb);
  if (rv != 0) {
    raft_free(b.base); /* on error the buffer stays ours */
    unlink_inflight(c, q);
    q->cb(q->arg, map_status(rv), NULL);
    free(q);
  }
}

static void idle_cb(uv_idle_t *h) {
  struct craft *c = h->data;
  struct creq *q = c->queue;
  c->queue = NULL;
  c->qtail = &c->queue;
  uv_idle_stop(&c->idle);
  while (q) {
    struct creq *next = q->next;
    q->next = NULL;
    submit(c, q);
    q = next;
  }
}

void craft_apply(struct craft *c, const void *cmd, size_t len, craft_apply_cb cb, void *arg) {
  struct creq *q = xcalloc(1, sizeof *q + len);
  q->c = c;
  q->cb = cb;
  q->arg = arg;
  q->len = len;
  memcpy(q->cmd, cmd, len);
  *c->qtail = q;
  c->qtail = &q->next;
  if (!c->closing) uv_idle_start(&c->idle, idle_cb);
}

/* ---- membership ---- */

static void change_cb(struct raft_change *req, int status) {
  struct craft *c = req->data;
  c->change_pending = false;
  if (status != 0) log_warn("raft configuration change failed", "err=\"%s\"", raft_strerror(status));
}

void craft_reconcile(struct craft *c, const struct craft_server *alive, int n) {
  if (!c->started || c->closing || c->change_pending || raft_state(&c->raft) != RAFT_LEADER) return;
  const struct raft_configuration *conf = &c->raft.configuration;
  if (c->raft.configuration_uncommitted_index != 0) return;
  int voters = 0;
  for (unsigned i = 0; i < conf->n; i++) voters += conf->servers[i].role == RAFT_VOTER;
  c->change.data = c;
  for (int i = 0; i < n; i++) {
    bool known = false;
    for (unsigned j = 0; j < conf->n && !known; j++) known = conf->servers[j].id == alive[i].id;
    if (known) continue;
    log_info("raft: adding a server", "id=%016llx address=%s", (unsigned long long)alive[i].id, alive[i].address);
    if (raft_add(&c->raft, &c->change, alive[i].id, alive[i].address, change_cb) == 0) c->change_pending = true;
    return;
  }
  if (voters >= CRAFT_MAX_VOTERS) return;
  for (unsigned j = 0; j < conf->n; j++) {
    if (conf->servers[j].role == RAFT_VOTER) continue;
    bool up = false;
    for (int i = 0; i < n && !up; i++) up = alive[i].id == conf->servers[j].id;
    if (!up) continue;
    log_info("raft: promoting a server to voter", "id=%016llx", (unsigned long long)conf->servers[j].id);
    if (raft_assign(&c->raft, &c->change, conf->servers[j].id, RAFT_VOTER, change_cb) == 0) c->change_pending = true;
    return;
  }
}

/* ---- lifecycle ---- */

static bool dir_has_state(const char *dir) {
  char p[600];
  struct stat st;
  snprintf(p, sizeof p, "%s/metadata1", dir);
  if (stat(p, &st) == 0 && st.st_size > 0) return true;
  snprintf(p, sizeof p, "%s/metadata2", dir);
  return stat(p, &st) == 0 && st.st_size > 0;
}

int craft_open(struct craft **out, uv_loop_t *loop, const struct craft_config *cfg, craft_applied_cb applied_cb,
               void *arg, char *err, size_t errlen) {
  int rv;
  *out = NULL;
  if (!cfg->id || !cfg->kr || cfg->kr->nkeys < 1) {
    snprintf(err, errlen, "raft: a server id and the cluster key are needed");
    return -EINVAL;
  }
  if (mkdir(cfg->dir, 0700) != 0 && errno != EEXIST) {
    snprintf(err, errlen, "cannot create the raft dir %s: %s", cfg->dir, strerror(errno));
    return -errno;
  }
  struct craft *c = xcalloc(1, sizeof *c);
  c->loop = loop;
  c->cfg = *cfg;
  c->applied_cb = applied_cb;
  c->applied_arg = arg;
  c->qtail = &c->queue;
  c->fsm = fsm_new();
  c->has_state = dir_has_state(cfg->dir);
  if ((rv = rt_init(&c->transport, loop, cfg->kr)) != 0) {
    snprintf(err, errlen, "raft transport: out of memory");
    goto err_after_alloc;
  }
  if ((rv = raft_uv_init(&c->io, loop, cfg->dir, &c->transport)) != 0) {
    snprintf(err, errlen, "raft storage in %s: %s", cfg->dir, c->io.errmsg);
    goto err_after_transport;
  }
  raft_uv_set_connect_retry_delay(&c->io, cfg->connect_retry_ms);
  c->cfsm = (struct craft_fsm){c->fsm, &c->raft, on_result, c};
  craft_fsm_init(&c->rfsm, &c->cfsm);
  if ((rv = raft_init(&c->raft, &c->io, &c->rfsm, cfg->id, cfg->address)) != 0) {
    snprintf(err, errlen, "raft: %s", raft_errmsg(&c->raft));
    goto err_after_io;
  }
  c->io_ready = true;
  c->raft.data = c;
  raft_set_election_timeout(&c->raft, cfg->election_ms);
  raft_set_heartbeat_timeout(&c->raft, cfg->heartbeat_ms);
  raft_set_snapshot_threshold(&c->raft, cfg->snapshot_threshold);
  raft_set_snapshot_trailing(&c->raft, cfg->snapshot_trailing);
  raft_set_pre_vote(&c->raft, true);
  uv_idle_init(loop, &c->idle);
  c->idle.data = c;
  *out = c;
  return 0;

err_after_io:
  raft_uv_close(&c->io);
err_after_transport:
  rt_free(&c->transport);
err_after_alloc:
  fsm_free(c->fsm);
  free(c);
  return -EIO;
}

bool craft_has_state(const struct craft *c) { return c->has_state; }
bool craft_started(const struct craft *c) { return c->started; }

int craft_bootstrap(struct craft *c, const struct craft_server *servers, int n, char *err, size_t errlen) {
  struct raft_configuration conf;
  int rv = 0;
  raft_configuration_init(&conf);
  for (int i = 0; i < n && rv == 0; i++) rv = raft_configuration_add(&conf, servers[i].id, servers[i].address, RAFT_VOTER);
  if (rv == 0) rv = raft_bootstrap(&c->raft, &conf);
  raft_configuration_close(&conf);
  if (rv == RAFT_CANTBOOTSTRAP) return -EEXIST;
  if (rv != 0) {
    snprintf(err, errlen, "raft bootstrap: %s", raft_errmsg(&c->raft));
    return -EIO;
  }
  c->has_state = true;
  return 0;
}

int craft_start(struct craft *c, char *err, size_t errlen) {
  int rv = raft_start(&c->raft);
  if (rv != 0) {
    snprintf(err, errlen, "raft start: %s", raft_errmsg(&c->raft));
    return -EIO;
  }
  c->started = true;
  return 0;
}

const struct fsm *craft_fsm(const struct craft *c) { return c->fsm; }

bool craft_is_leader(struct craft *c) { return c->started && raft_state(&c->raft) == RAFT_LEADER; }

void craft_status(struct craft *c, struct craft_status *st) {
  static const char *const names[] = {"unavailable", "follower", "candidate", "leader"};
  memset(st, 0, sizeof *st);
  int s = c->started ? raft_state(&c->raft) : RAFT_UNAVAILABLE;
  st->state = s >= 0 && s <= 3 ? names[s] : "unavailable";
  st->term = c->raft.current_term;
  st->commit_index = c->raft.commit_index;
  st->applied_index = raft_last_applied(&c->raft);
  st->last_index = raft_last_index(&c->raft);
  st->fsm_index = fsm_index(c->fsm);
  if (c->started) {
    const char *addr = NULL;
    raft_id lid = 0;
    raft_leader(&c->raft, &lid, &addr);
    st->leader_id = lid;
    if (addr) str_copy(st->leader_address, sizeof st->leader_address, addr);
  }
  const struct raft_configuration *conf = &c->raft.configuration;
  for (unsigned i = 0; i < conf->n && st->nservers < CRAFT_MAX_SERVERS; i++) {
    struct craft_server *sv = &st->servers[st->nservers++];
    sv->id = conf->servers[i].id;
    str_copy(sv->address, sizeof sv->address, conf->servers[i].address);
    sv->role = conf->servers[i].role;
  }
  st->transport_refused = rt_counters(&c->transport)->refused_auth;
}

static void finish_close(struct craft *c) {
  void (*cb)(void *) = c->closed_cb;
  void *arg = c->closed_arg;
  rt_free(&c->transport);
  fsm_free(c->fsm);
  free(c);
  if (cb) cb(arg);
}

static void idle_closed_cb(uv_handle_t *h) { finish_close(h->data); }

static void raft_closed_cb(struct raft *r) {
  struct craft *c = r->data;
  raft_uv_close(&c->io);
  /* Whatever raft did not answer (it answers in-flight requests itself) is cancelled now. */
  while (c->inflight) {
    struct creq *q = c->inflight;
    c->inflight = q->next;
    q->cb(q->arg, CRAFT_EUNKNOWN, NULL);
    free(q);
  }
  uv_close((uv_handle_t *)&c->idle, idle_closed_cb);
}

void craft_close(struct craft *c, void (*closed_cb)(void *arg), void *arg) {
  c->closing = true;
  c->closed_cb = closed_cb;
  c->closed_arg = arg;
  uv_idle_stop(&c->idle);
  struct creq *q = c->queue;
  c->queue = NULL;
  c->qtail = &c->queue;
  while (q) {
    struct creq *next = q->next;
    q->cb(q->arg, -ECANCELED, NULL);
    free(q);
    q = next;
  }
  c->raft.data = c;
  raft_close(&c->raft, raft_closed_cb);
}
