//! `mixprobe report` on fixture experiment directories written without training
//! (tests/fixtures/report/support.rs): every figure as PNG (decodable, not blank) and SVG (text
//! as outlines), the HTML page inlining all of them, sections without data kept with a visible
//! note, and bad input reported with the file's name and exit code 2.
mod common;
#[path = "fixtures/report/support.rs"]
mod support;

use base64::Engine;
use mixprobe::report::write_report;
use std::path::Path;

const FULL_FIGURES: [&str; 10] = [
    "strategies",
    "forgetting-0",
    "forgetting-1",
    "dmt-k",
    "ablation",
    "scaling",
    "ratio",
    "tsne-grid",
    "cka-drift",
    "loss-rq4",
];

fn check_figure(figures: &Path, name: &str) {
    let png = support::read_png(&figures.join(format!("{name}.png")))
        .unwrap_or_else(|e| panic!("{name}.png does not decode: {e}"));
    assert!(
        png.width >= 300 && png.height >= 200,
        "{name}.png is {}x{}",
        png.width,
        png.height
    );
    assert!(png.variance() > 0.0, "{name}.png is blank");
    assert!(
        png.ink() > 0.01,
        "{name}.png has almost no ink ({})",
        png.ink()
    );
    assert!(png.colors() >= 3, "{name}.png has {} colours", png.colors());
    let svg = std::fs::read_to_string(figures.join(format!("{name}.svg"))).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
        "{name}.svg is not an SVG document"
    );
    assert!(
        !svg.contains("<text"),
        "{name}.svg still has <text> elements (needs a font)"
    );
    assert!(
        svg.matches("<path d=\"M").count() >= 3,
        "{name}.svg has no text outlines"
    );
    assert!(
        svg.contains(&format!("width=\"{}\"", png.width))
            && svg.contains(&format!("height=\"{}\"", png.height)),
        "{name}: SVG and PNG sizes differ"
    );
}

#[test]
fn full_fixture_writes_every_figure_and_section() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tmp.path().join("exp");
    support::full_experiment(&exp);
    let out = tmp.path().join("report");
    let summary = write_report(&exp, &out).unwrap();

    let figures = out.join("figures");
    for name in FULL_FIGURES {
        check_figure(&figures, name);
    }
    assert_eq!(
        summary.figures.len(),
        2 * FULL_FIGURES.len(),
        "{:?}",
        summary.figures
    );
    for s in &summary.sections {
        assert_eq!(s.skipped, None, "section {} skipped with full data", s.id);
    }

    let html = std::fs::read_to_string(&summary.index).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    for name in FULL_FIGURES {
        // Inlined: the data URI decodes to exactly the SVG file written beside the page.
        let tag = format!("data-figure=\"{name}\"");
        let at = html
            .find(&tag)
            .unwrap_or_else(|| panic!("index.html lacks figure {name}"));
        let src = &html[at..];
        let start = src.find("base64,").unwrap() + 7;
        let end = start + src[start..].find('"').unwrap();
        let inlined = b64.decode(&src[start..end]).unwrap();
        assert_eq!(
            inlined,
            std::fs::read(figures.join(format!("{name}.svg"))).unwrap(),
            "{name}"
        );
        assert!(
            html.contains(&format!("href=\"figures/{name}.png\"")),
            "{name}"
        );
    }
    assert!(
        !html.contains("src=\"figures/"),
        "figures must be inlined, not referenced"
    );
    assert!(
        html.contains("<style>") && !html.contains("<link"),
        "CSS must be inline"
    );

    // The RQ4 verdict is computed from the fixture's numbers (0.22 vs 0.40; DMT 0.36 → 78%).
    assert!(
        html.contains("Sequential training forgot math relative to multi-task learning"),
        "no forgetting verdict"
    );
    assert!(
        html.contains("recovered 78% of that gap"),
        "no DMT recovery"
    );
    // Failed/pending cells are listed, not plotted; the torn log line is counted.
    assert!(html.contains("tiny/rq4-broken (failed)") && html.contains("tiny/dmt-k9 (pending)"));
    assert!(html.contains("1 malformed line(s)"));
    // Metadata for reproduction.
    for needle in [
        "0123456789abcdef",
        "math/train.jsonl",
        &"cd".repeat(32),
        "12 min 34 s",
        "42",
    ] {
        assert!(html.contains(needle), "metadata lacks {needle}");
    }
    // No paper number is shown without a source; the page says so.
    assert!(
        html.contains("The paper&#39;s own numbers are not shown")
            || html.contains("The paper's own numbers are not shown")
    );

    let md = std::fs::read_to_string(&summary.summary).unwrap();
    for name in FULL_FIGURES {
        assert!(
            md.contains(&format!("](figures/{name}.png)")),
            "summary.md lacks {name}"
        );
    }
    assert!(
        md.contains("| tiny/rq4-dmt | dmt |"),
        "summary.md lacks the RQ4 table"
    );
    assert!(
        md.contains("general without code, math"),
        "ablation not described"
    );
    assert!(md.contains("general 1/16"), "string amounts not read");
    // RQ3 x positions come from the runner's explicit ratio: 1 : 1/16 is 16.
    assert!(html.contains("RQ3: score vs specialized : general ratio"));
}

#[test]
fn sections_without_data_are_kept_with_a_note() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tmp.path().join("exp");
    support::minimal_experiment(&exp);
    let out = tmp.path().join("report");
    let summary = write_report(&exp, &out).unwrap();
    let skipped: Vec<&str> = summary
        .sections
        .iter()
        .filter(|s| s.skipped.is_some())
        .map(|s| s.id.as_str())
        .collect();
    for id in [
        "scaling",
        "ratio",
        "dmt-k",
        "ablation",
        "forgetting",
        "probe",
        "training",
    ] {
        assert!(skipped.contains(&id), "{id} not skipped: {skipped:?}");
    }
    let strategies = summary
        .sections
        .iter()
        .find(|s| s.id == "strategies")
        .unwrap();
    assert_eq!(
        (strategies.figures, strategies.skipped.as_deref()),
        (1, None)
    );
    // Only the strategies figure exists: nothing is drawn for absent data.
    let mut files: Vec<String> = std::fs::read_dir(out.join("figures"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["strategies.png", "strategies.svg"]);
    let html = std::fs::read_to_string(&summary.index).unwrap();
    assert_eq!(
        html.matches("<strong>Not shown:</strong>").count(),
        skipped.len()
    );
    assert!(html.contains("results.json has no `probe` entry"));
    assert!(html.contains("results.json has no `meta` block"));
}

#[test]
fn bad_input_names_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("report");

    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let err = write_report(&empty, &out).unwrap_err().to_string();
    assert!(
        err.contains("results.json") && err.contains("not found"),
        "{err}"
    );

    let bad = tmp.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(
        bad.join("results.json"),
        "{\"experiment\": {\"name\": \"x\"},\n \"cells\": [1,]}",
    )
    .unwrap();
    let err = write_report(&bad, &out).unwrap_err().to_string();
    assert!(
        err.contains(&bad.join("results.json").display().to_string()) && err.contains("line 2"),
        "{err}"
    );

    // A malformed projection CSV is an error naming the file and the line.
    let exp = tmp.path().join("exp");
    support::full_experiment(&exp);
    let csv = exp.join("probe/projection/base/layer-4.tsne.csv");
    std::fs::write(
        &csv,
        "id,source,x,y,cluster\nm-1,math,1.0,2.0,0\nm-2,math,oops,2.0,0\n",
    )
    .unwrap();
    let err = write_report(&exp, &out).unwrap_err().to_string();
    assert!(
        err.contains("layer-4.tsne.csv") && err.contains("line 3"),
        "{err}"
    );

    // Wrong types are reported too (cells must be objects).
    std::fs::write(
        bad.join("results.json"),
        r#"{"experiment": {"name": "x"}, "cells": [{"id": 3}]}"#,
    )
    .unwrap();
    let err = write_report(&bad, &out).unwrap_err().to_string();
    assert!(
        err.contains("results.json") && err.contains("invalid type"),
        "{err}"
    );
}

#[test]
fn cli_writes_the_report_and_exits_2_on_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tmp.path().join("exp");
    support::minimal_experiment(&exp);
    let out = tmp.path().join("report");
    let ok = common::bin()
        .args(["report"])
        .arg(&exp)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&ok.get_output().stdout).into_owned();
    assert!(stdout.contains("index.html"), "{stdout}");
    assert!(out.join("index.html").is_file() && out.join("summary.md").is_file());

    let missing = tmp.path().join("nothing-here");
    std::fs::create_dir_all(&missing).unwrap();
    let fail = common::bin()
        .args(["report"])
        .arg(&missing)
        .arg("--out")
        .arg(&out)
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&fail.get_output().stderr).into_owned();
    assert!(stderr.contains("results.json"), "{stderr}");

    std::fs::write(missing.join("results.json"), "not json").unwrap();
    let fail = common::bin()
        .args(["report"])
        .arg(&missing)
        .arg("--out")
        .arg(&out)
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&fail.get_output().stderr).into_owned();
    assert!(
        stderr.contains("results.json") && stderr.contains("line 1"),
        "{stderr}"
    );
}
