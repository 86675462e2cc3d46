//! PLACEHOLDER: replaced by the owner of this command.
#[derive(clap::Args)]
pub struct TrainArgs {}
pub fn run_train(_args: TrainArgs) -> anyhow::Result<()> {
    anyhow::bail!("this command is not built yet")
}
