//! PLACEHOLDER: replaced by the owner of this command.
#[derive(clap::Subcommand)]
pub enum ScoreCmd {}
pub fn run(_cmd: ScoreCmd) -> anyhow::Result<()> {
    anyhow::bail!("this command is not built yet")
}
