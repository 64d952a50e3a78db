//! The `statehold` binary: `serve` and `check-config` (CONTRACT.md §2).
//! `anyhow` lives here only.

use std::path::PathBuf;
use std::process::ExitCode;

use statehold::config::{Config, ProcessEnv};

/// mimalloc: measurably cheaper than glibc malloc for the proxy's many small,
/// short-lived allocations (headers, bodies), and it returns memory to the
/// system more eagerly (README, Performance).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: statehold <serve|check-config> [--config <FILE>]

  serve          run the proxy
  check-config   validate and print the effective config (secrets masked)

--config defaults to $STATEHOLD_CONFIG, then ./config.toml";

/// Exit status for an invalid config or command line.
const EXIT_INVALID: u8 = 2;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, config_path) = match parse_args(&args) {
        Ok(parsed) => parsed,
        Err(msg) => {
            eprintln!("statehold: {msg}\n\n{USAGE}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let config = match Config::load(&config_path, &ProcessEnv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("statehold: invalid config {}: {e}", config_path.display());
            return ExitCode::from(EXIT_INVALID);
        }
    };
    match command.as_str() {
        "check-config" => {
            print!("{}", config.to_masked_toml());
            for warning in config.warnings() {
                eprintln!("statehold: warning: {warning}");
            }
            eprintln!("statehold: {} is valid", config_path.display());
            ExitCode::SUCCESS
        }
        _ => match serve(config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("statehold: {e:#}");
                let config_problem = matches!(
                    e.downcast_ref::<statehold::app::StartupError>(),
                    Some(statehold::app::StartupError::Config(_))
                );
                if config_problem {
                    ExitCode::from(EXIT_INVALID)
                } else {
                    ExitCode::FAILURE
                }
            }
        },
    }
}

fn parse_args(args: &[String]) -> Result<(String, PathBuf), String> {
    let mut command = None;
    let mut config = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--config" | "-c" => {
                let v = it.next().ok_or("--config needs a file")?;
                config = Some(PathBuf::from(v));
            }
            s if s.starts_with("--config=") => config = Some(PathBuf::from(&s[9..])),
            "-h" | "--help" | "help" => return Err("help".into()),
            "serve" | "check-config" if command.is_none() => command = Some(arg.clone()),
            other => return Err(format!("unexpected argument `{other}`")),
        }
    }
    let command = command.ok_or("missing command")?;
    let config = config
        .or_else(|| std::env::var_os("STATEHOLD_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("config.toml"));
    Ok((command, config))
}

fn serve(config: Config) -> anyhow::Result<()> {
    init_tracing(config.log.level.as_deref());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        statehold::app::serve(config, shutdown_signal()).await?;
        Ok(())
    })
}

fn init_tracing(level: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level.unwrap_or("info")))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .init();
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
