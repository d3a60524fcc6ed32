/* `infermesh init`, `infermesh invite` and `infermesh keyring`: the cluster secret in the local data dir. */
#include "cli/cluster_cmds.h"

#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cluster/datadir.h"
#include "cluster/identity.h"
#include "cluster/invite.h"
#include "cluster/keyring.h"
#include "core/slice.h"

#define DEFAULT_SEED "127.0.0.1:7946"
#define DEFAULT_TTL_S (24 * 3600)
#define MAX_TTL_S (10LL * 365 * 24 * 3600)
#define NODE_NAME_FILE "node.name"

static const char data_dir_help[] =
    "  --data-dir DIR  the node's data dir (INFERMESH_DATA_DIR; default /var/lib/infermesh as root, else\n"
    "                  $XDG_DATA_HOME/infermesh or ~/.local/share/infermesh)\n";

/* --- shared helpers --- */

/* opt_value matches "--name VALUE" and "--name=VALUE" at argv[*i]; advances *i past a separate value.
 * Returns the value, NULL when argv[*i] is another option, and sets *missing when the value is absent. */
static const char *opt_value(int argc, char **argv, int *i, const char *name, bool *missing) {
  size_t n = strlen(name);
  if (strncmp(argv[*i], name, n) != 0) return NULL;
  if (argv[*i][n] == '=') return argv[*i] + n + 1;
  if (argv[*i][n] != '\0') return NULL;
  if (*i + 1 >= argc) {
    *missing = true;
    return NULL;
  }
  return argv[++*i];
}

static bool is_help(const char *a) { return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0; }

/* resolve_dir picks the data dir: the flag, else INFERMESH_DATA_DIR, else the default. Prints the error itself. */
static bool resolve_dir(const char *cmd, const char *given, char *out, size_t cap) {
  const char *env = getenv("INFERMESH_DATA_DIR");
  if (!given && env && *env) given = env;
  if (given) {
    if (!*given) {
      fprintf(stderr, "infermesh %s: --data-dir is empty\n", cmd);
      return false;
    }
    if (str_copy(out, cap, given) >= cap) {
      fprintf(stderr, "infermesh %s: --data-dir path is too long\n", cmd);
      return false;
    }
    return true;
  }
  int rc = datadir_default(out, cap);
  if (rc == -ENOENT)
    fprintf(stderr,
            "infermesh %s: no data dir: HOME is not set; pass --data-dir DIR or set INFERMESH_DATA_DIR\n",
            cmd);
  else if (rc != 0)
    fprintf(stderr, "infermesh %s: the default data dir path is too long: pass --data-dir DIR\n", cmd);
  return rc == 0;
}

static void fmt_time(int64_t t, char *out, size_t cap) {
  struct tm tm;
  time_t tt = (time_t)t;
  if (!gmtime_r(&tt, &tm) || strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
    snprintf(out, cap, "%lld", (long long)t);
}

static void fmt_duration(int64_t s, char *out, size_t cap) {
  if (s % 86400 == 0)
    snprintf(out, cap, "%lldd", (long long)(s / 86400));
  else if (s % 3600 == 0)
    snprintf(out, cap, "%lldh", (long long)(s / 3600));
  else if (s % 60 == 0)
    snprintf(out, cap, "%lldm", (long long)(s / 60));
  else
    snprintf(out, cap, "%llds", (long long)s);
}

/* --- init --- */

static void init_usage(FILE *f) {
  fprintf(f,
          "usage: infermesh init [--data-dir DIR] [--name NAME]\n\n"
          "Creates a new cluster: a random cluster key (the secret every member holds) and cluster id in\n"
          "DIR/cluster.key and DIR/cluster.id, and this node's identity (an ed25519 key) in DIR/node.key,\n"
          "all mode 0600 in a 0700 directory. Run it once, on the first node; other nodes join with a token\n"
          "from `infermesh invite`. Refuses to touch a data dir that already holds a cluster key.\n\n"
          "%s"
          "  --name NAME     this node's name (letters, digits, '.', '-', '_'), kept in DIR/" NODE_NAME_FILE
          "\n\n"
          "exit codes: 0 ok, 1 failure (a cluster key exists, the data dir cannot be written), 2 bad usage\n",
          data_dir_help);
}

static bool valid_name(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 63) return false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '-' || c == '_'))
      return false;
  }
  return true;
}

int init_main(int argc, char **argv) {
  const char *dir_arg = NULL, *name = NULL;
  for (int i = 0; i < argc; i++) {
    bool missing = false;
    const char *v;
    if (is_help(argv[i])) {
      init_usage(stdout);
      return 0;
    } else if ((v = opt_value(argc, argv, &i, "--data-dir", &missing))) {
      dir_arg = v;
    } else if ((v = opt_value(argc, argv, &i, "--name", &missing))) {
      name = v;
    } else {
      if (missing)
        fprintf(stderr, "infermesh init: %s needs a value\n\n", argv[i]);
      else
        fprintf(stderr, "infermesh init: unexpected argument '%s'\n\n", argv[i]);
      init_usage(stderr);
      return 2;
    }
  }
  if (name && !valid_name(name)) {
    fprintf(stderr, "infermesh init: bad --name '%s': use 1 to 63 letters, digits, '.', '-' or '_'\n", name);
    return 2;
  }
  char dir[4096], err[512];
  if (!resolve_dir("init", dir_arg, dir, sizeof dir)) return 1;
  if (sodium_init() < 0) {
    fprintf(stderr, "infermesh init: libsodium failed to initialize (no randomness source?)\n");
    return 1;
  }
  if (datadir_ensure(dir, err, sizeof err) != 0) {
    fprintf(stderr, "infermesh init: %s\n", err);
    return 1;
  }
  int rc = keyring_create(dir, err, sizeof err);
  if (rc != 0) {
    fprintf(stderr, "infermesh init: %s\n", err);
    return 1;
  }
  struct keyring kr;
  struct identity id;
  if (keyring_load(&kr, dir, err, sizeof err) != 0 ||
      identity_load_or_create(&id, dir, err, sizeof err) != 0) {
    fprintf(stderr, "infermesh init: %s\n", err);
    return 1;
  }
  if (name) {
    char line[80];
    int n = snprintf(line, sizeof line, "%s\n", name);
    if (datadir_write_private(dir, NODE_NAME_FILE, line, (size_t)n, 1, err, sizeof err) != 0) {
      fprintf(stderr, "infermesh init: %s\n", err);
      keyring_wipe(&kr);
      identity_wipe(&id);
      return 1;
    }
  }
  char cid[2 * KEYRING_ID_LEN + 1], nid[13];
  keyring_id_hex(kr.cluster_id, cid);
  identity_short(id.pk, nid);
  keyring_wipe(&kr);
  identity_wipe(&id);
  printf("initialized a new cluster\n"
         "  cluster id: %s\n"
         "  node id:    %s%s%s%s\n"
         "  data dir:   %s\n\n"
         "next: start an agent with `infermesh agent --data-dir %s%s%s`; add nodes with `infermesh invite`\n",
         cid, nid, name ? " (" : "", name ? name : "", name ? ")" : "", dir, dir, name ? " --name " : "",
         name ? name : "");
  return 0;
}

/* --- invite --- */

static void invite_usage(FILE *f) {
  fprintf(
      f,
      "usage: infermesh invite [--data-dir DIR] [--seed HOST:PORT]... [--ttl DURATION] [--json]\n\n"
      "Prints an invite token for the cluster of DIR. A new node joins with it\n"
      "(`infermesh agent --join TOKEN`): it proves the token to a seed, which sends it the cluster keyring\n"
      "encrypted under the token's join secret. The token does not contain the cluster key, but anyone\n"
      "holding it can join until it expires: treat it as a secret. Removing the key it was made with\n"
      "(`infermesh keyring remove`) revokes it early.\n\n"
      "%s"
      "  --seed HOST:PORT  gossip address of a running member the new node can reach (repeatable, up to %d;\n"
      "                    default " DEFAULT_SEED ", this machine's default gossip port)\n"
      "  --ttl DURATION    how long the token is valid: e.g. 90s, 30m, 24h, 7d (default 24h; 0 = never)\n"
      "  --json            print {token, cluster_id, seeds, expires_at} as JSON (expires_at: unix seconds\n"
      "                    or null)\n\n"
      "exit codes: 0 ok, 1 failure (no cluster key in DIR...), 2 bad usage\n",
      data_dir_help, INVITE_MAX_SEEDS);
}

/* parse_ttl reads "0", "N" (seconds) or N followed by s, m, h or d. */
static bool parse_ttl(const char *s, int64_t *out) {
  size_t n = strlen(s);
  if (n == 0 || n > 12) return false;
  int64_t mult = 1;
  switch (s[n - 1]) {
  case 's':
    mult = 1;
    n--;
    break;
  case 'm':
    mult = 60;
    n--;
    break;
  case 'h':
    mult = 3600;
    n--;
    break;
  case 'd':
    mult = 86400;
    n--;
    break;
  default: break;
  }
  uint64_t v;
  if (n == 0 || slice_to_u64(slice_make(s, n), &v) != 0 || v > (uint64_t)(MAX_TTL_S / mult)) return false;
  *out = (int64_t)v * mult;
  return true;
}

int invite_main(int argc, char **argv) {
  const char *dir_arg = NULL, *seeds[INVITE_MAX_SEEDS];
  int nseeds = 0;
  int64_t ttl = DEFAULT_TTL_S;
  bool as_json = false;
  for (int i = 0; i < argc; i++) {
    bool missing = false;
    const char *v;
    if (is_help(argv[i])) {
      invite_usage(stdout);
      return 0;
    } else if (strcmp(argv[i], "--json") == 0) {
      as_json = true;
    } else if ((v = opt_value(argc, argv, &i, "--data-dir", &missing))) {
      dir_arg = v;
    } else if ((v = opt_value(argc, argv, &i, "--seed", &missing))) {
      if (!invite_valid_seed(v)) {
        fprintf(stderr,
                "infermesh invite: bad --seed '%s': expected HOST:PORT of a member's gossip port, e.g. "
                "10.0.0.2:7946 or [fd00::2]:7946\n",
                v);
        return 2;
      }
      if (nseeds == INVITE_MAX_SEEDS) {
        fprintf(stderr, "infermesh invite: at most %d --seed addresses fit in a token\n", INVITE_MAX_SEEDS);
        return 2;
      }
      seeds[nseeds++] = v;
    } else if ((v = opt_value(argc, argv, &i, "--ttl", &missing))) {
      if (!parse_ttl(v, &ttl)) {
        fprintf(stderr,
                "infermesh invite: bad --ttl '%s': use a duration such as 90s, 30m, 24h or 7d (at most "
                "3650d), or 0 for a token that never expires\n",
                v);
        return 2;
      }
    } else {
      if (missing)
        fprintf(stderr, "infermesh invite: %s needs a value\n\n", argv[i]);
      else
        fprintf(stderr, "infermesh invite: unexpected argument '%s'\n\n", argv[i]);
      invite_usage(stderr);
      return 2;
    }
  }
  char dir[4096], err[512];
  if (!resolve_dir("invite", dir_arg, dir, sizeof dir)) return 1;
  struct keyring kr;
  if (keyring_load(&kr, dir, err, sizeof err) != 0) {
    fprintf(stderr, "infermesh invite: %s\n", err);
    return 1;
  }
  if (nseeds == 0) {
    seeds[nseeds++] = DEFAULT_SEED;
    fprintf(
        stderr,
        "infermesh invite: no --seed given: the token points at " DEFAULT_SEED " (the default gossip "
        "port on this machine), which only a node on this machine can reach; pass --seed HOST:PORT with an "
        "address the new node can reach\n");
  }
  int64_t now = (int64_t)time(NULL), expiry = ttl ? now + ttl : 0;
  char token[INVITE_TOKEN_MAX + 1], cid[2 * KEYRING_ID_LEN + 1];
  int n = invite_create(&kr, seeds, nseeds, expiry, token, sizeof token);
  keyring_id_hex(kr.cluster_id, cid);
  keyring_wipe(&kr);
  if (n < 0) {
    fprintf(stderr, "infermesh invite: cannot make a token: %s\n", strerror(-n));
    return 1;
  }
  char when[64] = "never", dur[32] = "";
  if (expiry) {
    fmt_time(expiry, when, sizeof when);
    fmt_duration(ttl, dur, sizeof dur);
  }
  if (as_json) {
    json_t *j = json_object(), *s = json_array();
    for (int i = 0; i < nseeds; i++)
      json_array_append_new(s, json_string(seeds[i]));
    json_object_set_new(j, "token", json_string(token));
    json_object_set_new(j, "cluster_id", json_string(cid));
    json_object_set_new(j, "seeds", s);
    json_object_set_new(j, "expires_at", expiry ? json_integer(expiry) : json_null());
    char *txt = json_dumps(j, JSON_INDENT(2));
    printf("%s\n", txt ? txt : "{}");
    if (txt) {
      sodium_memzero(txt, strlen(txt));
      free(txt);
    }
    json_decref(j);
  } else {
    printf("%s\n", token);
    if (expiry)
      fprintf(stderr,
              "invite for cluster %s, valid for %s (until %s); on the new node: infermesh agent --join "
              "TOKEN\n",
              cid, dur, when);
    else
      fprintf(stderr,
              "invite for cluster %s, never expires (revoke it by rotating the key: infermesh keyring "
              "--help); on the new node: infermesh agent --join TOKEN\n",
              cid);
  }
  sodium_memzero(token, sizeof token);
  return 0;
}

/* --- keyring --- */

static void keyring_usage(FILE *f) {
  fprintf(
      f,
      "usage: infermesh keyring list|install KEY|use KEY|remove KEY|generate [--data-dir DIR] [--json]\n\n"
      "The cluster keyring in DIR/cluster.key: every key opens gossip and agent-to-agent traffic, the\n"
      "primary key also seals it. Rotate without downtime:\n"
      "  1. infermesh keyring generate                 prints a new random key (the only command that\n"
      "                                                prints a key: keep it secret)\n"
      "  2. infermesh keyring install KEY              on every node: the key opens traffic\n"
      "  3. infermesh keyring use KEY                  on every node: the key seals traffic\n"
      "  4. infermesh keyring remove OLD               on every node: the old key is gone, and with it "
      "every\n"
      "                                                invite token made with it\n"
      "A running agent rereads the keyring on SIGHUP (kill -HUP PID): signal it after each step.\n\n"
      "  list            the keys' fingerprints (first 8 hex characters of a hash; never the key), primary\n"
      "                  first; --json for JSON\n"
      "  install KEY     add KEY (64 hex characters; - reads it from stdin) as a secondary key\n"
      "  use KEY         make an installed key the primary; KEY may be its fingerprint\n"
      "  remove KEY      remove an installed secondary key; KEY may be its fingerprint. The primary key\n"
      "                  cannot be removed: `use` another first\n"
      "  generate        print a new random key\n"
      "%s\n"
      "exit codes: 0 ok, 1 failure (no keyring, key not installed, removing the primary...), 2 bad usage\n",
      data_dir_help);
}

static bool is_hex(const char *s, size_t n) {
  if (strlen(s) != n) return false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) return false;
  }
  return true;
}

/* resolve_key finds the key named by arg (a key, or the fingerprint of an installed key when allow_fp) into
 * key. Returns 0, 1 (not installed: message printed) or 2 (malformed: message printed). */
static int resolve_key(const struct keyring *kr, const char *arg, bool allow_fp,
                       uint8_t key[KEYRING_KEY_LEN]) {
  if (keyring_parse_key(arg, key) == 0) return 0;
  if (allow_fp && is_hex(arg, KEYRING_FP_LEN)) {
    int hit = -1, nhits = 0;
    for (int i = 0; i < kr->nkeys; i++) {
      char fp[KEYRING_FP_LEN + 1];
      keyring_fingerprint(kr->keys[i], fp);
      if (strncasecmp(fp, arg, KEYRING_FP_LEN) == 0) {
        hit = i;
        nhits++;
      }
    }
    if (nhits == 1) {
      memcpy(key, kr->keys[hit], KEYRING_KEY_LEN);
      return 0;
    }
    if (nhits == 0) {
      fprintf(stderr,
              "infermesh keyring: no installed key has fingerprint %s (see `infermesh keyring list`)\n", arg);
      return 1;
    }
    fprintf(stderr, "infermesh keyring: fingerprint %s matches %d keys: give the whole key\n", arg, nhits);
    return 1;
  }
  /* Not echoed: a nearly-right argument is nearly a key. */
  fprintf(stderr,
          "infermesh keyring: KEY is not a key: a key is 64 hex characters, as printed by `infermesh keyring "
          "generate`%s\n",
          allow_fp ? " (or give an installed key's 8-character fingerprint)" : "");
  return 2;
}

static int keyring_list(const struct keyring *kr, bool as_json) {
  char cid[2 * KEYRING_ID_LEN + 1], fp[KEYRING_FP_LEN + 1];
  keyring_id_hex(kr->cluster_id, cid);
  if (as_json) {
    json_t *j = json_object(), *keys = json_array();
    for (int i = 0; i < kr->nkeys; i++) {
      keyring_fingerprint(kr->keys[i], fp);
      json_array_append_new(keys, json_pack("{s:s, s:b}", "fingerprint", fp, "primary", i == 0));
    }
    json_object_set_new(j, "cluster_id", json_string(cid));
    json_object_set_new(j, "keys", keys);
    char *txt = json_dumps(j, JSON_INDENT(2));
    printf("%s\n", txt ? txt : "{}");
    free(txt);
    json_decref(j);
    return 0;
  }
  printf("cluster %s: %d key%s\n", cid, kr->nkeys, kr->nkeys == 1 ? "" : "s");
  for (int i = 0; i < kr->nkeys; i++) {
    keyring_fingerprint(kr->keys[i], fp);
    printf("  %s  %s\n", fp, i == 0 ? "primary (seals and opens)" : "secondary (opens)");
  }
  return 0;
}

static int save_or_fail(const struct keyring *kr, const char *dir) {
  char err[512];
  if (keyring_save(kr, dir, err, sizeof err) != 0) {
    fprintf(stderr, "infermesh keyring: %s\n", err);
    return 1;
  }
  return 0;
}

int keyring_main(int argc, char **argv) {
  const char *dir_arg = NULL, *sub = NULL, *arg = NULL;
  bool as_json = false;
  for (int i = 0; i < argc; i++) {
    bool missing = false;
    const char *v;
    if (is_help(argv[i])) {
      keyring_usage(stdout);
      return 0;
    } else if (strcmp(argv[i], "--json") == 0) {
      as_json = true;
    } else if ((v = opt_value(argc, argv, &i, "--data-dir", &missing))) {
      dir_arg = v;
    } else if (missing || (argv[i][0] == '-' && strcmp(argv[i], "-") != 0) || (sub && arg)) {
      if (missing)
        fprintf(stderr, "infermesh keyring: %s needs a value\n\n", argv[i]);
      else if (argv[i][0] == '-')
        fprintf(stderr, "infermesh keyring: unknown option '%s'\n\n", argv[i]);
      else /* not echoed: it may be a key */
        fprintf(stderr, "infermesh keyring: too many arguments (argument %d is unexpected)\n\n", i + 1);
      keyring_usage(stderr);
      return 2;
    } else if (!sub) {
      sub = argv[i];
    } else {
      arg = argv[i];
    }
  }
  if (!sub) {
    fprintf(stderr, "infermesh keyring: which one: list, install, use, remove or generate?\n\n");
    keyring_usage(stderr);
    return 2;
  }
  bool takes_key = strcmp(sub, "install") == 0 || strcmp(sub, "use") == 0 || strcmp(sub, "remove") == 0;
  if (!takes_key && strcmp(sub, "list") != 0 && strcmp(sub, "generate") != 0) {
    fprintf(stderr, "infermesh keyring: unknown subcommand '%s' (list, install, use, remove or generate)\n\n",
            sub);
    keyring_usage(stderr);
    return 2;
  }
  if (takes_key && !arg) {
    fprintf(stderr, "infermesh keyring %s: needs KEY\n", sub);
    return 2;
  }
  if (!takes_key && arg) {
    fprintf(stderr, "infermesh keyring %s: unexpected argument\n", sub);
    return 2;
  }
  if (sodium_init() < 0) {
    fprintf(stderr, "infermesh keyring: libsodium failed to initialize\n");
    return 1;
  }
  if (strcmp(sub, "generate") == 0) {
    uint8_t key[KEYRING_KEY_LEN];
    char hex[2 * KEYRING_KEY_LEN + 1];
    keyring_generate(key);
    keyring_key_hex(key, hex);
    printf("%s\n", hex);
    sodium_memzero(key, sizeof key);
    sodium_memzero(hex, sizeof hex);
    return 0;
  }
  /* KEY "-": read it from stdin, so it stays out of the shell history and the process list. */
  char line[256] = "", dir[4096], err[512];
  uint8_t key[KEYRING_KEY_LEN] = {0};
  struct keyring kr = {.nkeys = 0};
  int code = 0;
  if (takes_key && strcmp(arg, "-") == 0) {
    if (!fgets(line, sizeof line, stdin)) {
      fprintf(stderr, "infermesh keyring %s: no key on stdin\n", sub);
      return 2;
    }
    arg = line;
  }
  /* A malformed KEY is bad usage whatever the data dir holds. */
  if (takes_key && keyring_parse_key(arg, key) != 0 &&
      (strcmp(sub, "install") == 0 || !is_hex(arg, KEYRING_FP_LEN))) {
    code = resolve_key(&kr, arg, strcmp(sub, "install") != 0, key);
    goto out;
  }
  if (!resolve_dir("keyring", dir_arg, dir, sizeof dir)) {
    code = 1;
    goto out;
  }
  if (keyring_load(&kr, dir, err, sizeof err) != 0) {
    fprintf(stderr, "infermesh keyring: %s\n", err);
    code = 1;
    goto out;
  }
  char fp[KEYRING_FP_LEN + 1];
  if (strcmp(sub, "list") == 0) {
    code = keyring_list(&kr, as_json);
  } else if ((code = resolve_key(&kr, arg, strcmp(sub, "install") != 0, key)) != 0) {
    /* message printed */
  } else if (strcmp(sub, "install") == 0) {
    keyring_fingerprint(key, fp);
    int rc = keyring_install(&kr, key);
    if (rc == -EEXIST) {
      printf("key %s is already installed\n", fp);
    } else if (rc == -ENOSPC) {
      fprintf(stderr,
              "infermesh keyring: the keyring is full (%d keys): remove a key no node uses any more first\n",
              KEYRING_MAX);
      code = 1;
    } else if ((code = save_or_fail(&kr, dir)) == 0) {
      printf("installed key %s as a secondary key (it opens traffic). Install it on every node, then make it "
             "the "
             "primary everywhere with `infermesh keyring use %s`; signal running agents with SIGHUP\n",
             fp, fp);
    }
  } else if (strcmp(sub, "use") == 0) {
    keyring_fingerprint(key, fp);
    int idx = keyring_find(&kr, key);
    if (idx == 0) {
      printf("key %s is already the primary key\n", fp);
    } else if (idx < 0) {
      fprintf(stderr,
              "infermesh keyring: key %s is not installed: run `infermesh keyring install KEY` first (on "
              "every node)\n",
              fp);
      code = 1;
    } else {
      char old[KEYRING_FP_LEN + 1];
      keyring_fingerprint(kr.keys[0], old);
      keyring_use(&kr, key);
      if ((code = save_or_fail(&kr, dir)) == 0)
        printf(
            "key %s is now the primary key (it seals traffic); %s stays installed. Once every node uses %s, "
            "remove the old key with `infermesh keyring remove %s`; signal running agents with SIGHUP\n",
            fp, old, fp, old);
    }
  } else {
    keyring_fingerprint(key, fp);
    int rc = keyring_remove(&kr, key);
    if (rc == -ENOENT) {
      fprintf(stderr, "infermesh keyring: key %s is not installed (see `infermesh keyring list`)\n", fp);
      code = 1;
    } else if (rc == -EBUSY) {
      fprintf(stderr,
              "infermesh keyring: key %s is the primary key%s: make another key the primary first "
              "(`infermesh keyring use KEY`)\n",
              fp, kr.nkeys == 1 ? " and the only one" : "");
      code = 1;
    } else if ((code = save_or_fail(&kr, dir)) == 0) {
      printf("removed key %s; invite tokens made with it no longer work. Signal running agents with SIGHUP\n",
             fp);
    }
  }
out:
  sodium_memzero(key, sizeof key);
  sodium_memzero(line, sizeof line);
  keyring_wipe(&kr);
  return code;
}
