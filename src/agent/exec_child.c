/* `infermesh _exec-child`: the small process that holds a supervised runtime's process group together. */
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
 * SIGKILLs the whole group. It forwards SIGTERM/SIGINT/SIGHUP/SIGQUIT/SIGUSR1 it receives to the group and
 * exits the way the command did (same status, or the same signal). */
#define PARENT_DEATH_SIG SIGUSR2

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
  if (*end || want <= 1) {
    fprintf(stderr, "infermesh _exec-child: bad parent pid '%s'\n", argv[0]);
    return 127;
  }
  sigset_t set, old;
  sigemptyset(&set);
  int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, PARENT_DEATH_SIG, SIGCHLD};
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
    sigaddset(&set, sigs[i]);
  sigprocmask(SIG_BLOCK, &set, &old);
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
        if (w == child) exit_like(st); /* the agent SIGKILLs what is left of the group */
      continue;
    }
    if (sig == PARENT_DEATH_SIG && (long)getppid() != want) {
      kill(-getpgrp(), SIGKILL); /* the agent is gone: so is everything it started */
      _exit(137);
    }
    kill(-getpgrp(), sig); /* blocked here: reaches the command and its children, not us */
  }
}
