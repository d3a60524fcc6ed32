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
  /* Autopilot (leader only): every other server of the configuration and since when gossip misses it. */
  struct track {
    uint64_t id;
    uint64_t down_since; /* uv_now when first missed; 0 = seen alive at the last tick */
    uint64_t raft_seen;  /* uv_now when libraft last reported a message from it (or tracking began) */
  } track[CRAFT_TRACK_MAX];
  int ntrack;
  bool tracking, refusal_logged;
  /* Leadership transfer at close: raft_close waits for it, at most CRAFT_TRANSFER_MS. */
  struct raft_transfer xfer;
  uv_timer_t xfer_timer;
  bool xfer_pending, raft_closing;
  uint64_t xfer_target;
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

/* A snapshot replaced the state: readers waiting for an index may have it now. */
static void on_restore(void *arg) {
  struct craft *c = arg;
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

int craft_desired_voters(int healthy) {
  int d = healthy < CRAFT_MAX_VOTERS ? healthy : CRAFT_MAX_VOTERS;
  if (d < 1) return 1;
  return d % 2 ? d : d - 1;
}

int craft_pick_removal(const struct craft_server *conf, const bool *failed, const bool *left, int n,
                       uint64_t self_id) {
  int voters = 0, failed_voters = 0, pick_voter = -1, pick_left = -1;
  for (int i = 0; i < n; i++) {
    if (conf[i].id == self_id || !failed[i]) {
      voters += conf[i].role == CRAFT_VOTER;
      continue;
    }
    if (conf[i].role != CRAFT_VOTER) return i; /* a spare or standby never counts toward quorum */
    voters++;
    failed_voters++;
    if (pick_voter < 0) pick_voter = i;
    if (pick_left < 0 && left && left[i]) pick_left = i;
  }
  if (pick_voter < 0) return CRAFT_REMOVE_NONE;
  int healthy = voters - failed_voters;
  if (pick_left >= 0 && 2 * healthy > voters - 1) return pick_left; /* a majority of what remains */
  /* The voters still healthy must be a strict majority of the current voters. */
  return 2 * healthy > voters ? pick_voter : CRAFT_REMOVE_UNSAFE;
}

static void change_cb(struct raft_change *req, int status) {
  struct craft *c = req->data;
  c->change_pending = false;
  if (status != 0) log_warn("raft configuration change failed", "err=\"%s\"", raft_strerror(status));
}

/* can_change: this server leads, runs, and no configuration change is pending or uncommitted. */
static bool can_change(struct craft *c) {
  return c->started && !c->closing && !c->change_pending && raft_state(&c->raft) == RAFT_LEADER &&
         c->raft.configuration_uncommitted_index == 0;
}

static bool in_list(const struct craft_server *alive, int n, uint64_t id) {
  for (int i = 0; i < n; i++)
    if (alive[i].id == id) return true;
  return false;
}

void craft_reconcile(struct craft *c, const struct craft_server *alive, int n) {
  if (!can_change(c)) return;
  const struct raft_configuration *conf = &c->raft.configuration;
  int voters = 0, healthy = 0;
  for (unsigned i = 0; i < conf->n; i++) {
    voters += conf->servers[i].role == RAFT_VOTER;
    healthy += in_list(alive, n, conf->servers[i].id);
  }
  c->change.data = c;
  for (int i = 0; i < n; i++) {
    bool known = false;
    for (unsigned j = 0; j < conf->n && !known; j++) known = conf->servers[j].id == alive[i].id;
    if (known) continue;
    log_info("raft: adding a server", "id=%016llx address=%s", (unsigned long long)alive[i].id, alive[i].address);
    if (raft_add(&c->raft, &c->change, alive[i].id, alive[i].address, change_cb) == 0) c->change_pending = true;
    return;
  }
  if (voters < craft_desired_voters(healthy)) {
    /* a standby first: it has the log already */
    for (int pass = 0; pass < 2; pass++)
      for (unsigned j = 0; j < conf->n; j++) {
        int role = conf->servers[j].role;
        if (role == RAFT_VOTER || (pass == 0 && role != RAFT_STANDBY) || !in_list(alive, n, conf->servers[j].id))
          continue;
        log_info("raft: promoting a server to voter", "id=%016llx voters=%d healthy=%d",
                 (unsigned long long)conf->servers[j].id, voters, healthy);
        if (raft_assign(&c->raft, &c->change, conf->servers[j].id, RAFT_VOTER, change_cb) == 0)
          c->change_pending = true;
        return;
      }
    return;
  }
  for (unsigned j = 0; j < conf->n; j++) {
    if (conf->servers[j].role != RAFT_SPARE || !in_list(alive, n, conf->servers[j].id)) continue;
    log_info("raft: making a server a standby (replicates the log, does not vote)", "id=%016llx voters=%d",
             (unsigned long long)conf->servers[j].id, voters);
    if (raft_assign(&c->raft, &c->change, conf->servers[j].id, RAFT_STANDBY, change_cb) == 0)
      c->change_pending = true;
    return;
  }
}

static struct track *track_find(struct craft *c, uint64_t id) {
  for (int i = 0; i < c->ntrack; i++)
    if (c->track[i].id == id) return &c->track[i];
  return NULL;
}

/* track_update follows the configuration: drops servers no longer in it, adds new ones (seen now), and stamps
 * when each was first missing from alive. */
static void track_update(struct craft *c, const struct craft_server *alive, int n, uint64_t now) {
  const struct raft_configuration *conf = &c->raft.configuration;
  struct track next[CRAFT_TRACK_MAX];
  int nn = 0;
  for (unsigned i = 0; i < conf->n && nn < CRAFT_TRACK_MAX; i++) {
    uint64_t id = conf->servers[i].id;
    if (id == c->cfg.id) continue;
    const struct track *old = track_find(c, id);
    struct track *t = &next[nn++];
    t->id = id;
    t->down_since = 0;
    if (!in_list(alive, n, id)) t->down_since = old && old->down_since ? old->down_since : now;
    /* The leader's replication state: a message from it within the last election timeout. */
    const struct raft_progress *pr = c->raft.leader_state.progress;
    t->raft_seen = pr && pr[i].recent_recv ? now : old ? old->raft_seen : now;
  }
  memcpy(c->track, next, (size_t)nn * sizeof next[0]);
  c->ntrack = nn;
}

void craft_autopilot(struct craft *c, const struct craft_server *alive, int n, const uint64_t *left, int nleft,
                     unsigned grace_ms) {
  if (!c->started || c->closing || raft_state(&c->raft) != RAFT_LEADER) {
    c->tracking = false; /* a new term as leader starts every grace afresh */
    c->ntrack = 0;
    return;
  }
  uint64_t now = uv_now(c->loop) + 1; /* never 0: 0 marks a server seen alive */
  if (!c->tracking) c->ntrack = 0;
  c->tracking = true;
  track_update(c, alive, n, now);
  if (!can_change(c)) return;
  const struct raft_configuration *conf = &c->raft.configuration;
  if (conf->n > CRAFT_TRACK_MAX) return;
  struct craft_server sv[CRAFT_TRACK_MAX];
  bool failed[CRAFT_TRACK_MAX], was_left[CRAFT_TRACK_MAX];
  int nfailed = 0;
  for (unsigned i = 0; i < conf->n; i++) {
    sv[i].id = conf->servers[i].id;
    sv[i].role = conf->servers[i].role;
    str_copy(sv[i].address, sizeof sv[i].address, conf->servers[i].address);
    const struct track *t = track_find(c, sv[i].id);
    was_left[i] = false;
    for (int j = 0; t && t->down_since && j < nleft; j++) was_left[i] |= left[j] == sv[i].id;
    /* Dead: gossip missed it for the grace, and so did Raft (a blocked gossip port alone removes no one). */
    failed[i] = t && t->down_since &&
                (was_left[i] || (now - t->down_since >= grace_ms && now - t->raft_seen >= grace_ms));
    nfailed += failed[i];
  }
  int pick = craft_pick_removal(sv, failed, was_left, (int)conf->n, c->cfg.id);
  if (pick == CRAFT_REMOVE_UNSAFE) {
    if (!c->refusal_logged)
      log_warn("raft autopilot: failed voters kept: removing them would leave no healthy majority", "failed=%d",
               nfailed);
    c->refusal_logged = true;
    return;
  }
  c->refusal_logged = false;
  if (pick < 0) return;
  const struct track *t = track_find(c, sv[pick].id);
  static const char *const roles[] = {"standby", "voter", "spare"};
  log_info("raft autopilot: removing a failed server", "id=%016llx address=%s role=%s reason=%s down_ms=%llu",
           (unsigned long long)sv[pick].id, sv[pick].address,
           sv[pick].role >= 0 && sv[pick].role <= 2 ? roles[sv[pick].role] : "?", was_left[pick] ? "left" : "dead",
           (unsigned long long)(now - t->down_since));
  c->change.data = c;
  int rv = raft_remove(&c->raft, &c->change, sv[pick].id, change_cb);
  if (rv == 0) c->change_pending = true;
  else log_warn("raft autopilot: removal refused", "id=%016llx err=\"%s\"", (unsigned long long)sv[pick].id,
                raft_errmsg(&c->raft));
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
  c->cfsm = (struct craft_fsm){
      .fsm = c->fsm, .raft = &c->raft, .on_result = on_result, .on_restore = on_restore, .arg = c};
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
  uv_timer_init(loop, &c->xfer_timer);
  c->xfer_timer.data = c;
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

static void xfer_timer_closed_cb(uv_handle_t *h) { finish_close(h->data); }

static void idle_closed_cb(uv_handle_t *h) {
  struct craft *c = h->data;
  uv_close((uv_handle_t *)&c->xfer_timer, xfer_timer_closed_cb);
}

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

static void stop_raft(struct craft *c) {
  if (c->raft_closing) return;
  c->raft_closing = true;
  uv_timer_stop(&c->xfer_timer);
  c->raft.data = c;
  raft_close(&c->raft, raft_closed_cb);
}

/* Runs on the loop, outside libraft: the transfer ended (deferred from xfer_cb) or ran out of time. */
static void xfer_timer_cb(uv_timer_t *t) {
  struct craft *c = t->data;
  if (c->xfer_pending)
    log_warn("raft: leadership transfer still pending: stopping anyway", "to=%016llx waited_ms=%u",
             (unsigned long long)c->xfer_target, CRAFT_TRANSFER_MS);
  stop_raft(c);
}

/* Runs inside libraft (the target leads, the election timeout passed, or raft is closing): only note it. */
static void xfer_cb(struct raft_transfer *req) {
  struct craft *c = req->data;
  raft_id lid = 0;
  const char *addr = NULL;
  c->xfer_pending = false;
  if (!c->raft_closing) raft_leader(&c->raft, &lid, &addr);
  if (lid == c->xfer_target)
    log_info("raft: leadership transferred", "to=%016llx address=%s", (unsigned long long)lid, addr ? addr : "");
  else
    log_warn("raft: leadership transfer did not complete", "to=%016llx leader=%016llx",
             (unsigned long long)c->xfer_target, (unsigned long long)lid);
  if (!c->raft_closing) uv_timer_start(&c->xfer_timer, xfer_timer_cb, 0, 0);
}

/* pick_transferee: the voter (not this server) with the highest replicated index among those gossip saw
 * alive at the last autopilot tick (any voter when there was none yet); 0 when there is none. */
static raft_id pick_transferee(struct craft *c, raft_index *match) {
  const struct raft_configuration *conf = &c->raft.configuration;
  raft_id best = 0;
  *match = 0;
  for (unsigned i = 0; i < conf->n; i++) {
    const struct raft_server *s = &conf->servers[i];
    if (s->id == c->cfg.id || s->role != RAFT_VOTER) continue;
    const struct track *t = c->tracking ? track_find(c, s->id) : NULL;
    if (t && t->down_since) continue;
    raft_index m = c->raft.leader_state.progress ? c->raft.leader_state.progress[i].match_index : 0;
    if (!best || m > *match) best = s->id, *match = m;
  }
  return best;
}

/* start_transfer: on the leader, hands leadership over before closing. true when a transfer is under way. */
static bool start_transfer(struct craft *c) {
  if (!c->started || raft_state(&c->raft) != RAFT_LEADER) return false;
  raft_index match;
  raft_id target = pick_transferee(c, &match);
  if (!target) return false;
  c->xfer.data = c;
  int rv = raft_transfer(&c->raft, &c->xfer, target, xfer_cb);
  if (rv != 0) {
    log_warn("raft: cannot transfer leadership", "to=%016llx err=\"%s\"", (unsigned long long)target,
             raft_errmsg(&c->raft));
    return false;
  }
  c->xfer_pending = true;
  c->xfer_target = target;
  log_info("raft: leaving: transferring leadership", "to=%016llx match_index=%llu last_index=%llu",
           (unsigned long long)target, (unsigned long long)match, (unsigned long long)raft_last_index(&c->raft));
  return true;
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
  if (start_transfer(c)) {
    uv_timer_start(&c->xfer_timer, xfer_timer_cb, CRAFT_TRANSFER_MS, 0);
    return;
  }
  stop_raft(c);
}
