//! The `nasflow` binary: parses the command line and config, sets up logging, and wires the
//! pipe (probe, enrich, output). No logic of its own beyond that.

use clap::Parser;
use nasflow::{check, config, run};
use tracing_subscriber::EnvFilter;

/// Quiet by default for the chatty libraries; `NASFLOW_LOG` or `RUST_LOG` override.
const DEFAULT_LOG: &str = "info,aya=warn,tonic=warn,h2=warn,hyper=warn";

fn init_logging() {
    let filter = std::env::var("NASFLOW_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .map_or_else(|_| EnvFilter::new(DEFAULT_LOG), EnvFilter::new);
    // tracing-subscriber's tracing-log feature bridges aya's `log` records in.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

fn main() -> std::process::ExitCode {
    let cli = config::Cli::parse();
    init_logging();
    let result = match cli.command {
        config::Command::Run(args) => args.resolve().and_then(|cfg| {
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?.block_on(run::run(cfg))
        }),
        config::Command::Check(args) => {
            let report = args.output;
            match args.resolve().and_then(|cfg| {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                Ok(rt.block_on(check::run(&cfg, std::path::Path::new(nasflow_probe::VMLINUX_BTF))))
            }) {
                Ok(items) => {
                    match report {
                        config::Report::Text => print!("{}", check::render_text(&items)),
                        config::Report::Json => match serde_json::to_string_pretty(&items) {
                            Ok(j) => println!("{j}"),
                            Err(e) => eprintln!("nasflow: {e}"),
                        },
                    }
                    return if check::blocked(&items) {
                        std::process::ExitCode::from(2)
                    } else {
                        std::process::ExitCode::SUCCESS
                    };
                }
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nasflow: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
