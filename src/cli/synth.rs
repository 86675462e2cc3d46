//! PLACEHOLDER: replaced by the owner of this command.
#[derive(clap::Args)]
pub struct Args {}
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("this command is not built yet")
}
