/* The relay grid of compact load reports (placement only). */
#include "cluster/load_grid.h"

/* R = ceil(n / C) rows of C = ceil(sqrt(n)) columns at most, filled evenly: row r holds members
 * [r * n / R, (r + 1) * n / R), so row lengths differ by one at most (no short last row whose few members
 * would each relay to a large share of the mesh). */
struct place {
  int row, col, len; /* len: the length of the member's row */
};

static int nrows(int n) {
  int c = 1;
  while (c * c < n)
    c++;
  return (n + c - 1) / c;
}

static int row_start(int n, int rows, int r) { return (int)((long long)r * n / rows); }

static struct place place(int n, int k) {
  int rows = nrows(n), r = (int)((long long)k * rows / n);
  while (r + 1 < rows && row_start(n, rows, r + 1) <= k)
    r++;
  while (r > 0 && row_start(n, rows, r) > k)
    r--;
  int s = row_start(n, rows, r);
  return (struct place){r, k - s, row_start(n, rows, r + 1) - s};
}

bool load_grid_same_row(int n, int a, int b) { return a != b && place(n, a).row == place(n, b).row; }

bool load_grid_relays_to(int n, int r, int m) {
  struct place pr = place(n, r), pm = place(n, m);
  return pm.row != pr.row && pm.col % pr.len == pr.col;
}
