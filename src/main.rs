//! The `abort-bot` binary: `serve` (the default), `check`, `audit` and `sandbox`.

use std::net::SocketAddr;
use std::process::ExitCode;

use abort_bot::app::{App, Clients, Overrides, shutdown_signal};
use abort_bot::audit::{self, Filter, Format};
use abort_bot::config::{LogFormat, Settings, Sources, StoreUrl};
use abort_bot::sandbox::{self, Sandbox};
use abort_bot::store::{AuditReader, Store};
use abort_bot::telemetry;
use clap::{Parser, Subcommand};

/// mimalloc: most of a request's work is small allocations (JSON, headers, buffers), where it is
/// markedly faster than the system allocator (see bench/run.sh).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "abort-bot",
    version,
    about = "Abort and restore Feishu Project work items from Lark chats"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the bot (the default).
    Serve,
    /// Validate the configuration, fetch both tokens, and print every problem.
    Check,
    /// List every abort and restore the bot performed or tried, oldest first. Reads the
    /// store named by ABORT_BOT_STORE (nothing else) without disturbing a running bot.
    Audit(AuditArgs),
    /// Try the bot locally with no credentials: the real bot, an emulated Lark and Feishu
    /// Project, and a web chat page on 127.0.0.1:3000 (ABORT_BOT_LISTEN may move it, loopback only).
    Sandbox,
}

#[derive(clap::Args)]
struct AuditArgs {
    /// How far back: a duration (30m, 24h, 7d) or an RFC 3339 time.
    #[arg(long, default_value = "24h")]
    since: String,
    /// Only what was asked in this chat (chat_id, oc_…).
    #[arg(long, value_name = "CHAT_ID")]
    chat: Option<String>,
    /// Only what this person did (open_id, ou_…).
    #[arg(long, value_name = "OPEN_ID")]
    user: Option<String>,
    /// `table` for people (local time), `json` (one object per line), `csv` (spreadsheets).
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

async fn run_audit(args: AuditArgs) -> ExitCode {
    let since_ms = match audit::parse_since(&args.since, jiff::Timestamp::now()) {
        Ok(ms) => ms,
        Err(problem) => {
            eprintln!("abort-bot audit: {problem}");
            return ExitCode::from(2);
        }
    };
    let store = match abort_bot::config::store_from_sources(&Sources::from_process_env()) {
        Ok(store) => store,
        Err(e) => {
            for p in &e.problems {
                eprintln!("abort-bot audit: {p}");
            }
            return ExitCode::from(2);
        }
    };
    let reader = match &store {
        StoreUrl::Sqlite(path) => AuditReader::open_sqlite(path),
        StoreUrl::Redis(url) => Store::open_redis(url, std::time::Duration::from_secs(86_400))
            .await
            .map(AuditReader::of),
        StoreUrl::Memory => {
            eprintln!(
                "abort-bot audit: ABORT_BOT_STORE is an in-memory store; nothing outlives the process that wrote it"
            );
            return ExitCode::from(2);
        }
    };
    let reader = match reader {
        Ok(r) => r,
        Err(e) => {
            eprintln!("abort-bot audit: ABORT_BOT_STORE: {e}");
            return ExitCode::FAILURE;
        }
    };
    let filter = Filter {
        since_ms,
        chat_id: args.chat,
        actor_open_id: args.user,
    };
    let tz = jiff::tz::TimeZone::system();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match audit::print(&reader, &filter, args.format, &tz, &mut out).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("abort-bot audit: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load_settings() -> Result<Settings, ExitCode> {
    Settings::from_sources(&Sources::from_process_env()).map_err(|e| {
        eprintln!(
            "abort-bot cannot start; set these variables (or keys in the ABORT_BOT_CONFIG file):"
        );
        for p in &e.problems {
            eprintln!("  {p}");
        }
        eprintln!("README.md (\"Configure\") says where each value comes from.");
        eprintln!(
            "No Lark app yet? `abort-bot sandbox` runs the whole bot on this machine with no credentials."
        );
        ExitCode::from(2)
    })
}

async fn serve() -> ExitCode {
    let settings = match load_settings() {
        Ok(s) => s,
        Err(code) => return code,
    };
    telemetry::init(settings.log_format);
    let app = match App::build(&settings, Overrides::default()).await {
        Ok(app) => app,
        Err(e) => {
            // One plain line, whatever the log format: the one thing to read and act on.
            eprintln!("abort-bot cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match app.local_addr() {
        Ok(addr) => tracing::info!(%addr, "abort-bot listening"),
        Err(e) => tracing::warn!(error = %e, "listening on an unknown address"),
    }
    match app.run_until_stopped(shutdown_signal()).await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            ExitCode::FAILURE
        }
    }
}

async fn check() -> ExitCode {
    let settings = match Settings::from_sources(&Sources::from_process_env()) {
        Ok(s) => s,
        Err(e) => {
            println!("abort-bot check: the configuration has problems.");
            println!();
            for p in &e.problems {
                println!("problem: {p}");
            }
            println!();
            println!("Next: set these variables (or keys in the ABORT_BOT_CONFIG file; README.md,");
            println!(
                "\"Configure\", says where each value comes from), then run `abort-bot check` again."
            );
            return ExitCode::FAILURE;
        }
    };
    telemetry::init(LogFormat::Text);
    println!("abort-bot check");
    println!();
    for (label, value) in settings.summary() {
        println!("  {label:<16}{value}");
    }
    println!();
    let (problems, warnings) = verify_upstream(&settings).await;
    let mut warnings = warnings;
    warnings.extend(settings.warnings());
    for w in &warnings {
        println!("warning: {w}");
    }
    println!();
    if problems > 0 {
        println!(
            "{problems} problem(s) above. Fix them and run `abort-bot check` again; nothing was changed."
        );
        return ExitCode::FAILURE;
    }
    let host = "https://<your public host>";
    match settings.mode {
        abort_bot::config::Mode::Webhook => {
            println!("Everything checked works. Next:");
            println!("  1. Start the bot: `abort-bot serve` (or `systemctl start abort-bot`).");
            println!(
                "  2. Make {host}/lark/events and /lark/cards reach {} over HTTPS (a reverse",
                settings.listen
            );
            println!(
                "     proxy; keep /metrics, /readyz off the public side), and check from outside:"
            );
            println!("     curl {host}/healthz answers ok.");
            println!(
                "  3. In the Lark developer console, Events & Callbacks: set the request URL of"
            );
            println!(
                "     events and of callbacks to {host}/lark/events (Lark checks it at once)."
            );
            println!(
                "  4. Publish a version of the app, have an admin approve it, add the bot to a"
            );
            println!("     group and send `@abort-bot /help`.");
        }
        abort_bot::config::Mode::Websocket => {
            println!("Everything checked works. Next:");
            println!("  1. Start the bot: `abort-bot serve` (or `systemctl start abort-bot`);");
            println!("     /readyz answers 200 once the long connection is open.");
            println!(
                "  2. Publish a version of the app, have an admin approve it, add the bot to a"
            );
            println!("     group and send `@abort-bot /help`.");
        }
    }
    if !warnings.is_empty() {
        println!("  Read the warnings above first.");
    }
    ExitCode::SUCCESS
}

/// Fetches both tokens, opens the store and (long connection) asks for an endpoint; prints
/// one line for each. The number of problems, and the store's warnings.
async fn verify_upstream(settings: &Settings) -> (usize, Vec<String>) {
    let mut problems = 0;
    let mut warnings = Vec::new();
    let clients = match Clients::build(settings, &Overrides::default()) {
        Ok(c) => c,
        Err(e) => {
            println!("problem: cannot build the HTTP client: {e}");
            return (1, warnings);
        }
    };
    match clients.lark.tenant_token().await {
        Ok(_) => println!("lark tenant_access_token: ok"),
        Err(e) => {
            problems += 1;
            println!("problem: LARK_APP_ID / LARK_APP_SECRET: no tenant_access_token: {e}");
        }
    }
    match clients.project.plugin_token().await {
        Ok(_) => println!("feishu project plugin_token: ok"),
        Err(e) => {
            problems += 1;
            println!(
                "problem: FEISHU_PROJECT_PLUGIN_ID / FEISHU_PROJECT_PLUGIN_SECRET: no plugin_token: {e}"
            );
        }
    }
    match &settings.store {
        StoreUrl::Sqlite(path) => match Store::open(path) {
            Ok(_) => println!("sqlite store: ok ({})", path.display()),
            Err(e) => {
                problems += 1;
                println!("problem: ABORT_BOT_STORE: {e}");
            }
        },
        StoreUrl::Memory => println!("memory store: ok (nothing survives a restart)"),
        StoreUrl::Redis(url) => {
            match Store::open_redis_waiting(url, settings.dedup_retention, settings.redis_wait)
                .await
            {
                Ok(store) => {
                    println!("redis store: ok");
                    for warning in store.warnings().await {
                        warnings.push(format!("ABORT_BOT_STORE: {warning}"));
                    }
                }
                Err(e) => {
                    problems += 1;
                    println!("problem: ABORT_BOT_STORE: cannot reach the Redis store: {e}");
                }
            }
        }
    }
    if settings.mode == abort_bot::config::Mode::Websocket {
        match abort_bot::lark::ws::client::fetch_endpoint(&clients.lark).await {
            Ok(endpoint) => println!("lark long connection endpoint: ok ({})", endpoint.host()),
            Err(e) => {
                problems += 1;
                println!(
                    "problem: ABORT_BOT_MODE=websocket: no long-connection endpoint (is \"receive events through persistent connection\" chosen in the app console?): {e}"
                );
            }
        }
    }
    (problems, warnings)
}

/// The sandbox's page address: `ABORT_BOT_LISTEN` if set, which must be loopback.
fn sandbox_listen() -> Result<SocketAddr, String> {
    let raw = std::env::var("ABORT_BOT_LISTEN")
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| sandbox::DEFAULT_LISTEN.to_owned());
    let addr: SocketAddr = raw
        .parse()
        .map_err(|_| format!("ABORT_BOT_LISTEN: `{raw}` is not an address like 127.0.0.1:3000"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "ABORT_BOT_LISTEN: the sandbox listens on loopback only; `{raw}` is not (use 127.0.0.1:<port>)"
        ));
    }
    Ok(addr)
}

async fn run_sandbox() -> ExitCode {
    let listen = match sandbox_listen() {
        Ok(a) => a,
        Err(problem) => {
            eprintln!("abort-bot sandbox cannot start: {problem}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(LogFormat::Text);
    let sandbox = match Sandbox::start(listen).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("abort-bot sandbox cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "abort-bot sandbox: open {} (emulated Lark and Feishu Project, no credentials; Ctrl-C stops it)",
        sandbox.page_url()
    );
    match sandbox.run_until_stopped(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "sandbox failed");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match cli.command.unwrap_or(Cmd::Serve) {
            Cmd::Serve => serve().await,
            Cmd::Check => check().await,
            Cmd::Audit(args) => run_audit(args).await,
            Cmd::Sandbox => run_sandbox().await,
        }
    })
}
