//! `mixprobe eval` (placeholder while it is implemented).
#[derive(clap::Args)]
pub struct Args {
    /// Placeholder argument list (being implemented).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

pub fn run(_args: Args) -> anyhow::Result<()> {
    Err(crate::cli::UserError("`mixprobe eval` is not implemented yet".into()).into())
}
