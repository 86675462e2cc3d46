//! `mixprobe report`: the HTML/Markdown report of an experiment directory.
use std::path::PathBuf;

#[derive(clap::Args)]
#[command(
    long_about = "Write the report of an experiment directory (the --out of `mixprobe run`): \
OUT/index.html (self-contained: CSS and every figure inlined), OUT/summary.md, and every figure as \
PNG and SVG in OUT/figures/. Sections whose data the experiment lacks are kept with a note saying \
why. Figures use the embedded DejaVu Sans font (SVG text is converted to outlines), so they render \
the same on every machine."
)]
pub struct Args {
    /// Experiment output directory (contains results.json, cells/, probe/).
    pub dir: PathBuf,
    /// Report directory to write (created if needed; files in it are overwritten).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let summary = mixprobe::report::write_report(&args.dir, &args.out)?;
    for s in &summary.sections {
        match &s.skipped {
            Some(why) => eprintln!("  {:<12} skipped: {why}", s.id),
            None => eprintln!("  {:<12} {} figure(s)", s.id, s.figures),
        }
    }
    println!(
        "report: {} ({} figure files, summary {})",
        summary.index.display(),
        summary.figures.len(),
        summary.summary.display()
    );
    Ok(())
}
