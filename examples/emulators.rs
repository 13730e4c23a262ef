//! Runs the emulated Lark and Feishu Project on fixed loopback ports, for benchmarks and for
//! trying `abort-bot serve` by hand: `cargo run --example emulators -- 3101 3102`.

use abort_bot::emulator::lark::LarkEmulator;
use abort_bot::emulator::project::ProjectEmulator;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let lark_port: u16 = args.next().as_deref().unwrap_or("3101").parse()?;
    let project_port: u16 = args.next().as_deref().unwrap_or("3102").parse()?;
    let lark = LarkEmulator::new(
        "cli_bench",
        "bench-app-secret",
        "ou_bench_bot_000000000000000000000",
    );
    let project = ProjectEmulator::new("MII_BENCH", "bench-plugin-secret");
    project.seed_demo();
    let lark_listener = tokio::net::TcpListener::bind(("127.0.0.1", lark_port)).await?;
    let project_listener = tokio::net::TcpListener::bind(("127.0.0.1", project_port)).await?;
    println!(
        "lark emulator on http://127.0.0.1:{lark_port}, feishu project emulator on http://127.0.0.1:{project_port}"
    );
    let lark_server = axum::serve(lark_listener, lark.router());
    let project_server = axum::serve(project_listener, project.router());
    tokio::select! {
        r = lark_server => r?,
        r = project_server => r?,
        _ = tokio::signal::ctrl_c() => {},
    }
    Ok(())
}
