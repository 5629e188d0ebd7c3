//! `gateway`: the node-level AI gateway binary.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use gateway::app::{self, ConfigInput};

const EXAMPLES: &str = "\
Examples:
  gateway                              run the embedded offline demo config (see README)
  gateway -f config.yaml               run with an agentgateway-format config file
  gateway -c 'binds: [{port: 3000, listeners: [{routes: [{backends: [{ai: {name: openai, provider: {openAI: {}}}}]}]}]}]'
  gateway -f config.yaml --validate-only
                                       print every config error and exit (non-zero on error)

The config file is watched: a valid change is applied without dropping requests; an invalid
one is logged and the last good config kept. SIGHUP reloads too; SIGTERM drains and exits.";

/// eBPF-accelerated, node-level AI gateway (LLM and MCP), agentgateway-compatible config.
#[derive(Parser, Debug)]
#[command(name = "gateway", version, about, after_help = EXAMPLES)]
struct Cli {
    /// Config file (YAML, agentgateway standalone format).
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE",
        conflicts_with = "config"
    )]
    file: Option<PathBuf>,
    /// Config given inline (YAML).
    #[arg(short = 'c', long = "config", value_name = "YAML")]
    config: Option<String>,
    /// Validate the config and exit.
    #[arg(long = "validate-only")]
    validate_only: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let input = match (cli.file, cli.config) {
        (Some(f), _) => ConfigInput::File(f),
        (None, Some(c)) => ConfigInput::Inline(c),
        (None, None) => ConfigInput::Embedded,
    };
    let result = if cli.validate_only {
        app::validate(&input).map(|()| println!("config is valid"))
    } else {
        app::run(input)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
