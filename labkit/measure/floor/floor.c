/* labkit bench startup's hand-built floors: what starting a container costs with nothing
 * but the system calls a runtime cannot avoid (no config parsing, no state files).
 *
 *   floor ns PROG           clone(2) into new pid, mount, uts, ipc and net namespaces
 *                           (no user namespace), execv(PROG), wait for it
 *   floor full ROOTFS CG... mkdir(2) each cgroup directory CG; clone into the same
 *                           namespaces; the child joins each CG itself, makes / private,
 *                           bind-mounts ROOTFS on itself, mounts proc in it,
 *                           pivot_root(".", ".") and detaches the old root (runc's trick,
 *                           pivot_root(2) NOTES), execs /bin/true there; the parent waits
 *                           and rmdirs the cgroups.
 *
 * The join is the cheapest the kernel offers, the one labkit-runtime uses: "0" written to
 * CG/tasks (v1) moves the writing thread without cgroup_threadgroup_rwsem, whose writer waits
 * for an RCU grace period after a quiet spell (kernel/cgroup/cgroup.c,
 * cgroup_procs_write_start; 5-15 ms here); CG/cgroup.procs where there is no tasks file (v2).
 *
 * Exit status: the child's, or 1 (and a message on stderr naming the failing call).
 * Built by labkit.measure.bench_startup with `cc -O2` on first use.  */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define NS_FLAGS (CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET)

static void die(const char *what, const char *arg) {
	fprintf(stderr, "floor: %s %s: %s\n", what, arg ? arg : "", strerror(errno));
	_exit(1);
}

/* clone(2) without a new stack: fork semantics (the child runs on a copy of ours). */
static pid_t clone_ns(void) {
	return (pid_t)syscall(SYS_clone, NS_FLAGS | SIGCHLD, NULL, NULL, NULL, 0UL);
}

static int wait_child(pid_t pid) {
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			die("waitpid", NULL);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int mode_ns(const char *prog) {
	pid_t pid = clone_ns();
	if (pid < 0)
		die("clone", NULL);
	if (pid == 0) {
		char *argv[] = {"true", NULL};
		execv(prog, argv);
		die("execv", prog);
	}
	return wait_child(pid);
}

static void join_self(const char *dir) {
	char path[4096];
	snprintf(path, sizeof path, "%s/tasks", dir);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		snprintf(path, sizeof path, "%s/cgroup.procs", dir);
		fd = open(path, O_WRONLY | O_CLOEXEC);
	}
	if (fd < 0)
		die("open", path);
	if (write(fd, "0", 1) != 1)
		die("write", path);
	close(fd);
}

static void child_full(const char *rootfs, int ncg, char **cgs) {
	for (int i = 0; i < ncg; i++)
		join_self(cgs[i]);
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		die("mount --make-rprivate", "/");
	if (mount(rootfs, rootfs, NULL, MS_BIND | MS_REC, NULL) < 0)
		die("mount --bind", rootfs);
	if (chdir(rootfs) < 0)
		die("chdir", rootfs);
	if (mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		die("mount proc", "proc");
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		die("pivot_root", rootfs);
	if (umount2(".", MNT_DETACH) < 0)
		die("umount2", "old root");
	if (chdir("/") < 0)
		die("chdir", "/");
	char *argv[] = {"true", NULL};
	execv("/bin/true", argv);
	die("execv", "/bin/true");
}

static void remove_dir(const char *dir) {
	/* The last task left the cgroup when we reaped it; v1 can still answer EBUSY for a
	 * moment while the exit is being processed, so retry briefly. */
	for (int i = 0; i < 1000; i++) {
		if (rmdir(dir) == 0 || errno == ENOENT)
			return;
		if (errno != EBUSY)
			break;
		usleep(100);
	}
	die("rmdir", dir);
}

/* A new v1 cpuset cgroup starts with empty cpuset.cpus and cpuset.mems, and a task cannot
 * join it until both are set (ENOSPC; Documentation/admin-guide/cgroup-v1/cpusets.rst):
 * copy the parent's, as every runtime does. */
static void inherit_cpuset(const char *dir) {
	static const char *files[] = {"cpuset.cpus", "cpuset.mems"};
	char path[4096], parent[4096], buf[4096];
	for (int i = 0; i < 2; i++) {
		snprintf(path, sizeof path, "%s/%s", dir, files[i]);
		if (access(path, F_OK) < 0)
			return; /* not the cpuset hierarchy */
		snprintf(parent, sizeof parent, "%s/../%s", dir, files[i]);
		int fd = open(parent, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			die("open", parent);
		ssize_t n = read(fd, buf, sizeof buf);
		close(fd);
		if (n <= 0)
			die("read", parent);
		fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0 || write(fd, buf, (size_t)n) != n)
			die("write", path);
		close(fd);
	}
}

static int mode_full(const char *rootfs, int ncg, char **cgs) {
	for (int i = 0; i < ncg; i++) {
		if (mkdir(cgs[i], 0755) < 0)
			die("mkdir", cgs[i]);
		inherit_cpuset(cgs[i]);
	}
	pid_t pid = clone_ns();
	if (pid < 0)
		die("clone", NULL);
	if (pid == 0)
		child_full(rootfs, ncg, cgs);
	int code = wait_child(pid);
	for (int i = 0; i < ncg; i++)
		remove_dir(cgs[i]);
	return code;
}

int main(int argc, char **argv) {
	if (argc >= 3 && strcmp(argv[1], "ns") == 0)
		return mode_ns(argv[2]);
	if (argc >= 3 && strcmp(argv[1], "full") == 0)
		return mode_full(argv[2], argc - 3, argv + 3);
	fprintf(stderr, "usage: floor ns PROG | floor full ROOTFS [CGROUP_DIR...]\n");
	return 2;
}
