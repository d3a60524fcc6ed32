/* The agent-to-agent tunnel: its handshake (tunnel/tunnel_wire.c) and streams over a real loop (tunnel.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tunnel/tunnel.h"
#include "tunnel/tunnel_wire.h"

static struct keyring ring(uint8_t fill) {
  struct keyring kr;
  memset(&kr, 0, sizeof kr);
  memset(kr.keys[0], fill, KEYRING_KEY_LEN);
  kr.nkeys = 1;
  return kr;
}

static struct identity ident(uint8_t fill) {
  struct identity id;
  uint8_t seed[32];
  memset(seed, fill, sizeof seed);
  crypto_sign_seed_keypair(id.pk, id.sk, seed);
  return id;
}

/* A whole handshake: client cid (ring ckr, expecting spk) asks server sid (ring skr) for port 8080. Returns
 * the client's result, or the server's (offset by -1000) when the client accepted the reply. */
struct hs {
  struct tunx_session c, s;
  uint8_t hello[TUNX_HELLO_LEN], reply[TUNX_REPLY_LEN], finish[TUNX_FINISH_LEN];
};

static int reply_step(struct hs *h, const struct keyring *ckr, const struct identity *cid,
                      const uint8_t *expect, const struct keyring *skr, const struct identity *sid) {
  memset(h, 0, sizeof *h);
  assert_int_equal(tunx_client_hello(&h->c, ckr, h->hello), 0);
  assert_int_equal(tunx_parse_hello(&h->s, skr, h->hello, sizeof h->hello), 0);
  assert_int_equal(tunx_server_reply(&h->s, skr, sid, h->reply), 0);
  return tunx_client_check_reply(&h->c, ckr, cid, expect, 8080, h->reply, sizeof h->reply, h->finish);
}

static void test_handshake_and_frames(void **state) {
  (void)state;
  struct keyring kr = ring(0x42);
  struct identity a = ident(1), b = ident(2);
  struct hs h;
  assert_int_equal(reply_step(&h, &kr, &a, b.pk, &kr, &b), 0);
  assert_int_equal(tunx_server_check_finish(&h.s, &kr, h.finish, sizeof h.finish), 0);
  assert_memory_equal(h.s.peer_pk, a.pk, 32);
  assert_int_equal(h.s.port, 8080);
  /* both directions carry data; the final tag arrives as such */
  uint8_t f[64], pt[64];
  size_t n = tunx_seal(&h.c, (const uint8_t *)"prompt", 6, 0, f), pn;
  int final;
  assert_int_equal(tunx_open(&h.s, f + 4, n - 4, pt, &pn, &final), 0);
  assert_int_equal(pn, 6);
  assert_memory_equal(pt, "prompt", 6);
  assert_false(final);
  assert_null(memmem(f, n, "prompt", 6)); /* not in clear */
  n = tunx_seal(&h.s, (const uint8_t *)"answer", 6, crypto_secretstream_xchacha20poly1305_TAG_FINAL, f);
  assert_int_equal(tunx_open(&h.c, f + 4, n - 4, pt, &pn, &final), 0);
  assert_true(final);
}

static void test_wrong_cluster_key_refused(void **state) {
  (void)state;
  struct keyring k1 = ring(0x42), k2 = ring(0x43);
  struct identity a = ident(1), b = ident(2);
  struct hs h;
  /* a client of another cluster: the server refuses its hello (one HMAC; no X25519, no signature) */
  memset(&h, 0, sizeof h);
  assert_int_equal(tunx_client_hello(&h.c, &k2, h.hello), 0);
  assert_int_equal(tunx_parse_hello(&h.s, &k1, h.hello, sizeof h.hello), -EACCES);
  /* a server of another cluster answering our client (with a hello it could not check): the client refuses */
  memset(&h, 0, sizeof h);
  assert_int_equal(tunx_client_hello(&h.c, &k1, h.hello), 0);
  memcpy(h.s.peer_epk, h.hello + 8, 32);
  h.s.key = 0;
  assert_int_equal(tunx_server_reply(&h.s, &k2, &b, h.reply), 0);
  assert_int_equal(tunx_client_check_reply(&h.c, &k1, &a, b.pk, 8080, h.reply, sizeof h.reply, h.finish),
                   -EACCES);
  /* rotation: a server whose primary is k2, k1 still installed, answers a client holding only k1 under k1 */
  struct keyring k2k1 = k2;
  memcpy(k2k1.keys[1], k1.keys[0], KEYRING_KEY_LEN);
  k2k1.nkeys = 2;
  assert_int_equal(reply_step(&h, &k1, &a, b.pk, &k2k1, &b), 0);
  assert_int_equal(h.s.key, 1);
  assert_int_equal(tunx_server_check_finish(&h.s, &k2k1, h.finish, sizeof h.finish), 0);
  /* and a client whose primary is k2 already reaches a server holding k2 as a secondary */
  struct keyring k1k2 = k1;
  memcpy(k1k2.keys[1], k2.keys[0], KEYRING_KEY_LEN);
  k1k2.nkeys = 2;
  assert_int_equal(reply_step(&h, &k2k1, &a, b.pk, &k1k2, &b), 0);
  assert_int_equal(tunx_server_check_finish(&h.s, &k1k2, h.finish, sizeof h.finish), 0);
}

static void test_wrong_identity_refused(void **state) {
  (void)state;
  struct keyring kr = ring(0x42);
  struct identity a = ident(1), b = ident(2), mallory = ident(3);
  struct hs h;
  /* the client meant to reach b; mallory (holding the cluster key) answers with its own identity */
  assert_int_equal(reply_step(&h, &kr, &a, b.pk, &kr, &mallory), -EPERM);
  /* mallory answers claiming b's public key: it cannot sign as b */
  memset(&h, 0, sizeof h);
  assert_int_equal(tunx_client_hello(&h.c, &kr, h.hello), 0);
  assert_int_equal(tunx_parse_hello(&h.s, &kr, h.hello, sizeof h.hello), 0);
  struct identity fake = mallory;
  memcpy(fake.pk, b.pk, 32);
  assert_int_equal(tunx_server_reply(&h.s, &kr, &fake, h.reply), 0);
  assert_int_equal(tunx_client_check_reply(&h.c, &kr, &a, b.pk, 8080, h.reply, sizeof h.reply, h.finish),
                   -EPERM);
  /* a client claiming a's key without a's secret: the server refuses its finish */
  struct identity fake_a = mallory;
  memcpy(fake_a.pk, a.pk, 32);
  assert_int_equal(reply_step(&h, &kr, &fake_a, b.pk, &kr, &b), 0);
  assert_int_equal(tunx_server_check_finish(&h.s, &kr, h.finish, sizeof h.finish), -EPERM);
}

static void test_replay_and_tamper_detected(void **state) {
  (void)state;
  struct keyring kr = ring(0x42);
  struct identity a = ident(1), b = ident(2);
  struct hs h1, h2;
  assert_int_equal(reply_step(&h1, &kr, &a, b.pk, &kr, &b), 0);
  assert_int_equal(reply_step(&h2, &kr, &a, b.pk, &kr, &b), 0);
  /* a finish captured from one session replayed into another (fresh server key): refused */
  assert_int_equal(tunx_server_check_finish(&h2.s, &kr, h1.finish, sizeof h1.finish), -EACCES);
  /* a reply captured from one session replayed to another client hello: refused */
  struct hs h3;
  memset(&h3, 0, sizeof h3);
  assert_int_equal(tunx_client_hello(&h3.c, &kr, h3.hello), 0);
  assert_int_equal(tunx_client_check_reply(&h3.c, &kr, &a, b.pk, 8080, h1.reply, sizeof h1.reply, h3.finish),
                   -EACCES);
  /* the port changed in flight: refused (a server session is good for one try) */
  assert_int_equal(reply_step(&h2, &kr, &a, b.pk, &kr, &b), 0);
  struct tunx_session once = h2.s;
  h2.finish[32 + 1] ^= 1;
  assert_int_equal(tunx_server_check_finish(&once, &kr, h2.finish, sizeof h2.finish), -EACCES);
  h2.finish[32 + 1] ^= 1;
  assert_int_equal(tunx_server_check_finish(&h2.s, &kr, h2.finish, sizeof h2.finish), 0);
  /* frames: a flipped bit, a replayed frame and a dropped frame all fail to open */
  uint8_t f1[64], f2[64], pt[64];
  size_t n1 = tunx_seal(&h2.c, (const uint8_t *)"one", 3, 0, f1),
         n2 = tunx_seal(&h2.c, (const uint8_t *)"two", 3, 0, f2);
  size_t pn;
  int final;
  struct tunx_session rx = h2.s;
  f1[6] ^= 0x80;
  assert_int_equal(tunx_open(&rx, f1 + 4, n1 - 4, pt, &pn, &final), -EBADMSG);
  f1[6] ^= 0x80;
  rx = h2.s;
  assert_int_equal(tunx_open(&rx, f2 + 4, n2 - 4, pt, &pn, &final), -EBADMSG); /* f1 was dropped */
  rx = h2.s;
  assert_int_equal(tunx_open(&rx, f1 + 4, n1 - 4, pt, &pn, &final), 0);
  assert_int_equal(tunx_open(&rx, f1 + 4, n1 - 4, pt, &pn, &final), -EBADMSG); /* replayed */
  /* short input asks for more; a foreign protocol is refused; an altered hello fails its MAC */
  struct tunx_session s;
  memset(&s, 0, sizeof s);
  assert_int_equal(tunx_parse_hello(&s, &kr, h1.hello, 10), -EAGAIN);
  uint8_t other[TUNX_HELLO_LEN];
  memset(other, 'x', sizeof other);
  memcpy(other, "\0\0\0\x10", 4);
  assert_int_equal(tunx_parse_hello(&s, &kr, other, sizeof other), -EPROTO);
  memcpy(other, h1.hello, sizeof other);
  other[9] ^= 1;
  assert_int_equal(tunx_parse_hello(&s, &kr, other, sizeof other), -EACCES);
  uint32_t clen;
  assert_int_equal(tunx_frame_next((const uint8_t *)"\x00\x00\x00\x05", 4, &clen), -EPROTO);
  assert_int_equal(tunx_frame_next((const uint8_t *)"\x00\x01\x00\x11", 4, &clen), 0);
}

/* ---- streams over a loop: dial → echo server, a refused port, a client that is not a member ---- */

struct loopt {
  uv_loop_t loop;
  struct tunnel *srv, *cli;
  struct identity a, b;
  struct keyring kr;
  uv_tcp_t gossip, echo; /* the server's tunnel listener stands in for its gossip port */
  int gossip_port, echo_port;
  bool a_member; /* does the server know the client */
  int status;
  uv_pipe_t pipe, held;
  char got[64];
  size_t ngot;
  bool done;
};
static struct loopt L;

static void free_handle(uv_handle_t *h) { free(h); }

static const uint8_t IMPOSTER[32] = {7, 7, 7}; /* a member whose address the server (b) answers */

static int resolve(void *arg, const uint8_t pk[32], char *addr, size_t cap) {
  (void)arg;
  if (memcmp(pk, L.b.pk, 32) == 0 || memcmp(pk, IMPOSTER, 32) == 0)
    return snprintf(addr, cap, "127.0.0.1:%d", L.gossip_port), 0;
  if (memcmp(pk, L.a.pk, 32) == 0 && L.a_member) return snprintf(addr, cap, "127.0.0.1:1"), 0;
  return -ENOENT;
}

static int lookup(void *arg, const char *node, uint8_t pk[32]) {
  (void)arg;
  if (strcmp(node, "b") != 0) return -ENOENT;
  memcpy(pk, L.b.pk, 32);
  return 0;
}

static void gossip_accept_cb(uv_stream_t *s, int status) {
  assert_int_equal(status, 0);
  uv_tcp_t *c = malloc(sizeof *c);
  uv_tcp_init(&L.loop, c);
  assert_int_equal(uv_accept(s, (uv_stream_t *)c), 0);
  uv_os_fd_t fd;
  uv_fileno((uv_handle_t *)c, &fd);
  tunnel_accept_fd(L.srv, dup(fd), NULL, 0);
  uv_close((uv_handle_t *)c, free_handle);
}

static void alloc(uv_handle_t *h, size_t n, uv_buf_t *b) {
  static char buf[4096];
  (void)h, (void)n;
  *b = uv_buf_init(buf, sizeof buf);
}

static void free_write(uv_write_t *w, int status) {
  (void)status;
  free(w);
}

static void echo_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  if (n < 0) {
    uv_close((uv_handle_t *)s, free_handle);
    return;
  }
  uv_write_t *w = malloc(sizeof *w + (size_t)n);
  memcpy(w + 1, b->base, (size_t)n);
  uv_buf_t o = uv_buf_init((char *)(w + 1), (unsigned)n);
  uv_write(w, s, &o, 1, free_write);
}

static void echo_accept_cb(uv_stream_t *s, int status) {
  (void)status;
  uv_tcp_t *c = malloc(sizeof *c);
  uv_tcp_init(&L.loop, c);
  uv_accept(s, (uv_stream_t *)c);
  uv_read_start((uv_stream_t *)c, alloc, echo_read);
}

/* A service that reads a request of 5 bytes and closes the connection without answering: it ends the stream
 * first (all it was sent is read: a clean end, no reset). */
static void closer_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  (void)b;
  size_t *got = s->data;
  if (n > 0) *got += (size_t)n;
  if (n < 0 || *got >= 5) {
    uv_read_stop(s);
    uv_close((uv_handle_t *)s, free_handle);
  }
}

static void closer_accept_cb(uv_stream_t *s, int status) {
  (void)status;
  static size_t got;
  got = 0;
  uv_tcp_t *c = malloc(sizeof *c);
  uv_tcp_init(&L.loop, c);
  c->data = &got;
  uv_accept(s, (uv_stream_t *)c);
  uv_read_start((uv_stream_t *)c, alloc, closer_read);
}

static int lost_err, nlost;
static void lost_cb(void *arg, int err) {
  (void)arg;
  lost_err = err, nlost++;
}

static int listen_any(uv_tcp_t *t, uv_connection_cb cb) {
  struct sockaddr_in sa;
  uv_ip4_addr("127.0.0.1", 0, &sa);
  uv_tcp_init(&L.loop, t);
  uv_tcp_bind(t, (const struct sockaddr *)&sa, 0);
  assert_int_equal(uv_listen((uv_stream_t *)t, 16, cb), 0);
  int len = sizeof sa;
  uv_tcp_getsockname(t, (struct sockaddr *)&sa, &len);
  return ntohs(sa.sin_port);
}

static void pipe_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  if (n > 0 && L.ngot + (size_t)n < sizeof L.got)
    memcpy(L.got + L.ngot, b->base, (size_t)n), L.ngot += (size_t)n;
  if (L.ngot >= 5 || n < 0) {
    L.done = true;
    uv_close((uv_handle_t *)s, NULL);
  }
}

static void dial_cb(void *arg, int status, uv_os_sock_t fd) {
  (void)arg;
  L.status = status;
  if (status != 0) {
    L.done = true;
    return;
  }
  uv_pipe_init(&L.loop, &L.pipe, 0);
  assert_int_equal(uv_pipe_open(&L.pipe, fd), 0);
  static uv_write_t w;
  uv_buf_t b = uv_buf_init("hello", 5);
  uv_write(&w, (uv_stream_t *)&L.pipe, &b, 1, NULL);
  uv_read_start((uv_stream_t *)&L.pipe, alloc, pipe_read);
}

static void tcp_connect_cb(uv_connect_t *r, int status) {
  assert_int_equal(status, 0);
  static uv_write_t w;
  uv_buf_t b = uv_buf_init("hello", 5);
  uv_write(&w, r->handle, &b, 1, NULL);
  uv_read_start(r->handle, alloc, pipe_read);
}

static void run_until_done(void);

/* hold_cb keeps a dialed stream open (L.held) and stops the loop run. */
static void hold_cb(void *arg, int status, uv_os_sock_t fd) {
  (void)arg;
  L.status = status;
  L.done = true;
  if (status == 0) {
    uv_pipe_init(&L.loop, &L.held, 0);
    assert_int_equal(uv_pipe_open(&L.held, fd), 0);
  }
}

/* fwd_roundtrip connects to 127.0.0.1:port, sends "hello" and returns how many bytes came back before 5 or
 * the end. */
static int fwd_roundtrip(int port) {
  static uv_tcp_t tcp;
  static uv_connect_t cr;
  struct sockaddr_in sa;
  uv_ip4_addr("127.0.0.1", port, &sa);
  L.done = false, L.ngot = 0;
  uv_tcp_init(&L.loop, &tcp);
  uv_tcp_connect(&cr, &tcp, (const struct sockaddr *)&sa, tcp_connect_cb);
  run_until_done();
  return (int)L.ngot;
}

static void run_until_done(void) {
  for (int i = 0; i < 2000 && !L.done; i++)
    uv_run(&L.loop, UV_RUN_ONCE);
  assert_true(L.done);
}

static void closed(void *arg) { (*(int *)arg)++; }

static int dial_once(int port) {
  L.done = false, L.ngot = 0, L.status = 1;
  tunnel_dial(L.cli, L.b.pk, port, dial_cb, NULL);
  run_until_done();
  return L.status;
}

static void test_streams_over_a_loop(void **state) {
  (void)state;
  memset(&L, 0, sizeof L);
  uv_loop_init(&L.loop);
  L.a = ident(1), L.b = ident(2), L.kr = ring(0x42);
  L.gossip_port = listen_any(&L.gossip, gossip_accept_cb);
  L.echo_port = listen_any(&L.echo, echo_accept_cb);
  struct tunnel_config sc = {.id = &L.b, .kr = &L.kr, .resolve = resolve, .lookup = lookup}, cc = sc;
  cc.id = &L.a;
  assert_int_equal(tunnel_new(&L.srv, &L.loop, &sc), 0);
  assert_int_equal(tunnel_new(&L.cli, &L.loop, &cc), 0);
  assert_int_equal(tunnel_allow(L.srv, "127.0.0.1", L.echo_port), 0);
  assert_int_equal(tunnel_allow(L.srv, "127.0.0.1", L.echo_port), -EEXIST);
  L.a_member = true;

  assert_int_equal(dial_once(L.echo_port), 0);
  assert_int_equal(L.ngot, 5);
  assert_memory_equal(L.got, "hello", 5);
  assert_int_equal(tunnel_counters(L.srv)->accepted, 1);

  /* a port not on the allow-list (the gossip port itself) is refused, with a reason */
  assert_int_equal(dial_once(L.gossip_port), -ECONNREFUSED);
  assert_int_equal(tunnel_counters(L.srv)->refused_port, 1);

  /* a member the client does not know: no dial at all */
  uint8_t nobody[32] = {9};
  L.done = false;
  tunnel_dial(L.cli, nobody, L.echo_port, dial_cb, NULL);
  run_until_done();
  assert_int_equal(L.status, -ENOENT);

  /* the address of a member answered by another node (b): the client refuses it */
  L.done = false;
  tunnel_dial(L.cli, IMPOSTER, L.echo_port, dial_cb, NULL);
  run_until_done();
  assert_int_equal(L.status, -EPERM);
  assert_int_equal(tunnel_counters(L.cli)->refused_identity, 1);

  /* backpressure: 32 MiB written into a stream whose reader never reads back: the relays pause reading
   * instead of buffering it (the echo server's own queue and the kernels' buffers hold the rest) */
  L.done = false, L.status = 1;
  tunnel_dial(L.cli, L.b.pk, L.echo_port, hold_cb, NULL);
  run_until_done();
  assert_int_equal(L.status, 0);
  static char big[1 << 20];
  static uv_write_t bw[32];
  for (int i = 0; i < 32; i++) {
    uv_buf_t b = uv_buf_init(big, sizeof big);
    assert_int_equal(uv_write(&bw[i], (uv_stream_t *)&L.held, &b, 1, NULL), 0);
  }
  for (int i = 0; i < 20000 && tunnel_counters(L.cli)->pauses + tunnel_counters(L.srv)->pauses == 0; i++)
    uv_run(&L.loop, UV_RUN_ONCE);
  assert_true(tunnel_counters(L.cli)->pauses + tunnel_counters(L.srv)->pauses > 0);
  uv_close((uv_handle_t *)&L.held, NULL);

  /* a forwarder: a plain TCP client on its port reaches the echo server through the tunnel */
  struct tunnel_forward *fw;
  char err[256];
  assert_int_equal(tunnel_forward_start(&fw, L.cli, "127.0.0.1", 0, "b", L.echo_port, err, sizeof err), 0);
  tunnel_forward_on_lost(fw, lost_cb, NULL);
  assert_int_equal(fwd_roundtrip(tunnel_forward_port(fw)), 5);
  for (int i = 0; i < 200; i++) /* the local client ended first: the echo server's end that follows is none */
    uv_run(&L.loop, UV_RUN_NOWAIT);
  assert_int_equal(nlost, 0);
  /* a service that ends the connection itself while the local client still holds it: reported (-EPIPE) */
  uv_tcp_t closer;
  int closer_port = listen_any(&closer, closer_accept_cb);
  assert_int_equal(tunnel_allow(L.srv, "127.0.0.1", closer_port), 0);
  struct tunnel_forward *fw_end;
  assert_int_equal(tunnel_forward_start(&fw_end, L.cli, "127.0.0.1", 0, "b", closer_port, err, sizeof err),
                   0);
  tunnel_forward_on_lost(fw_end, lost_cb, NULL);
  assert_int_equal(fwd_roundtrip(tunnel_forward_port(fw_end)), 0);
  assert_int_equal(nlost, 1);
  assert_int_equal(lost_err, -EPIPE);
  tunnel_forward_close(fw_end);
  uv_close((uv_handle_t *)&closer, NULL);
  struct tunnel_forward *fw_open;
  assert_int_equal(tunnel_forward_start(&fw_open, L.cli, "0.0.0.0", 0, "b", L.echo_port, err, sizeof err),
                   -EINVAL);
  assert_non_null(strstr(err, "not a loopback address"));
  assert_memory_equal(L.got, "hello", 5);
  struct tunnel_forward *fw_bad;
  assert_int_equal(tunnel_forward_start(&fw_bad, L.cli, "127.0.0.1", 0, "b", L.gossip_port, err, sizeof err),
                   0);
  assert_int_equal(fwd_roundtrip(tunnel_forward_port(fw_bad)), 0); /* closed: a port b does not allow */
  assert_int_equal(tunnel_counters(L.srv)->refused_port, 2);
  tunnel_forward_close(fw_bad);

  /* the server does not know the client as a member */
  L.a_member = false;
  assert_int_equal(dial_once(L.echo_port), -EPERM);
  assert_int_equal(tunnel_counters(L.srv)->refused_identity, 1);

  /* one stream per peer at most: a second one while the first is open is refused as busy */
  L.a_member = true;
  struct tunnel *srv1;
  struct tunnel_config one = sc;
  one.max_streams_per_peer = 1;
  assert_int_equal(tunnel_new(&srv1, &L.loop, &one), 0);
  assert_int_equal(tunnel_allow(srv1, "127.0.0.1", L.echo_port), 0);
  struct tunnel *srv_main = L.srv;
  L.srv = srv1; /* the gossip stand-in hands connections to srv1 now */
  L.done = false, L.ngot = 0, L.status = 1;
  tunnel_dial(L.cli, L.b.pk, L.echo_port, hold_cb, NULL);
  run_until_done();
  assert_int_equal(L.status, 0);
  assert_int_equal(dial_once(L.echo_port), -EBUSY);
  assert_int_equal(tunnel_counters(srv1)->refused_busy, 1);
  uv_close((uv_handle_t *)&L.held, NULL);
  L.srv = srv_main;

  /* a client of another cluster: the server drops its hello unanswered (it cannot prove anything to it) */
  L.a_member = true;
  struct keyring other = ring(0x77);
  struct tunnel_config oc = sc;
  oc.kr = &other;
  struct tunnel *cli2;
  assert_int_equal(tunnel_new(&cli2, &L.loop, &oc), 0);
  L.done = false;
  tunnel_dial(cli2, L.b.pk, L.echo_port, dial_cb, NULL);
  run_until_done();
  assert_int_equal(L.status, -ECONNRESET);
  assert_int_equal(tunnel_counters(L.srv)->refused_key, 1);

  int nclosed = 0;
  tunnel_close(L.srv, closed, &nclosed);
  tunnel_close(L.cli, closed, &nclosed);
  tunnel_close(cli2, closed, &nclosed);
  tunnel_close(srv1, closed, &nclosed);
  uv_close((uv_handle_t *)&L.gossip, NULL);
  uv_close((uv_handle_t *)&L.echo, NULL);
  uv_run(&L.loop, UV_RUN_DEFAULT);
  assert_int_equal(nclosed, 4);
  assert_int_equal(uv_loop_close(&L.loop), 0);
}

int main(void) {
  if (sodium_init() < 0) return 1;
  signal(SIGPIPE, SIG_IGN); /* as the agent does: a peer that went away is an error code, not a signal */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_handshake_and_frames),   cmocka_unit_test(test_wrong_cluster_key_refused),
      cmocka_unit_test(test_wrong_identity_refused), cmocka_unit_test(test_replay_and_tamper_detected),
      cmocka_unit_test(test_streams_over_a_loop),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
