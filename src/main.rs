//! The `statehold` binary: `serve`, `check-config`, `keygen`, and the
//! maintenance commands `rekey` and `migrate` (docs/contract.md §2).
//! `anyhow` lives here only.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use statehold::config::{Config, ProcessEnv};

mod admin_client;

/// mimalloc: measurably cheaper than glibc malloc for the proxy's many small,
/// short-lived allocations (headers, bodies), and it returns memory to the
/// system more eagerly (README, Performance).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// statehold: keeps an in-memory chat bot's conversation state safe across
/// restarts, crashes and replicas.
/// `statehold --version`: the version and the commit, as
/// `statehold_build_info` names them.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("STATEHOLD_COMMIT"),
    ")"
);

#[derive(Parser)]
#[command(name = "statehold", version = VERSION, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Serve(ConfigFile),
    /// Validate and print the effective config (secrets masked); exit 0
    /// valid, 2 invalid.
    CheckConfig(CheckConfig),
    /// Print a new key: 32 random bytes in base64, for
    /// `store.encryption.keys` or `store.key_secret`.
    Keygen,
    /// Reseal every stored snapshot under the active encryption key, in
    /// the running server's background (through its admin API), printing
    /// progress until done; safe to run again (it resumes).
    Rekey(JobArgs),
    /// Move conversations stored under plaintext keys (written before
    /// `store.key_secret` was set) onto hashed keys, each under its turn,
    /// in the running server's background; `--dry-run` counts first.
    Migrate(MigrateArgs),
    /// Write every stored conversation to standard output as JSON lines
    /// (versions and lifetimes kept, sealed values sealed), page by page
    /// through the running server's admin API: a backup, or the first half
    /// of moving to another store.
    Export(ConfigFile),
    /// Read `statehold export`'s lines from standard input into the running
    /// server's store, each under its conversation's turn and only over an
    /// older version (running it twice changes nothing).
    Import(ConfigFile),
}

#[derive(Args)]
struct JobArgs {
    #[command(flatten)]
    file: ConfigFile,
    /// Conversations per second at most.
    #[arg(long, default_value_t = 200)]
    rate: u32,
}

#[derive(Args)]
struct MigrateArgs {
    #[command(flatten)]
    job: JobArgs,
    /// Count what would move; change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Args)]
struct CheckConfig {
    #[command(flatten)]
    file: ConfigFile,
    /// Print each key's documentation above it.
    #[arg(long)]
    explain: bool,
    /// Also ask the running statehold (its admin API) how many stored
    /// snapshots each encryption key seals; refuse (exit 2) a config that
    /// no longer lists a key still in use.
    #[arg(long)]
    store: bool,
}

#[derive(Args)]
struct ConfigFile {
    /// The config file.
    #[arg(long, short, env = "STATEHOLD_CONFIG", default_value = "config.toml")]
    config: PathBuf,
}

/// Exit status for an invalid config or command line (clap's too).
const EXIT_INVALID: u8 = 2;

fn main() -> ExitCode {
    // --help and --version print to stdout and exit 0; usage errors print
    // once to stderr and exit 2.
    match Cli::parse().command {
        Command::Serve(f) => with_config(&f, run_serve),
        Command::CheckConfig(c) => with_config(&c.file, |config| {
            check_config(&config, &c.file.config, (c.explain, c.store))
        }),
        Command::Keygen => keygen(),
        Command::Rekey(r) => with_config(&r.file, |config| {
            run_job(&config, ("/v1/rekey", r.rate), false)
        }),
        Command::Migrate(m) => with_config(&m.job.file, |config| {
            run_job(&config, ("/v1/migrate", m.job.rate), m.dry_run)
        }),
        Command::Export(f) => with_config(&f, |config| transfer(&config, true)),
        Command::Import(f) => with_config(&f, |config| transfer(&config, false)),
    }
}

/// Loads and validates the config file, then runs `then` with it; an
/// invalid config exits 2 with the key it is about.
fn with_config(file: &ConfigFile, then: impl FnOnce(Config) -> ExitCode) -> ExitCode {
    match Config::load(&file.config, &ProcessEnv) {
        Ok(config) => then(config),
        Err(e) => {
            eprintln!("statehold: invalid config {}: {e}", file.config.display());
            ExitCode::from(EXIT_INVALID)
        }
    }
}

/// `serve`: exit 0 after a graceful shutdown, 2 for a config problem found
/// at startup, 1 for any other.
fn run_serve(config: Config) -> ExitCode {
    match serve(config) {
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
    }
}

/// `check-config [--explain] [--store]`: prints the effective config.
fn check_config(
    config: &Config,
    path: &std::path::Path,
    (explain, store): (bool, bool),
) -> ExitCode {
    if store {
        match admin_client::keys_in_use(config) {
            Ok(()) => {}
            Err(admin_client::KeysProblem::Missing(why)) => {
                eprintln!("statehold: invalid config {}: {why}", path.display());
                return ExitCode::from(EXIT_INVALID);
            }
            Err(admin_client::KeysProblem::Unknown(e)) => {
                eprintln!("statehold: check-config --store: {e:#}");
                return ExitCode::FAILURE;
            }
        }
    }
    for o in config.overrides() {
        println!(
            "# {}: from the environment ({}), over the file",
            o.key, o.var
        );
    }
    if explain {
        print!("{}", config.explain());
    } else {
        print!("{}", config.to_masked_toml());
    }
    for warning in config.warnings() {
        eprintln!("statehold: warning: {warning}");
    }
    eprintln!("statehold: {} is valid", path.display());
    ExitCode::SUCCESS
}

/// `statehold export` (stdout) or `import` (stdin).
fn transfer(config: &Config, export: bool) -> ExitCode {
    let result = if export {
        admin_client::export(config, &mut std::io::stdout().lock())
    } else {
        admin_client::import(config, std::io::stdin().lock())
    };
    match result {
        Ok(summary) => {
            eprintln!("statehold: {summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            let what = if export { "export" } else { "import" };
            eprintln!("statehold: {what}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `rekey`, `migrate`: a background job of the running server.
fn run_job(config: &Config, (path, rate): (&str, u32), dry_run: bool) -> ExitCode {
    let job = admin_client::Job {
        path,
        rate,
        dry_run,
    };
    match admin_client::run_job(config, &job) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("statehold: {}: {e:#}", job.name());
            ExitCode::FAILURE
        }
    }
}

fn keygen() -> ExitCode {
    match statehold::privacy::material::generate() {
        Ok(key) => {
            println!("{key}");
            ExitCode::SUCCESS
        }
        Err(_) => {
            eprintln!("statehold: no randomness available from the system");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    init_tracing(config.log.level.as_deref(), config.log.format);
    // One thread by default: at a bot's request rates most of a request's
    // CPU is waking threads, and with several workers each hop (client,
    // Redis, bot) may wake another one (issue 22's measurements).
    let mut builder = match config.server.worker_threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    if config.server.worker_threads > 1 {
        builder.worker_threads(config.server.worker_threads);
    }
    let runtime = builder.enable_all().build()?;
    let threads = runtime.metrics().num_workers();
    tracing::info!(threads, "serving requests on {threads} thread(s)");
    runtime.block_on(async move {
        statehold::app::serve(config, shutdown_signal()).await?;
        Ok(())
    })
}

fn init_tracing(level: Option<&str>, format: statehold::config::LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level.unwrap_or("info")))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::io::stderr);
    match format {
        statehold::config::LogFormat::Text => logs.init(),
        // One object per line, the event's fields beside the message (a
        // log shipper indexes them as they are).
        statehold::config::LogFormat::Json => logs.json().flatten_event(true).init(),
    }
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
        Err(e) => {
            eprintln!("statehold: no SIGTERM handler ({e}); stopping on Ctrl-C only");
            if let Err(e) = tokio::signal::ctrl_c().await {
                eprintln!("statehold: no Ctrl-C handler either ({e}); stopping now");
            }
        }
    }
}
