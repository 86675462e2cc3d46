//! `mixprobe probe|project|metrics` (placeholders while they are implemented).
#[derive(clap::Args)]
pub struct ProbeArgs {
    /// Placeholder argument list (being implemented).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}
#[derive(clap::Args)]
pub struct ProjectArgs {
    /// Placeholder argument list (being implemented).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}
#[derive(clap::Args)]
pub struct MetricsArgs {
    /// Placeholder argument list (being implemented).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

pub fn run_probe(_args: ProbeArgs) -> anyhow::Result<()> {
    Err(crate::cli::UserError("`mixprobe probe` is not implemented yet".into()).into())
}

pub fn run_project(_args: ProjectArgs) -> anyhow::Result<()> {
    Err(crate::cli::UserError("`mixprobe project` is not implemented yet".into()).into())
}

pub fn run_metrics(_args: MetricsArgs) -> anyhow::Result<()> {
    Err(crate::cli::UserError("`mixprobe metrics` is not implemented yet".into()).into())
}
