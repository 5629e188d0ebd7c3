pub fn run(_args: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("node-sim: not yet")
}
