//! PLACEHOLDER: replaced by the owner of this command.
#[derive(clap::Args)]
pub struct InfoArgs {}
#[derive(clap::Args)]
pub struct ForwardArgs {}
pub fn run_info(_args: InfoArgs) -> anyhow::Result<()> {
    anyhow::bail!("this command is not built yet")
}
pub fn run_forward(_args: ForwardArgs) -> anyhow::Result<()> {
    anyhow::bail!("this command is not built yet")
}
