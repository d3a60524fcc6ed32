/* Data dir: the default location and mkdir -p with private permissions. */
#include "cluster/datadir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/slice.h"

static int fit(char *out, size_t cap, int n) {
  if (n < 0 || (size_t)n >= cap) {
    if (cap) out[0] = '\0';
    return -ENAMETOOLONG;
  }
  return 0;
}

int datadir_default(char *out, size_t cap) {
  if (!out || cap == 0) return -EINVAL;
  out[0] = '\0';
  if (geteuid() == 0) return fit(out, cap, snprintf(out, cap, "/var/lib/infermesh"));
  const char *xdg = getenv("XDG_DATA_HOME");
  if (xdg && xdg[0] == '/') return fit(out, cap, snprintf(out, cap, "%s/infermesh", xdg));
  const char *home = getenv("HOME");
  if (home && *home) return fit(out, cap, snprintf(out, cap, "%s/.local/share/infermesh", home));
  return -ENOENT;
}

int datadir_path(char *out, size_t cap, const char *dir, const char *name) {
  size_t dl = strlen(dir);
  while (dl > 1 && dir[dl - 1] == '/')
    dl--; /* "dir/" and "dir" name the same files */
  return fit(out, cap, snprintf(out, cap, "%.*s/%s", (int)dl, dir, name));
}

/* mkdir_one creates path (0700) unless a directory is already there. */
static int mkdir_one(const char *path, const char *whole, char *err, size_t errlen) {
  if (mkdir(path, 0700) == 0) return 0;
  int e = errno;
  struct stat st;
  if (e == EEXIST) {
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return 0;
    snprintf(err, errlen, "cannot create data dir %s: %s exists and is not a directory (pass --data-dir DIR)",
             whole, path);
    return -ENOTDIR;
  }
  if (e == EACCES || e == EPERM || e == EROFS)
    snprintf(
        err, errlen,
        "cannot create data dir %s: %s: %s (pass --data-dir DIR, or set INFERMESH_DATA_DIR, to a place you "
        "can write)",
        whole, path, strerror(e));
  else
    snprintf(err, errlen, "cannot create data dir %s: %s: %s", whole, path, strerror(e));
  return -e;
}

int datadir_ensure(const char *dir, char *err, size_t errlen) {
  char tmp[4096];
  if (errlen) err[0] = '\0';
  if (!dir || !*dir) {
    snprintf(err, errlen, "empty data dir: pass --data-dir DIR");
    return -EINVAL;
  }
  if (strlen(dir) >= sizeof tmp) {
    snprintf(err, errlen, "data dir path is too long (%zu bytes)", strlen(dir));
    return -ENAMETOOLONG;
  }
  str_copy(tmp, sizeof tmp, dir);
  /* Each prefix ending before a '/' is a parent; the whole path last. */
  for (char *p = tmp + 1; *p; p++) {
    if (*p != '/') continue;
    if (p[-1] == '/') continue; /* "a//b" */
    *p = '\0';
    int rc = mkdir_one(tmp, dir, err, errlen);
    *p = '/';
    if (rc != 0) return rc;
  }
  return mkdir_one(tmp, dir, err, errlen);
}

int datadir_read_file(const char *path, char *buf, size_t cap, size_t *len, int private_, char *err,
                      size_t errlen) {
  if (errlen) err[0] = '\0';
  *len = 0;
  if (cap == 0) return -EINVAL;
  buf[0] = '\0';
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    int e = errno;
    if (e != ENOENT) snprintf(err, errlen, "cannot open %s: %s", path, strerror(e));
    return -e;
  }
  struct stat st;
  int rc = 0;
  if (fstat(fd, &st) != 0) {
    rc = -errno;
    snprintf(err, errlen, "cannot stat %s: %s", path, strerror(-rc));
  } else if (!S_ISREG(st.st_mode)) {
    rc = -EINVAL;
    snprintf(err, errlen, "%s is not a regular file", path);
  } else if (private_ && (st.st_mode & 077)) {
    rc = -EPERM;
    snprintf(
        err, errlen,
        "%s is accessible by group or others (mode %04o): it holds a secret; run `chmod 600 %s` (and check "
        "that nobody else copied it)",
        path, (unsigned)(st.st_mode & 07777), path);
  } else if ((uint64_t)st.st_size > cap - 1) {
    rc = -EFBIG;
    snprintf(err, errlen, "%s is too large (%lld bytes) to be an infermesh data file", path,
             (long long)st.st_size);
  }
  size_t n = 0;
  while (rc == 0) {
    ssize_t r = read(fd, buf + n, cap - 1 - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      rc = -errno;
      snprintf(err, errlen, "cannot read %s: %s", path, strerror(-rc));
      break;
    }
    if (r == 0) break;
    n += (size_t)r;
    if (n == cap - 1) { /* grew since fstat: one more byte means too large */
      char extra;
      ssize_t more = read(fd, &extra, 1);
      if (more > 0) {
        rc = -EFBIG;
        snprintf(err, errlen, "%s is too large to be an infermesh data file", path);
      }
      break;
    }
  }
  close(fd);
  if (rc != 0) n = 0;
  buf[n] = '\0';
  *len = n;
  return rc;
}

static int write_all(int fd, const void *data, size_t len) {
  const char *p = data;
  while (len > 0) {
    ssize_t w = write(fd, p, len);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return -errno;
    p += w;
    len -= (size_t)w;
  }
  return 0;
}

static void fsync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  (void)fsync(fd); /* best effort: some filesystems refuse fsync on directories */
  close(fd);
}

/* rename_noreplace moves from to `to` unless `to` exists (-EEXIST). Falls back to link+unlink where the
 * filesystem does not support RENAME_NOREPLACE. */
static int rename_noreplace(const char *from, const char *to) {
  if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0) return 0;
  if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP) return -errno;
  if (link(from, to) != 0) return -errno;
  unlink(from);
  return 0;
}

int datadir_write_private(const char *dir, const char *name, const void *data, size_t len, int replace,
                          char *err, size_t errlen) {
  char path[4096], tmp[4096], tmpname[256];
  if (errlen) err[0] = '\0';
  snprintf(tmpname, sizeof tmpname, ".%s.tmp.%ld", name, (long)getpid());
  if (datadir_path(path, sizeof path, dir, name) != 0 || datadir_path(tmp, sizeof tmp, dir, tmpname) != 0) {
    snprintf(err, errlen, "data dir path is too long: %s", dir);
    return -ENAMETOOLONG;
  }
  unlink(tmp); /* left over by a crashed writer with our pid */
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0600);
  if (fd < 0) {
    int e = errno;
    snprintf(err, errlen, "cannot write %s: %s%s", tmp, strerror(e),
             e == ENOENT ? " (does the data dir exist?)" : "");
    return -e;
  }
  int rc = 0;
  if (fchmod(fd, 0600) != 0) rc = -errno; /* the umask can only narrow 0600, but be explicit */
  if (rc == 0) rc = write_all(fd, data, len);
  if (rc == 0 && fsync(fd) != 0) rc = -errno;
  if (close(fd) != 0 && rc == 0) rc = -errno;
  if (rc != 0) {
    snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(-rc));
    unlink(tmp);
    return rc;
  }
  if (replace) {
    if (rename(tmp, path) != 0) rc = -errno;
  } else {
    rc = rename_noreplace(tmp, path);
  }
  if (rc != 0) {
    if (rc == -EEXIST)
      snprintf(err, errlen, "%s already exists", path);
    else
      snprintf(err, errlen, "cannot create %s: %s", path, strerror(-rc));
    unlink(tmp);
    return rc;
  }
  fsync_dir(dir);
  return 0;
}
