//! `mixprobe bench` (placeholder while it is implemented).
#[derive(clap::Subcommand)]
pub enum BenchCmd {
    /// Placeholder.
    Forward,
}

pub fn run(_cmd: BenchCmd) -> anyhow::Result<()> {
    Err(crate::cli::UserError("`mixprobe bench` is not implemented yet".into()).into())
}
