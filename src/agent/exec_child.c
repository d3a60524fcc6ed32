/* `infermesh _exec-child`: the small process that holds a supervised runtime's process group together. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/supervisor.h"

/* The helper leads the runtime's process group and forks the command in it. Why not exec the command
 * directly: PR_SET_PDEATHSIG is per process and not inherited by forks, so a shell's or a runtime's own
 * children would survive a SIGKILLed agent. The helper instead gets PARENT_DEATH_SIG when the agent dies and
 * SIGKILLs the whole group. It is also a child subreaper: whatever the command starts and leaves behind, even
 * in a session or group of its own (setsid), becomes the helper's child, so when the command exits or the
 * agent dies the helper kills and reaps those too (sweep) before it exits. It forwards
 * SIGTERM/SIGINT/SIGHUP/SIGQUIT/SIGUSR1 it receives to the group and exits the way the command did (same
 * status, or the same signal). */
#define PARENT_DEATH_SIG SIGUSR2
#define SWEEP_MS 2000 /* the longest the helper waits for what it killed to be reaped */

/* kill_children SIGKILLs every process whose parent is us (found in /proc). */
static void kill_children(pid_t self) {
  DIR *d = opendir("/proc");
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d))) {
    char *end, path[64], buf[512];
    long pid = strtol(e->d_name, &end, 10);
    if (*end || pid <= 0) continue;
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) continue;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *rp = strrchr(buf, ')'); /* "pid (comm) state ppid ...": comm may hold anything but ends at the last ) */
    int ppid;
    if (rp && sscanf(rp + 1, " %*c %d", &ppid) == 1 && ppid == self) kill((pid_t)pid, SIGKILL);
  }
  closedir(d);
}

/* sweep kills and reaps every descendant, for at most SWEEP_MS: our children die, theirs become ours (we are
 * a subreaper), the next round kills those. Not a kill of our group: that would take us with it before we
 * could exit the way the command did. */
static void sweep(pid_t self) {
  for (int i = 0; i < SWEEP_MS / 20; i++) {
    kill_children(self);
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    if (waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD) return;
    usleep(20000);
  }
}

static void exit_like(int st) {
  if (WIFEXITED(st)) _exit(WEXITSTATUS(st));
  int sig = WIFSIGNALED(st) ? WTERMSIG(st) : SIGKILL;
  prctl(PR_SET_PDEATHSIG, 0);
  signal(sig, SIG_DFL);
  sigset_t one;
  sigemptyset(&one);
  sigaddset(&one, sig);
  sigprocmask(SIG_UNBLOCK, &one, NULL);
  raise(sig);
  _exit(128 + sig);
}

int exec_child_main(int argc, char **argv) {
  char *end;
  if (argc < 3 || strcmp(argv[1], "--") != 0) {
    fprintf(stderr, "usage: infermesh _exec-child PARENT_PID -- COMMAND [ARGS...]\n");
    return 127;
  }
  long want = strtol(argv[0], &end, 10);
  if (*end || want < 1) { /* 1: the agent is a container's init */
    fprintf(stderr, "infermesh _exec-child: bad parent pid '%s'\n", argv[0]);
    return 127;
  }
  sigset_t set, old;
  sigemptyset(&set);
  int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, PARENT_DEATH_SIG, SIGCHLD};
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
    sigaddset(&set, sigs[i]);
  sigprocmask(SIG_BLOCK, &set, &old);
  /* What the agent inherited from whoever started it (a launcher's pipe, say) is not the runtime's to hold. */
  close_range(3, ~0u, 0);
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  prctl(PR_SET_PDEATHSIG, PARENT_DEATH_SIG);
  if ((long)getppid() != want) _exit(127);  /* the agent died before prctl took effect */
  if (getpgrp() != getpid()) setpgid(0, 0); /* normally a session leader already (uv_spawn DETACHED) */
  pid_t self = getpid();
  pid_t child = fork();
  if (child < 0) {
    fprintf(stderr, "infermesh _exec-child: fork: %s\n", strerror(errno));
    return 127;
  }
  if (child == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* the helper SIGKILLed alone takes the command with it */
    if (getppid() != self) _exit(127);
    sigemptyset(&old);
    sigprocmask(SIG_SETMASK, &old, NULL);
    signal(SIGPIPE, SIG_DFL);
    execvp(argv[2], argv + 2);
    fprintf(stderr, "infermesh _exec-child: cannot run %s: %s\n", argv[2], strerror(errno));
    _exit(127);
  }
  for (;;) {
    siginfo_t si;
    int sig = sigwaitinfo(&set, &si);
    if (sig < 0) continue;                                    /* EINTR */
    if (si.si_code == SI_USER && si.si_pid == self) continue; /* our own forward, pending here */
    if (sig == SIGCHLD) {
      int st;
      pid_t w;
      while ((w = waitpid(-1, &st, WNOHANG)) > 0)
        if (w == child) {
          sweep(self); /* what the command left running goes with it */
          exit_like(st);
        }
      continue;
    }
    if (sig == PARENT_DEATH_SIG) {
      if ((long)getppid() == want) continue; /* not from the kernel: someone else's stray signal */
      sweep(self); /* the agent is gone: so is everything it started */
      kill(-getpgrp(), SIGKILL);
      _exit(137);
    }
    kill(-getpgrp(), sig); /* blocked here: reaches the command and its children, not us */
  }
}
