//! Thin shell: parse flags, load configuration, run the chosen command.

use std::process::ExitCode;

use clap::Parser;
use crunchbox::cli::{Cli, Command, CommonArgs};
use crunchbox::config::Config;

fn main() -> ExitCode {
    // Before any thread starts: the arena cap binds only threads to come.
    crunchbox::allocator::tune();
    let cli = Cli::parse();
    match cli.command {
        Command::Crunch(args) => {
            crunchbox::logging::init(Default::default());
            finish(crunchbox::crunch::cli::run(&args).map_err(Into::into))
        }
        Command::Serve(args) => match load(&args.common) {
            Ok(config) => finish(block_on(crunchbox::app::run(config, args.roles, args.ephemeral))),
            Err(code) => code,
        },
        Command::Upload(args) => crunchbox::upload::main(args),
        Command::Wait(args) => wait(&args),
        Command::Provision(common) => match load(&common) {
            Ok(config) => finish(block_on(crunchbox::app::provision(config))),
            Err(code) => code,
        },
    }
}

/// `crunchbox wait`: the endpoint from the flag, else from the configuration.
fn wait(args: &crunchbox::ci::wait::WaitArgs) -> ExitCode {
    let endpoint = match &args.endpoint {
        Some(e) => e.clone(),
        None => match Config::load(args.common.config.as_deref(), args.common.overrides()) {
            Ok(config) => config.embedded_endpoint_url(),
            Err(e) => {
                eprintln!("crunchbox wait: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let timeout = std::time::Duration::from_secs(args.timeout);
    match block_on(async { crunchbox::ci::wait::run(&endpoint, timeout).await }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crunchbox wait: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the layered configuration; a bad value is a one-line error, exit 2.
fn load(common: &CommonArgs) -> Result<Config, ExitCode> {
    match Config::load(common.config.as_deref(), common.overrides()) {
        Ok(config) => {
            crunchbox::logging::init(config.log_format);
            Ok(config)
        }
        Err(e) => {
            eprintln!("crunchbox: {e}");
            Err(ExitCode::from(2))
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn block_on<E: Into<BoxError>>(fut: impl Future<Output = Result<(), E>>) -> Result<(), BoxError> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(fut).map_err(Into::into)
}

fn finish(result: Result<(), BoxError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crunchbox: {e}");
            ExitCode::FAILURE
        }
    }
}
