# mixprobe sandbox bootstrap (see src/eval/sandbox.rs for the threat model).
# Runs as PID 1 of fresh mount/PID/network/IPC/UTS namespaces, still root there. stdin holds one
# header line "nonce uid timeout_ms as_bytes fsize_bytes nproc nofile tmpfs_bytes", then the
# program. It makes every mount read-only, hides /root, /home, /run ..., mounts a size-capped tmpfs
# owned by `uid` on /tmp, then forks: the child sets the rlimits, drops to `uid` (no groups, empty
# capability bounding set, no_new_privs) and execs the program; PID 1 enforces the wall-clock limit,
# kills every process left in the namespace, and prints one trailer line
# "\n<nonce> <exit N|signal N|timeout>|<ok|exc Name errno|none>|<cpu seconds>\n" to stdout.
# Exit codes of PID 1 itself: 0 after a trailer, 3 when the sandbox could not be set up.
import os, sys, resource, ctypes, _signal

HIDDEN = ("/root", "/home", "/run", "/var/tmp", "/dev/shm", "/mnt", "/media", "/srv")
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND = 1, 2, 4, 8, 32, 4096
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 24, 38


def setup_failed(what):
    os.write(2, ("mixprobe sandbox setup failed: %s\n" % what).encode())
    os._exit(3)


def unescape(path):
    return path.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def main():
    data = sys.stdin.buffer.read()
    nl = data.find(b"\n")
    fields = data[:nl].decode().split()
    nonce, uid = fields[0], int(fields[1])
    timeout = int(fields[2]) / 1000.0
    as_bytes, fsize, nproc, nofile, tmpfs = (int(x) for x in fields[3:8])
    src = data[nl + 1:]
    libc = ctypes.CDLL(None, use_errno=True)

    def mount(source, target, fstype, flags, options):
        if libc.mount(source, target.encode(), fstype, flags, options) != 0:
            err = ctypes.get_errno()
            setup_failed("mount %s: %s" % (target, os.strerror(err)))

    # 1. Every writable mount becomes read-only in this namespace (the host's mounts are untouched).
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            path, opts = unescape(parts[4]), parts[5].split(",")
            if "rw" not in opts or path == "/proc" or path.startswith("/proc/"):
                continue
            flags = MS_REMOUNT | MS_BIND | MS_RDONLY
            for name, bit in (("nosuid", MS_NOSUID), ("nodev", MS_NODEV), ("noexec", MS_NOEXEC)):
                if name in opts:
                    flags |= bit
            mount(None, path, None, flags, None)
    # 2. Private places are covered by empty read-only tmpfs.
    for d in HIDDEN:
        if os.path.isdir(d) and not os.path.islink(d):
            mount(b"tmpfs", d, b"tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, b"size=4k,mode=755")
    # 3. The only writable place: a size-capped tmpfs on /tmp owned by the sandbox uid.
    opts = "size=%d,mode=700,uid=%d,gid=%d" % (tmpfs, uid, uid)
    mount(b"tmpfs", "/tmp", b"tmpfs", MS_NOSUID | MS_NODEV, opts.encode())

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            os.chdir("/tmp")
            null = os.open("/dev/null", os.O_RDONLY)
            os.dup2(null, 0)
            os.close(null)
            cap = 0
            while libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0:
                cap += 1
            cpu = int(timeout) + 1
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
            for which, value in ((resource.RLIMIT_AS, as_bytes), (resource.RLIMIT_FSIZE, fsize),
                                 (resource.RLIMIT_NPROC, nproc), (resource.RLIMIT_NOFILE, nofile),
                                 (resource.RLIMIT_CORE, 0), (resource.RLIMIT_MEMLOCK, 0),
                                 (resource.RLIMIT_MSGQUEUE, 0)):
                resource.setrlimit(which, (value, value))
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
            if os.getuid() != uid or os.geteuid() != uid or os.getgroups():
                raise OSError(0, "privileges were not dropped")
        except BaseException as e:
            setup_failed("dropping privileges: %r" % (e,))
        # As OpenAI's human-eval does: fresh globals, so __name__ is not "__main__".
        try:
            exec(compile(src, "<program>", "exec"), {})
            msg = "ok"
        except BaseException as e:
            msg = "exc %s %s" % (type(e).__name__, getattr(e, "errno", None) or 0)
            try:
                import traceback
                traceback.print_exc()
            except BaseException:
                pass
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:
            pass
        try:
            os.write(w, (nonce + " " + msg).encode())
        except BaseException:
            pass
        os._exit(0)

    os.close(w)

    class Timeout(Exception):
        pass

    def on_alarm(signum, frame):
        raise Timeout()

    _signal.signal(_signal.SIGALRM, on_alarm)
    _signal.setitimer(_signal.ITIMER_REAL, timeout)
    cpu = 0.0
    try:
        _, status, usage = os.wait4(pid, 0)
        _signal.setitimer(_signal.ITIMER_REAL, 0)
        cpu = usage.ru_utime + usage.ru_stime
        if os.WIFSIGNALED(status):
            end = "signal %d" % os.WTERMSIG(status)
        else:
            end = "exit %d" % os.WEXITSTATUS(status)
    except Timeout:
        end = "timeout"
    # Nothing the program started may outlive it: kill and reap everything else in the namespace.
    try:
        os.kill(-1, _signal.SIGKILL)
    except OSError:
        pass
    while True:
        try:
            os.wait()
        except ChildProcessError:
            break
    os.set_blocking(r, False)
    try:
        report = os.read(r, 4096).decode("utf-8", "replace")
    except BlockingIOError:
        report = ""
    report = report[len(nonce) + 1:] if report.startswith(nonce + " ") else "none"
    os.write(1, ("\n%s %s|%s|%.3f\n" % (nonce, end, report, cpu)).encode())


main()
