//! The report in a real browser: headless Chromium (Debian package `chromium`, installed by
//! scripts/setup-chromium.sh) loads the fixture report's index.html; every figure must load
//! (naturalWidth > 0, checked by the page's own script, read back with --dump-dom) and the
//! screenshot must not be blank. Without Chromium the test prints a SKIP line, unless
//! MIXPROBE_REQUIRE_BROWSER=1 (CI), where it fails. With MIXPROBE_REPORT_KEEP=DIR the report and
//! the screenshot are kept in DIR for a human to look at.
#[path = "fixtures/report/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser"].iter().find_map(|name| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(name))
                .find(|p| p.is_file())
        })
    });
    if found.is_none() {
        if std::env::var("MIXPROBE_REQUIRE_BROWSER").as_deref() == Ok("1") {
            panic!(
                "MIXPROBE_REQUIRE_BROWSER=1 but chromium is not installed (run scripts/setup-chromium.sh)"
            );
        }
        eprintln!(
            "SKIP: chromium not found; the report browser test is skipped (scripts/setup-chromium.sh installs it)"
        );
    }
    found
}

fn run(chromium: &Path, args: &[String]) -> std::process::Output {
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
        ])
        .args(["--disable-dev-shm-usage", "--virtual-time-budget=10000"])
        .args(args)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The value of attribute `name` on the dumped `<body>` tag.
fn body_attr(dom: &str, name: &str) -> Option<String> {
    let body = &dom[dom.find("<body")?..];
    let body = &body[..body.find('>')?];
    let at = body.find(&format!("{name}=\""))? + name.len() + 2;
    Some(body[at..at + body[at..].find('"')?].to_string())
}

#[test]
fn report_renders_in_headless_chromium() {
    let Some(chromium) = chromium() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let keep = std::env::var_os("MIXPROBE_REPORT_KEEP").map(PathBuf::from);
    let base = keep.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let exp = base.join("experiment");
    support::full_experiment(&exp);
    let report = base.join("report");
    let summary = mixprobe::report::write_report(&exp, &report).unwrap();
    let figures = summary.sections.iter().map(|s| s.figures).sum::<usize>();
    assert!(figures >= 10, "{figures}");
    let url = format!("file://{}", summary.index.canonicalize().unwrap().display());

    let out = run(&chromium, &["--dump-dom".into(), url.clone()]);
    let dom = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        body_attr(&dom, "data-figures").as_deref(),
        Some(figures.to_string().as_str()),
        "the page's load check did not run"
    );
    assert_eq!(
        body_attr(&dom, "data-figures-broken").as_deref(),
        Some("none"),
        "figures failed to load"
    );

    let shot = base.join("screenshot.png");
    run(
        &chromium,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,2400".into(),
            url.clone(),
        ],
    );
    let png = support::read_png(&shot).unwrap();
    assert_eq!((png.width, png.height), (1280, 2400));
    assert!(
        png.variance() > 100.0,
        "screenshot is (nearly) blank: variance {}",
        png.variance()
    );
    assert!(
        png.ink() > 0.05,
        "screenshot has little content: {}",
        png.ink()
    );
    assert!(
        png.colors() > 50,
        "screenshot has only {} colours",
        png.colors()
    );
    // The whole page, for a human (MIXPROBE_REPORT_KEEP).
    if keep.is_some() {
        let full = base.join("screenshot-full.png");
        run(
            &chromium,
            &[
                format!("--screenshot={}", full.display()),
                "--window-size=1280,16000".into(),
                url,
            ],
        );
        eprintln!("kept: {} and {}", report.display(), full.display());
    }
}
