//! Reports: a self-contained HTML page, a Markdown summary and every figure as PNG and SVG, from
//! an experiment directory written by `mixprobe run` (its `results.json`, the probe output and
//! each cell's training log; layout in the experiment module's docs).
//!
//! Sections: overview; RQ1/RQ2 scaling curves (score vs data fraction, log x, single vs mixed);
//! RQ3 ratio curves; RQ4 strategy bars and table with a forgetting verdict computed from the
//! measurements; the DMT k sweep; the ablation; stage × ability forgetting heatmaps; t-SNE grids
//! (models × layers, coloured by source, interference metrics under each panel) and CKA drift;
//! per-source training-loss curves; run metadata (versions, device, seeds, data hashes, wall
//! time). A section whose data is absent is kept with a visible note saying why; nothing is
//! invented. Figures use the embedded DejaVu Sans font, and the SVGs carry their text as glyph
//! outlines, so every figure renders the same on every machine (see [`render`]).
mod charts;
mod doc;
mod format;
pub mod input;
pub mod render;
mod sections;

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// What [`write_report`] wrote.
#[derive(Debug, Clone)]
pub struct ReportSummary {
    /// `OUT/index.html`.
    pub index: PathBuf,
    /// `OUT/summary.md`.
    pub summary: PathBuf,
    /// Every figure file (`OUT/figures/<name>.png` and `.svg`).
    pub figures: Vec<PathBuf>,
    /// Each section in page order.
    pub sections: Vec<SectionStatus>,
}

/// One section of a written report.
#[derive(Debug, Clone, PartialEq)]
pub struct SectionStatus {
    /// The HTML anchor (`scaling`, `strategies`, `probe`, …).
    pub id: String,
    pub title: String,
    /// Figures drawn in it.
    pub figures: usize,
    /// Why it shows nothing, when its data is absent.
    pub skipped: Option<String>,
}

/// Write the report of `experiment_dir` into `out` (created if needed): `index.html`,
/// `summary.md` and `figures/`. Errors name the file that is missing or malformed.
pub fn write_report(experiment_dir: &Path, out: &Path) -> Result<ReportSummary> {
    if !experiment_dir.is_dir() {
        return Err(Error::file(
            experiment_dir,
            "is not a directory (expected an experiment output dir with results.json)",
        ));
    }
    let results = input::load_results(experiment_dir)?;
    let probe = input::load_probe(experiment_dir, results.probe.as_ref())?;
    let fig_dir = out.join("figures");
    std::fs::create_dir_all(&fig_dir).map_err(|e| Error::io(&fig_dir, e))?;
    let mut figs = doc::Figures {
        dir: fig_dir,
        files: Vec::new(),
    };
    let ctx = sections::Ctx {
        dir: experiment_dir,
        results: &results,
        probe: &probe,
    };
    let sections = vec![
        sections::overview(&ctx),
        sections::strategies(&ctx, &mut figs)?,
        sections::forgetting(&ctx, &mut figs)?,
        sections::dmt_k(&ctx, &mut figs)?,
        sections::ablation(&ctx, &mut figs)?,
        sections::scaling(&ctx, &mut figs)?,
        sections::ratio(&ctx, &mut figs)?,
        sections::probe(&ctx, &mut figs)?,
        sections::training(&ctx, &mut figs)?,
        sections::metadata(&ctx),
    ];
    let title = format!("mixprobe report: {}", results.experiment.name);
    let subtitle = format!(
        "Experiment {} · written by mixprobe {} from {}",
        results
            .experiment
            .file
            .as_deref()
            .unwrap_or(&results.experiment.name),
        env!("CARGO_PKG_VERSION"),
        experiment_dir.display()
    );
    let index = doc::write(out, "index.html", &doc::html(&title, &subtitle, &sections))?;
    let summary = doc::write(
        out,
        "summary.md",
        &doc::markdown(&title, &subtitle, &sections),
    )?;
    Ok(ReportSummary {
        index,
        summary,
        figures: figs.files,
        sections: sections
            .iter()
            .map(|s| SectionStatus {
                id: s.id.clone(),
                title: s.title.clone(),
                figures: s.figures(),
                skipped: s.skipped.clone(),
            })
            .collect(),
    })
}
