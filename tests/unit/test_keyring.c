/* Cluster keyring, node identity and data dir tests: AEAD, rotation, request auth, files and their modes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster/datadir.h"
#include "cluster/identity.h"
#include "cluster/keyring.h"

static char tmpdir[256];

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw) { return remove(path); }

static int setup(void **state) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/im-keyring-XXXXXX");
  if (!mkdtemp(tmpdir)) return -1;
  return sodium_init() < 0 ? -1 : 0;
}

static int teardown(void **state) {
  nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  return 0;
}

static void path_of(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", tmpdir, name); }

static void write_file(const char *name, const char *text, mode_t mode) {
  char p[512];
  path_of(p, sizeof p, name);
  FILE *f = fopen(p, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  assert_int_equal(chmod(p, mode), 0);
}

static unsigned mode_of(const char *path) {
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  return (unsigned)(st.st_mode & 07777);
}

/* mem_keyring makes an in-memory keyring with one random key. */
static void mem_keyring(struct keyring *kr) {
  memset(kr, 0, sizeof *kr);
  keyring_generate(kr->keys[0]);
  kr->nkeys = 1;
  randombytes_buf(kr->cluster_id, sizeof kr->cluster_id);
}

/* seal_exact returns a heap packet of exactly its length (ASan sees any overread by keyring_open). */
static uint8_t *seal_exact(const struct keyring *kr, const char *msg, size_t *len) {
  uint8_t tmp[2048];
  ssize_t n = keyring_seal(kr, (const uint8_t *)msg, strlen(msg), tmp, sizeof tmp);
  assert_int_equal(n, (ssize_t)(strlen(msg) + KEYRING_OVERHEAD));
  uint8_t *p = malloc((size_t)n);
  memcpy(p, tmp, (size_t)n);
  *len = (size_t)n;
  return p;
}

static void assert_opens(struct keyring *kr, const uint8_t *pkt, size_t len, const char *want) {
  uint8_t out[2048];
  ssize_t n = keyring_open(kr, pkt, len, out, sizeof out);
  assert_int_equal(n, (ssize_t)strlen(want));
  assert_memory_equal(out, want, strlen(want));
}

/* --- AEAD --- */

static void test_seal_open_roundtrip(void **state) {
  struct keyring kr;
  mem_keyring(&kr);
  static const size_t sizes[] = {0, 1, 41, 100, 1400};
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
    uint8_t pt[1400], ct[1400 + KEYRING_OVERHEAD], back[1400];
    randombytes_buf(pt, sizes[s]);
    ssize_t n = keyring_seal(&kr, pt, sizes[s], ct, sizeof ct);
    assert_int_equal(n, (ssize_t)(sizes[s] + KEYRING_OVERHEAD));
    assert_int_equal(ct[0], KEYRING_VERSION);
    uint8_t *exact = malloc((size_t)n);
    memcpy(exact, ct, (size_t)n);
    assert_int_equal(keyring_open(&kr, exact, (size_t)n, back, sizes[s]), (ssize_t)sizes[s]);
    assert_memory_equal(back, pt, sizes[s]);
    free(exact);
  }
  /* A fresh nonce every time: sealing the same message twice gives different packets. */
  uint8_t a[64], b[64];
  assert_int_equal(keyring_seal(&kr, (const uint8_t *)"same", 4, a, sizeof a), 4 + KEYRING_OVERHEAD);
  assert_int_equal(keyring_seal(&kr, (const uint8_t *)"same", 4, b, sizeof b), 4 + KEYRING_OVERHEAD);
  assert_memory_not_equal(a, b, 4 + KEYRING_OVERHEAD);
  /* The plaintext is not visible in the packet. */
  assert_null(memmem(a, 4 + KEYRING_OVERHEAD, "same", 4));
  assert_int_equal(kr.dropped, 0);
}

static void test_every_bit_flip_is_dropped(void **state) {
  struct keyring kr;
  mem_keyring(&kr);
  size_t len;
  uint8_t *pkt = seal_exact(&kr, "suspect node 42 at incarnation 7", &len);
  uint8_t out[256];
  uint64_t dropped = 0;
  for (size_t bit = 0; bit < len * 8; bit++) {
    pkt[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    assert_int_equal(keyring_open(&kr, pkt, len, out, sizeof out), -EBADMSG);
    assert_int_equal(kr.dropped, ++dropped);
    pkt[bit / 8] ^= (uint8_t)(1u << (bit % 8));
  }
  assert_opens(&kr, pkt, len, "suspect node 42 at incarnation 7");
  assert_int_equal(kr.dropped, dropped);
  free(pkt);
}

static void test_short_wrong_version_and_sizes(void **state) {
  struct keyring kr;
  mem_keyring(&kr);
  size_t len;
  uint8_t *pkt = seal_exact(&kr, "hello", &len);
  uint8_t out[64];
  /* Every truncation, including to nothing, is refused without reading past the end (exact allocations). */
  for (size_t n = 0; n < len; n++) {
    uint8_t *cut = malloc(n ? n : 1);
    memcpy(cut, pkt, n);
    assert_int_equal(keyring_open(&kr, cut, n, out, sizeof out), -EBADMSG);
    free(cut);
  }
  assert_int_equal(kr.dropped, len);
  assert_int_equal(keyring_open(&kr, NULL, 0, out, sizeof out), -EBADMSG);
  pkt[0] = 2; /* a future version */
  assert_int_equal(keyring_open(&kr, pkt, len, out, sizeof out), -EBADMSG);
  pkt[0] = KEYRING_VERSION;
  /* Too small an output buffer is refused, never overrun. */
  assert_int_equal(keyring_open(&kr, pkt, len, out, 4), -ENOSPC);
  assert_int_equal(keyring_open(&kr, pkt, len, out, 5), 5);
  uint8_t big[64];
  assert_int_equal(keyring_seal(&kr, (const uint8_t *)"hello", 5, big, 5 + KEYRING_OVERHEAD - 1), -ENOSPC);
  /* Extra bytes after a packet are not part of it: it fails authentication. */
  uint8_t longer[64];
  memcpy(longer, pkt, len);
  longer[len] = 0;
  assert_int_equal(keyring_open(&kr, longer, len + 1, out, sizeof out), -EBADMSG);
  /* An empty keyring seals nothing. */
  struct keyring empty = {.nkeys = 0};
  assert_int_equal(keyring_seal(&empty, (const uint8_t *)"x", 1, big, sizeof big), -EINVAL);
  free(pkt);
}

static void test_wrong_key_is_dropped(void **state) {
  struct keyring a, b;
  mem_keyring(&a);
  mem_keyring(&b);
  size_t len;
  uint8_t *pkt = seal_exact(&a, "ping", &len);
  uint8_t out[64];
  assert_int_equal(keyring_open(&b, pkt, len, out, sizeof out), -EBADMSG);
  assert_int_equal(b.dropped, 1);
  assert_opens(&a, pkt, len, "ping");
  free(pkt);
}

/* --- rotation --- */

static void test_rotation(void **state) {
  struct keyring node, peer;
  mem_keyring(&node);
  peer = node;
  uint8_t k1[KEYRING_KEY_LEN], k2[KEYRING_KEY_LEN];
  memcpy(k1, node.keys[0], sizeof k1);
  keyring_generate(k2);
  size_t l1, l2, l3;
  uint8_t *old_pkt = seal_exact(&node, "sealed with k1", &l1);

  /* Step 1: install k2 everywhere. k1 still seals. */
  assert_int_equal(keyring_install(&node, k2), 0);
  assert_int_equal(keyring_install(&node, k2), -EEXIST);
  assert_int_equal(node.nkeys, 2);
  assert_memory_equal(node.keys[0], k1, sizeof k1);
  assert_int_equal(keyring_install(&peer, k2), 0);

  /* Step 2: use k2. Old packets still open while k1 is installed; a peer that only installed k2 opens ours.
   */
  assert_int_equal(keyring_use(&node, k2), 0);
  assert_memory_equal(node.keys[0], k2, sizeof k2);
  assert_memory_equal(node.keys[1], k1, sizeof k1);
  uint8_t *new_pkt = seal_exact(&node, "sealed with k2", &l2);
  assert_opens(&node, old_pkt, l1, "sealed with k1");
  assert_opens(&node, new_pkt, l2, "sealed with k2");
  assert_opens(&peer, new_pkt, l2, "sealed with k2");
  uint8_t *peer_pkt = seal_exact(&peer, "peer still on k1", &l3);
  assert_opens(&node, peer_pkt, l3, "peer still on k1");

  /* The primary (and so the last key) cannot be removed; unknown keys neither. */
  assert_int_equal(keyring_remove(&node, k2), -EBUSY);
  uint8_t k3[KEYRING_KEY_LEN];
  keyring_generate(k3);
  assert_int_equal(keyring_remove(&node, k3), -ENOENT);
  assert_int_equal(keyring_use(&node, k3), -ENOENT);

  /* Step 3: remove k1. Its packets are now dropped. */
  assert_int_equal(keyring_remove(&node, k1), 0);
  assert_int_equal(node.nkeys, 1);
  uint8_t out[64];
  uint64_t before = node.dropped;
  assert_int_equal(keyring_open(&node, old_pkt, l1, out, sizeof out), -EBADMSG);
  assert_int_equal(node.dropped, before + 1);
  assert_opens(&node, new_pkt, l2, "sealed with k2");
  assert_int_equal(keyring_remove(&node, k2), -EBUSY); /* the last key */

  /* A full ring refuses another key. */
  for (int i = node.nkeys; i < KEYRING_MAX; i++) {
    uint8_t k[KEYRING_KEY_LEN];
    keyring_generate(k);
    assert_int_equal(keyring_install(&node, k), 0);
  }
  assert_int_equal(keyring_install(&node, k3), -ENOSPC);
  /* use moves a key to the front and keeps the others in order. */
  uint8_t last[KEYRING_KEY_LEN], second[KEYRING_KEY_LEN];
  memcpy(last, node.keys[KEYRING_MAX - 1], sizeof last);
  memcpy(second, node.keys[1], sizeof second);
  assert_int_equal(keyring_use(&node, last), 0);
  assert_memory_equal(node.keys[0], last, sizeof last);
  assert_memory_equal(node.keys[1], k2, sizeof k2);
  assert_memory_equal(node.keys[2], second, sizeof second);
  free(old_pkt);
  free(new_pkt);
  free(peer_pkt);
}

/* --- agent-to-agent request authentication --- */

static void test_auth_tags(void **state) {
  struct keyring a, b;
  mem_keyring(&a);
  mem_keyring(&b);
  const char *req = "POST /v1/chat/completions\nx-request-id: 1\n";
  size_t n = strlen(req);
  uint8_t tag[KEYRING_AUTH_LEN], raw[crypto_auth_BYTES];
  keyring_auth_tag(&a, (const uint8_t *)req, n, tag);
  assert_true(keyring_auth_verify(&a, (const uint8_t *)req, n, tag));
  assert_false(keyring_auth_verify(&b, (const uint8_t *)req, n, tag));
  assert_false(keyring_auth_verify(&a, (const uint8_t *)req, n - 1, tag));
  for (int bit = 0; bit < KEYRING_AUTH_LEN * 8; bit += 7) {
    tag[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    assert_false(keyring_auth_verify(&a, (const uint8_t *)req, n, tag));
    tag[bit / 8] ^= (uint8_t)(1u << (bit % 8));
  }
  /* The auth key is a subkey, not the AEAD key itself. */
  crypto_auth(raw, (const uint8_t *)req, n, a.keys[0]);
  assert_memory_not_equal(raw, tag, sizeof tag);
  /* A tag made with the old primary verifies while that key is installed, not after. */
  uint8_t k2[KEYRING_KEY_LEN], old[KEYRING_KEY_LEN];
  memcpy(old, a.keys[0], sizeof old);
  keyring_generate(k2);
  assert_int_equal(keyring_install(&a, k2), 0);
  assert_int_equal(keyring_use(&a, k2), 0);
  assert_true(keyring_auth_verify(&a, (const uint8_t *)req, n, tag));
  uint8_t tag2[KEYRING_AUTH_LEN];
  keyring_auth_tag(&a, (const uint8_t *)req, n, tag2);
  assert_memory_not_equal(tag, tag2, sizeof tag);
  assert_int_equal(keyring_remove(&a, old), 0);
  assert_false(keyring_auth_verify(&a, (const uint8_t *)req, n, tag));
  assert_true(keyring_auth_verify(&a, (const uint8_t *)req, n, tag2));
}

static void test_key_text_helpers(void **state) {
  uint8_t k[KEYRING_KEY_LEN], back[KEYRING_KEY_LEN];
  char hex[2 * KEYRING_KEY_LEN + 1], fp[KEYRING_FP_LEN + 1], fp2[KEYRING_FP_LEN + 1], buf[200];
  keyring_generate(k);
  keyring_key_hex(k, hex);
  assert_int_equal(strlen(hex), 64);
  assert_int_equal(keyring_parse_key(hex, back), 0);
  assert_memory_equal(k, back, sizeof k);
  snprintf(buf, sizeof buf, "  %s\n", hex); /* pasted with spaces and a newline */
  assert_int_equal(keyring_parse_key(buf, back), 0);
  for (char *p = buf; *p; p++)
    if (*p >= 'a' && *p <= 'f') *p = (char)(*p - 'a' + 'A');
  assert_int_equal(keyring_parse_key(buf, back), 0);
  assert_memory_equal(k, back, sizeof k);
  snprintf(buf, sizeof buf, "%.63s", hex);
  assert_int_equal(keyring_parse_key(buf, back), -EINVAL);
  snprintf(buf, sizeof buf, "%s0", hex);
  assert_int_equal(keyring_parse_key(buf, back), -EINVAL);
  snprintf(buf, sizeof buf, "%.63sg", hex);
  assert_int_equal(keyring_parse_key(buf, back), -EINVAL);
  snprintf(buf, sizeof buf, "%.32s %.32s", hex, hex + 32);
  assert_int_equal(keyring_parse_key(buf, back), -EINVAL);
  assert_int_equal(keyring_parse_key("", back), -EINVAL);
  /* The fingerprint is short, stable, and not a piece of the key's hex. */
  keyring_fingerprint(k, fp);
  keyring_fingerprint(k, fp2);
  assert_int_equal(strlen(fp), KEYRING_FP_LEN);
  assert_string_equal(fp, fp2);
  assert_null(strstr(hex, fp));
}

/* --- files --- */

static void test_create_load_save_modes(void **state) {
  char dir[512], p[600], err[512];
  snprintf(dir, sizeof dir, "%s/a/b/data", tmpdir);
  assert_int_equal(datadir_ensure(dir, err, sizeof err), 0);
  snprintf(p, sizeof p, "%s/a", tmpdir);
  assert_int_equal(mode_of(p), 0700);
  assert_int_equal(mode_of(dir), 0700);
  assert_int_equal(datadir_ensure(dir, err, sizeof err), 0); /* idempotent */

  mode_t old = umask(0); /* even with a permissive umask the files are private */
  assert_int_equal(keyring_create(dir, err, sizeof err), 0);
  umask(old);
  snprintf(p, sizeof p, "%s/cluster.key", dir);
  assert_int_equal(mode_of(p), 0600);
  snprintf(p, sizeof p, "%s/cluster.id", dir);
  assert_int_equal(mode_of(p), 0600);

  struct keyring kr, again;
  assert_int_equal(keyring_load(&kr, dir, err, sizeof err), 0);
  assert_int_equal(kr.nkeys, 1);
  assert_int_equal(kr.dropped, 0);
  uint8_t k2[KEYRING_KEY_LEN];
  keyring_generate(k2);
  assert_int_equal(keyring_install(&kr, k2), 0);
  assert_int_equal(keyring_use(&kr, k2), 0);
  assert_int_equal(keyring_save(&kr, dir, err, sizeof err), 0);
  snprintf(p, sizeof p, "%s/cluster.key", dir);
  assert_int_equal(mode_of(p), 0600);
  assert_int_equal(keyring_load(&again, dir, err, sizeof err), 0);
  assert_int_equal(again.nkeys, 2);
  assert_memory_equal(again.keys, kr.keys, sizeof kr.keys[0] * 2);
  assert_memory_equal(again.cluster_id, kr.cluster_id, sizeof kr.cluster_id);

  /* The file format: one 64-hex key per line, primary first; the id is 32 hex and a newline. */
  char text[512], hex[65];
  FILE *f = fopen(p, "r");
  size_t n = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  text[n] = 0;
  keyring_key_hex(k2, hex);
  assert_int_equal(n, 130);
  assert_memory_equal(text, hex, 64);
  assert_int_equal(text[64], '\n');
  char idhex[33], idtext[64];
  keyring_id_hex(kr.cluster_id, idhex);
  snprintf(p, sizeof p, "%s/cluster.id", dir);
  f = fopen(p, "r");
  n = fread(idtext, 1, sizeof idtext - 1, f);
  fclose(f);
  idtext[n] = 0;
  assert_int_equal(n, 33);
  assert_memory_equal(idtext, idhex, 32);
  /* No temporary file is left behind. */
  snprintf(p, sizeof p, "%s/.cluster.key.tmp.%ld", dir, (long)getpid());
  assert_int_not_equal(access(p, F_OK), 0);
  /* Saving into a missing data dir creates it, private. */
  snprintf(p, sizeof p, "%s/new/node", tmpdir);
  assert_int_equal(keyring_save(&kr, p, err, sizeof err), 0);
  assert_int_equal(mode_of(p), 0700);
  assert_int_equal(keyring_load(&again, p, err, sizeof err), 0);
  assert_int_equal(again.nkeys, 2);
  snprintf(p, sizeof p, "%s/new/other", tmpdir);
  assert_int_equal(keyring_create(p, err, sizeof err), 0);
  assert_int_equal(mode_of(p), 0700);
  /* Saving an empty keyring is refused. */
  struct keyring empty = {.nkeys = 0};
  assert_int_equal(keyring_save(&empty, dir, err, sizeof err), -EINVAL);
}

static void test_create_refuses_overwrite(void **state) {
  char err[512];
  struct keyring before, after;
  assert_int_equal(keyring_create(tmpdir, err, sizeof err), 0);
  assert_int_equal(keyring_load(&before, tmpdir, err, sizeof err), 0);
  assert_int_equal(keyring_create(tmpdir, err, sizeof err), -EEXIST);
  assert_non_null(strstr(err, "already holds a cluster key"));
  assert_non_null(strstr(err, tmpdir));
  assert_non_null(strstr(err, "invite"));
  assert_int_equal(keyring_load(&after, tmpdir, err, sizeof err), 0);
  assert_memory_equal(before.keys[0], after.keys[0], KEYRING_KEY_LEN);
  assert_memory_equal(before.cluster_id, after.cluster_id, KEYRING_ID_LEN);
  /* Even a damaged key file is never replaced by create. */
  write_file("cluster.key", "garbage\n", 0600);
  assert_int_equal(keyring_create(tmpdir, err, sizeof err), -EEXIST);
}

static void test_load_missing(void **state) {
  char err[512];
  struct keyring kr = {.nkeys = 3};
  assert_int_equal(keyring_load(&kr, tmpdir, err, sizeof err), -ENOENT);
  assert_non_null(strstr(err, "no cluster key in"));
  assert_non_null(strstr(err, "infermesh init"));
  assert_non_null(strstr(err, "invite"));
  assert_int_equal(kr.nkeys, 3); /* untouched on failure */
  /* A key without its cluster id names the missing file. */
  char hex[65], line[80];
  uint8_t k[KEYRING_KEY_LEN];
  keyring_generate(k);
  keyring_key_hex(k, hex);
  snprintf(line, sizeof line, "%s\n", hex);
  write_file("cluster.key", line, 0600);
  assert_int_equal(keyring_load(&kr, tmpdir, err, sizeof err), -ENOENT);
  assert_non_null(strstr(err, "cluster.id"));
}

static void test_world_readable_key_refused(void **state) {
  char err[512], p[512];
  struct keyring kr;
  assert_int_equal(keyring_create(tmpdir, err, sizeof err), 0);
  path_of(p, sizeof p, "cluster.key");
  static const mode_t bad[] = {0644, 0640, 0604, 0660, 0602};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(chmod(p, bad[i]), 0);
    assert_int_equal(keyring_load(&kr, tmpdir, err, sizeof err), -EPERM);
    assert_non_null(strstr(err, "chmod 600"));
    assert_non_null(strstr(err, p));
  }
  assert_int_equal(chmod(p, 0400), 0); /* read-only for the owner is fine */
  assert_int_equal(keyring_load(&kr, tmpdir, err, sizeof err), 0);
  /* A cluster id readable by others is fine: it is not a secret. */
  path_of(p, sizeof p, "cluster.id");
  assert_int_equal(chmod(p, 0644), 0);
  assert_int_equal(keyring_load(&kr, tmpdir, err, sizeof err), 0);
}

static void test_malformed_key_files(void **state) {
  char err[512], hex[65], hex2[65], text[1024];
  uint8_t k[KEYRING_KEY_LEN], k2[KEYRING_KEY_LEN];
  struct keyring kr;
  keyring_generate(k);
  keyring_generate(k2);
  keyring_key_hex(k, hex);
  keyring_key_hex(k2, hex2);
  write_file("cluster.id", "00112233445566778899aabbccddeeff\n", 0600);
  struct {
    const char *fmt;
    const char *want;
  } cases[] = {
      {"%.63s\n", "line 1"},         /* one character short */
      {"%s0\n", "line 1"},           /* one too many */
      {"%.63sz\n", "line 1"},        /* not hex */
      {"%s\nnot a key\n", "line 2"}, /* junk line */
      {"%s\n%s\n", "repeats"},       /* the same key twice */
      {"%s\n%s\n%s\n%s\n%s\n", "more than 4 keys"},
      {"\n\n", "holds no key"},
      {"%s %s\n", "line 1"}, /* two keys on one line */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    if (strstr(cases[i].want, "more than")) {
      /* five distinct keys */
      size_t off = 0;
      for (int j = 0; j < 5; j++) {
        uint8_t kk[KEYRING_KEY_LEN];
        char h[65];
        keyring_generate(kk);
        keyring_key_hex(kk, h);
        off += (size_t)snprintf(text + off, sizeof text - off, "%s\n", h);
      }
    } else if (strstr(cases[i].fmt, "%s\n%s\n") && strstr(cases[i].want, "repeats")) {
      snprintf(text, sizeof text, cases[i].fmt, hex, hex);
    } else if (strcmp(cases[i].fmt, "%s %s\n") == 0) {
      snprintf(text, sizeof text, cases[i].fmt, hex, hex2);
    } else {
      snprintf(text, sizeof text, cases[i].fmt, hex);
    }
    write_file("cluster.key", text, 0600);
    assert_int_equal(keyring_load(&kr, tmpdir, err, sizeof err), -EINVAL);
    if (!strstr(err, cases[i].want)) fail_msg("case %zu: '%s' does not say '%s'", i, err, cases[i].want);
  }
  /* A NUL byte inside the file. */
  char p[512];
  path_of(p, sizeof p, "cluster.key");
  FILE *f = fopen(p, "w");
  fwrite(hex, 1, 10, f);
  fputc(0, f);
  fwrite(hex + 11, 1, 53, f);
  fclose(f);
  assert_int_equal(keyring_load(&kr, tmpdir, err, sizeof err), -EINVAL);
  /* Blank lines, CRLF and a missing final newline are tolerated. */
  snprintf(text, sizeof text, "\n%s\r\n\n%s", hex, hex2);
  write_file("cluster.key", text, 0600);
  assert_int_equal(keyring_load(&kr, tmpdir, err, sizeof err), 0);
  assert_int_equal(kr.nkeys, 2);
  assert_memory_equal(kr.keys[0], k, sizeof k);
  assert_memory_equal(kr.keys[1], k2, sizeof k2);
  /* A damaged cluster id. */
  write_file("cluster.id", "0011\n", 0600);
  assert_int_equal(keyring_load(&kr, tmpdir, err, sizeof err), -EINVAL);
  assert_non_null(strstr(err, "cluster.id"));
  /* A directory where the key file should be. */
  write_file("cluster.id", "00112233445566778899aabbccddeeff\n", 0600);
  path_of(p, sizeof p, "cluster.key");
  assert_int_equal(unlink(p), 0);
  assert_int_equal(mkdir(p, 0700), 0);
  assert_true(keyring_load(&kr, tmpdir, err, sizeof err) < 0);
  assert_non_null(strstr(err, "cluster.key"));
}

static void test_reload(void **state) {
  char err[512], other[600];
  struct keyring kr, disk;
  assert_int_equal(keyring_create(tmpdir, err, sizeof err), 0);
  assert_int_equal(keyring_load(&kr, tmpdir, err, sizeof err), 0);
  kr.dropped = 17;
  disk = kr;
  uint8_t k2[KEYRING_KEY_LEN];
  keyring_generate(k2);
  assert_int_equal(keyring_install(&disk, k2), 0);
  assert_int_equal(keyring_save(&disk, tmpdir, err, sizeof err), 0);
  assert_int_equal(keyring_reload(&kr, tmpdir, err, sizeof err), 0);
  assert_int_equal(kr.nkeys, 2);
  assert_int_equal(kr.dropped, 17); /* counters survive a SIGHUP */
  /* Another cluster's keyring is refused and leaves the running one alone. */
  snprintf(other, sizeof other, "%s/other", tmpdir);
  assert_int_equal(datadir_ensure(other, err, sizeof err), 0);
  assert_int_equal(keyring_create(other, err, sizeof err), 0);
  assert_int_equal(keyring_reload(&kr, other, err, sizeof err), -EXDEV);
  assert_non_null(strstr(err, "restart"));
  assert_int_equal(kr.nkeys, 2);
}

/* --- identity --- */

static void test_identity_stable(void **state) {
  char dir[512], p[600], err[512], hex[65], shorthex[13];
  snprintf(dir, sizeof dir, "%s/fresh/dir", tmpdir);
  struct identity a, b;
  assert_int_equal(identity_load_or_create(&a, dir, err, sizeof err), 0); /* creates the dir too */
  assert_int_equal(mode_of(dir), 0700);
  snprintf(p, sizeof p, "%s/node.key", dir);
  assert_int_equal(mode_of(p), 0600);
  assert_int_equal(identity_load_or_create(&b, dir, err, sizeof err), 0);
  assert_memory_equal(a.pk, b.pk, sizeof a.pk);
  assert_memory_equal(a.sk, b.sk, sizeof a.sk);
  /* It is a working ed25519 key pair. */
  uint8_t sig[crypto_sign_BYTES];
  crypto_sign_detached(sig, NULL, (const uint8_t *)"hi", 2, a.sk);
  assert_int_equal(crypto_sign_verify_detached(sig, (const uint8_t *)"hi", 2, a.pk), 0);
  /* Another data dir, another identity. */
  struct identity c;
  assert_int_equal(identity_load_or_create(&c, tmpdir, err, sizeof err), 0);
  assert_memory_not_equal(a.pk, c.pk, sizeof a.pk);
  /* Text forms. */
  identity_hex(a.pk, hex);
  identity_short(a.pk, shorthex);
  assert_int_equal(strlen(hex), 64);
  assert_int_equal(strlen(shorthex), 12);
  assert_memory_equal(hex, shorthex, 12);
  uint8_t pk[32];
  assert_int_equal(identity_parse_hex(hex, pk), 0);
  assert_memory_equal(pk, a.pk, 32);
  char bad[80];
  snprintf(bad, sizeof bad, "%.63s", hex);
  assert_int_equal(identity_parse_hex(bad, pk), -EINVAL);
  snprintf(bad, sizeof bad, "%s0", hex);
  assert_int_equal(identity_parse_hex(bad, pk), -EINVAL);
  snprintf(bad, sizeof bad, "%.63sx", hex);
  assert_int_equal(identity_parse_hex(bad, pk), -EINVAL);
  /* A readable node key is refused, a damaged one too; neither is replaced. */
  assert_int_equal(chmod(p, 0644), 0);
  assert_int_equal(identity_load_or_create(&b, dir, err, sizeof err), -EPERM);
  assert_non_null(strstr(err, "chmod 600"));
  assert_int_equal(chmod(p, 0600), 0);
  FILE *f = fopen(p, "w");
  fputs("not a key\n", f);
  fclose(f);
  assert_int_equal(identity_load_or_create(&b, dir, err, sizeof err), -EINVAL);
  assert_non_null(strstr(err, "node.key"));
}

/* --- data dir --- */

static void test_datadir(void **state) {
  char out[512], err[512], p[600];
  char *saved[3];
  const char *names[3] = {"INFERMESH_DATA_DIR", "XDG_DATA_HOME", "HOME"};
  for (int i = 0; i < 3; i++)
    saved[i] = getenv(names[i]) ? strdup(getenv(names[i])) : NULL;
  /* INFERMESH_DATA_DIR is configuration, read by the agent's config and the CLI, not by this layer */
  setenv("INFERMESH_DATA_DIR", "/srv/im", 1);
  setenv("XDG_DATA_HOME", "/x/data", 1);
  setenv("HOME", "/home/u", 1);
  assert_int_equal(datadir_default(out, 4), -ENAMETOOLONG);
  assert_int_equal(datadir_default(out, sizeof out), 0);
  assert_string_not_equal(out, "/srv/im");
  if (geteuid() == 0) {
    assert_string_equal(out, "/var/lib/infermesh");
  } else {
    assert_string_equal(out, "/x/data/infermesh");
    setenv("XDG_DATA_HOME", "relative", 1); /* the XDG spec: relative values are ignored */
    assert_int_equal(datadir_default(out, sizeof out), 0);
    assert_string_equal(out, "/home/u/.local/share/infermesh");
    unsetenv("XDG_DATA_HOME");
    unsetenv("HOME");
    assert_int_equal(datadir_default(out, sizeof out), -ENOENT);
  }
  for (int i = 0; i < 3; i++) {
    if (saved[i])
      setenv(names[i], saved[i], 1);
    else
      unsetenv(names[i]);
    free(saved[i]);
  }
  /* A file in the way: the error names the path. */
  write_file("plain", "x", 0600);
  snprintf(p, sizeof p, "%s/plain/sub", tmpdir);
  assert_int_equal(datadir_ensure(p, err, sizeof err), -ENOTDIR);
  assert_non_null(strstr(err, p));
  assert_non_null(strstr(err, "--data-dir"));
  assert_int_equal(datadir_ensure("", err, sizeof err), -EINVAL);
  /* Trailing slashes and doubled slashes are fine. */
  snprintf(p, sizeof p, "%s//x/y/", tmpdir);
  assert_int_equal(datadir_ensure(p, err, sizeof err), 0);
  snprintf(p, sizeof p, "%s/x/y", tmpdir);
  assert_int_equal(mode_of(p), 0700);
  if (geteuid() != 0) { /* root may write anywhere */
    assert_int_equal(datadir_ensure("/proc/forbidden/x", err, sizeof err) < 0, 1);
    assert_non_null(strstr(err, "/proc/forbidden/x"));
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_seal_open_roundtrip),
      cmocka_unit_test(test_every_bit_flip_is_dropped),
      cmocka_unit_test(test_short_wrong_version_and_sizes),
      cmocka_unit_test(test_wrong_key_is_dropped),
      cmocka_unit_test(test_rotation),
      cmocka_unit_test(test_auth_tags),
      cmocka_unit_test(test_key_text_helpers),
      cmocka_unit_test_setup_teardown(test_create_load_save_modes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_create_refuses_overwrite, setup, teardown),
      cmocka_unit_test_setup_teardown(test_load_missing, setup, teardown),
      cmocka_unit_test_setup_teardown(test_world_readable_key_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_malformed_key_files, setup, teardown),
      cmocka_unit_test_setup_teardown(test_reload, setup, teardown),
      cmocka_unit_test_setup_teardown(test_identity_stable, setup, teardown),
      cmocka_unit_test_setup_teardown(test_datadir, setup, teardown),
  };
  if (sodium_init() < 0) return 1;
  return cmocka_run_group_tests(tests, NULL, NULL);
}
