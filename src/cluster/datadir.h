/* The node's data dir: where the cluster key, cluster id and node identity live (and, later, the ledger). */
#ifndef IM_CLUSTER_DATADIR_H
#define IM_CLUSTER_DATADIR_H

#include <stddef.h>

/* datadir_default writes the default data dir into out (capacity cap): /var/lib/infermesh when the effective
 * uid is 0, else $XDG_DATA_HOME/infermesh (only when it is an absolute path, as the XDG spec asks), else
 * $HOME/.local/share/infermesh. INFERMESH_DATA_DIR is the caller's to read (the agent's configuration, the
 * CLI's flags): this layer reads no infermesh setting. Reads the environment only; creates nothing. Returns 0, -ENOENT when none applies (no HOME) or -ENAMETOOLONG when the path does not
 * fit. */
int datadir_default(char *out, size_t cap);

/* datadir_ensure creates dir and its missing parents (mode 0700, like mkdir -p; existing directories are left
 * as they are). Returns 0, or a negative errno with a message naming the path and the fix in err (errlen >
 * 0). */
int datadir_ensure(const char *dir, char *err, size_t errlen);

/* datadir_path joins dir and a file name into out; 0 or -ENAMETOOLONG. */
int datadir_path(char *out, size_t cap, const char *dir, const char *name);

/* datadir_read_file reads the small file `path` into buf (capacity cap; the content is followed by a NUL, so
 * at most cap - 1 bytes) and sets *len. With private_ set, and like ssh with its keys, it refuses a file that
 * group or others may access (-EPERM, "... run `chmod 600 PATH`"). It refuses one that is not a regular file
 * (-EINVAL) or is larger than cap - 1 (-EFBIG). Returns 0, -ENOENT when the file does not exist, or another
 * negative errno; each failure but -ENOENT writes a message naming the path into err. The caller owns buf and
 * wipes it when it held a secret. */
int datadir_read_file(const char *path, char *buf, size_t cap, size_t *len, int private_, char *err,
                      size_t errlen);

/* datadir_write_private writes len bytes of data as dir/name atomically: a temporary file in dir (mode 0600),
 * fsync, then a rename over name (replace = true) or a rename that fails with -EEXIST when name already
 * exists (replace = false: two concurrent writers cannot both win), then fsync of dir. The file never exists
 * half-written or with a wider mode. Returns 0 or a negative errno with a message naming the path in err. */
int datadir_write_private(const char *dir, const char *name, const void *data, size_t len, int replace,
                          char *err, size_t errlen);

#endif
