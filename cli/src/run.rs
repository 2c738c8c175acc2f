//! `ferry run --binding <ns>/<name> -- CMD [ARGS...]`: runs a command with
//! a SinkBinding's environment, `K_SINK`, `K_CE_OVERRIDES` and `K_CA_CERTS`
//! (when its sink names CA certificates), read from a
//! running standalone's `/resources`, so a program written for SinkBinding
//! runs unchanged on a laptop. Exits with the command's status.

use anyhow::{bail, Context};

#[derive(clap::Args)]
pub struct Args {
    /// The SinkBinding, as namespace/name.
    #[arg(long)]
    binding: String,
    /// The standalone's admin address.
    #[arg(long, env = "FERRY_ADMIN", default_value = "http://127.0.0.1:9090")]
    admin: String,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let (namespace, name) = args
        .binding
        .split_once('/')
        .context("--binding is namespace/name")?;
    let resources = crate::admin_client::resources(&args.admin).await?;
    let binding = resources
        .iter()
        .find(|r| r["kind"] == "SinkBinding" && r["namespace"] == namespace && r["name"] == name)
        .with_context(|| format!("there is no SinkBinding {namespace}/{name}"))?;
    let Some(sink) = binding["sinkUri"]
        .as_str()
        .filter(|_| binding["ready"] == "True")
    else {
        bail!(
            "SinkBinding {namespace}/{name} is not ready: {}",
            binding["message"].as_str().unwrap_or_default()
        );
    };
    let mut command = std::process::Command::new(&args.command[0]);
    command.args(&args.command[1..]).env("K_SINK", sink);
    if let Some(overrides) = binding.get("ceOverrides") {
        command.env("K_CE_OVERRIDES", overrides.to_string());
    }
    if let Some(certs) = binding["sinkCACerts"].as_str() {
        command.env("K_CA_CERTS", certs);
    }
    let status = command
        .status()
        .with_context(|| format!("cannot run {}", args.command[0]))?;
    std::process::exit(status.code().unwrap_or(1));
}
