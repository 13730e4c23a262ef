//! The `abort-bot` binary: `serve` (the default) and `check`.

use std::process::ExitCode;

use abort_bot::app::{App, Clients, Overrides, shutdown_signal};
use abort_bot::config::{LogFormat, Settings, Sources};
use abort_bot::telemetry;
use clap::{Parser, Subcommand};

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
            tracing::error!(error = %e, "start-up failed");
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
            for p in &e.problems {
                println!("problem: {p}");
            }
            return ExitCode::FAILURE;
        }
    };
    telemetry::init(LogFormat::Text);
    println!("configuration: ok ({settings:?})");
    let clients = match Clients::build(&settings, &Overrides::default()) {
        Ok(c) => c,
        Err(e) => {
            println!("problem: cannot build the HTTP client: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut failed = false;
    match clients.lark.tenant_token().await {
        Ok(_) => println!("lark tenant_access_token: ok"),
        Err(e) => {
            failed = true;
            println!("problem: LARK_APP_ID / LARK_APP_SECRET: no tenant_access_token: {e}");
        }
    }
    match clients.project.plugin_token().await {
        Ok(_) => println!("feishu project plugin_token: ok"),
        Err(e) => {
            failed = true;
            println!(
                "problem: FEISHU_PROJECT_PLUGIN_ID / FEISHU_PROJECT_PLUGIN_SECRET: no plugin_token: {e}"
            );
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
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
        }
    })
}
