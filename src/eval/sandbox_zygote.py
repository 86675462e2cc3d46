# mixprobe sandbox zygote (see src/eval/sandbox.rs for the threat model and what is enforced).
#
# One zygote per sandbox slot runs as root in the host's namespaces and serves requests on stdin:
#   "nonce uid timeout_ms as_bytes fsize_bytes nproc nofile tmpfs_bytes program_len\n" + program
# For each it forks:
#   S  (host PID namespace): unshares mount/network/IPC/UTS/PID namespaces, makes every mount
#      private and read-only, hides private directories, mounts a size-capped tmpfs on /tmp, forks
#      P and exits with P's status;
#   P  (PID 1 of the new PID namespace, still root): mounts /proc, forks C, enforces the wall-clock
#      limit, kills and reaps every other process of the namespace, and prints one trailer line
#      "\n<nonce> <exit N|signal N|timeout>|<ok|exc Name errno|none>|<cpu seconds>\n";
#   C  sets the rlimits, drops to `uid` (no groups, empty capability bounding set, no_new_privs)
#      and executes the program, reporting "ok" or the exception type on a private pipe to P.
# S, P and C write to one pipe that the zygote drains (keeping the tail) and answers with
#   "<exit N|signal N|killed N> <tail_len>\n" + tail
# Every process below the zygote dies with its parent (PR_SET_PDEATHSIG), and the kernel kills
# the whole PID namespace when P exits. The zygote exits at EOF on stdin.
import os, sys, resource, ctypes, select, _signal, traceback
from time import monotonic

HIDDEN = ("/root", "/home", "/run", "/var/tmp", "/dev/shm", "/mnt", "/media", "/srv")
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND = 1, 2, 4, 8, 32, 4096
MS_REC, MS_PRIVATE = 16384, 1 << 18
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x20000, 0x4000000, 0x8000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 24, 38
TAIL = 16384
libc = ctypes.CDLL(None, use_errno=True)


def fail(what):
    os.write(2, ("mixprobe sandbox setup failed: %s\n" % what).encode())
    os._exit(3)


def check(ret, what):
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, "%s: %s" % (what, os.strerror(err)))


def mount(source, target, fstype, flags, options):
    check(libc.mount(source, target.encode(), fstype, flags, options), "mount " + target)


def die_with_parent(ppid):
    """Die when the parent does; `ppid` is the parent's pid as seen from here (0 when the parent
    is outside our PID namespace), so a parent that died before the prctl is noticed."""
    check(libc.prctl(PR_SET_PDEATHSIG, _signal.SIGKILL, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() != ppid:
        os._exit(3)


def unescape(path):
    return path.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def prepare_namespaces(uid, tmpfs):
    check(libc.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWPID), "unshare")
    # Nothing mounted here may propagate back to the host.
    mount(None, "/", None, MS_REC | MS_PRIVATE, None)
    # Every writable mount becomes read-only in this namespace.
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
    # Private places are covered by empty read-only tmpfs.
    for d in HIDDEN:
        if os.path.isdir(d) and not os.path.islink(d):
            mount(b"tmpfs", d, b"tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, b"size=4k,mode=755")
    # The only writable place: a size-capped tmpfs on /tmp owned by the sandbox uid.
    opts = "size=%d,mode=700,uid=%d,gid=%d" % (tmpfs, uid, uid)
    mount(b"tmpfs", "/tmp", b"tmpfs", MS_NOSUID | MS_NODEV, opts.encode())


def program_process(src, uid, timeout, limits, w):
    """C: drop privileges and run the program; report how it ended on `w`."""
    try:
        os.chdir("/tmp")
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        sys.stdin = open(0, "r", closefd=False)
        sys.stdout = open(1, "w", closefd=False)
        sys.stderr = open(2, "w", closefd=False, buffering=1)
        cap = 0
        while libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0:
            cap += 1
        cpu = int(timeout) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        for which, value in limits:
            resource.setrlimit(which, (value, value))
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
        if os.getresuid() != (uid, uid, uid) or os.getgroups():
            raise OSError(0, "privileges were not dropped")
    except BaseException as e:
        try:
            os.write(w, ("setup dropping privileges: %r" % (e,)).encode())
        finally:
            os._exit(3)
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
        os.write(w, msg.encode())
    except BaseException:
        pass
    os._exit(0)


def init_process(nonce, src, uid, timeout, limits):
    """P: PID 1 of the new PID namespace."""
    die_with_parent(0)
    mount(b"proc", "/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        program_process(src, uid, timeout, limits, w)
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
        end = ("signal %d" % os.WTERMSIG(status)) if os.WIFSIGNALED(status) else ("exit %d" % os.WEXITSTATUS(status))
    except Timeout:
        end = "timeout"
    # Nothing the program started may outlive it.
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
        report = os.read(r, 4096).decode("utf-8", "replace") or "none"
    except BlockingIOError:
        report = "none"
    os.write(1, ("\n%s %s|%s|%.3f\n" % (nonce, end, report, cpu)).encode())
    os._exit(0)


def setup_process(req, src, w, zygote):
    """S: new namespaces, then P; exits with P's status."""
    try:
        os.dup2(w, 1)
        os.dup2(w, 2)
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.closerange(3, 1 << 16)
        die_with_parent(zygote)
        nonce, uid, timeout_ms, as_bytes, fsize, nproc, nofile, tmpfs = req
        uid, timeout = int(uid), int(timeout_ms) / 1000.0
        limits = ((resource.RLIMIT_AS, int(as_bytes)), (resource.RLIMIT_FSIZE, int(fsize)),
                  (resource.RLIMIT_NPROC, int(nproc)), (resource.RLIMIT_NOFILE, int(nofile)),
                  (resource.RLIMIT_CORE, 0), (resource.RLIMIT_MEMLOCK, 0), (resource.RLIMIT_MSGQUEUE, 0))
        prepare_namespaces(uid, int(tmpfs))
        pid = os.fork()
        if pid == 0:
            init_process(nonce, src, uid, timeout, limits)
        _, status = os.waitpid(pid, 0)
        os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
    except BaseException as e:
        fail("%r" % (e,))


def serve():
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    zygote = os.getpid()
    while True:
        line = inp.readline()
        if not line:
            return
        fields = line.decode().split()
        n = int(fields[8])
        src = inp.read(n)
        if len(src) != n:
            return
        timeout = int(fields[2]) / 1000.0
        r, w = os.pipe()
        out.flush()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            setup_process(fields[:8], src, w, zygote)
        os.close(w)
        # Drain the run's output, keeping the tail; past the deadline, kill S (and so everything).
        deadline = monotonic() + timeout + max(timeout, 5.0)
        tail = bytearray()
        killed = False
        while True:
            wait = deadline - monotonic()
            if wait <= 0 and not killed:
                os.kill(pid, _signal.SIGKILL)
                killed = True
            ready, _, _ = select.select([r], [], [], max(wait, 0) if not killed else None)
            if not ready:
                continue
            chunk = os.read(r, 65536)
            if not chunk:
                break
            tail += chunk
            if len(tail) > 2 * TAIL:
                del tail[:-TAIL]
        os.close(r)
        _, status = os.waitpid(pid, 0)
        code = ("signal %d" % os.WTERMSIG(status)) if os.WIFSIGNALED(status) else ("exit %d" % os.WEXITSTATUS(status))
        if killed:
            code = "killed " + code.split()[1]
        tail = bytes(tail[-TAIL:])
        out.write(b"%s %d\n" % (code.encode(), len(tail)))
        out.write(tail)
        out.flush()


serve()
