//! Logging set-up: human-readable text or JSON lines, filtered by `RUST_LOG`, with the
//! events of dependency crates (which log through `log`) included.
//!
//! Whatever `RUST_LOG` says, events that would print a secret are dropped: tungstenite traces
//! the whole WebSocket handshake request, whose query carries the long connection's one-time
//! credentials (`ticket`, `access_key`).

use std::io::IsTerminal;

use tracing::{Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// Targets whose events at some level can carry a secret, and the most verbose level that
/// cannot. `tungstenite::handshake::client` traces `Request: "GET /ws/v2?…&ticket=…"`.
const QUIET: &[(&str, Level)] = &[("tungstenite::handshake::client", Level::DEBUG)];

/// Installs the global subscriber once; later calls are ignored (tests start many bots).
/// Text logs are coloured only when standard output is a terminal: a file, a pipe or a
/// journal gets plain text.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,abort_bot=info"));
    let ansi = std::io::stdout().is_terminal();
    let _ = build(format, filter, std::io::stdout, ansi).try_init();
}

/// The subscriber [`init`] installs, writing to `writer` (which is no terminal: no colour).
pub fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    build(format, filter, writer, false)
}

fn build<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
    ansi: bool,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let no_secrets = filter_fn(|meta| {
        !QUIET.iter().any(|(target, most_verbose)| {
            meta.target().starts_with(target) && meta.level() > most_verbose
        })
    });
    let base = tracing_subscriber::registry().with(filter).with(no_secrets);
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => Box::new(base.with(layer)),
        LogFormat::Json => Box::new(base.with(layer.json())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Capture {
            self.clone()
        }
    }

    #[test]
    fn the_handshake_request_trace_is_dropped_whatever_the_filter_says() {
        let capture = Capture::default();
        let subscriber = subscriber(
            LogFormat::Json,
            EnvFilter::new("trace,tungstenite=trace"),
            capture.clone(),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!(target: "tungstenite::handshake::client", "Request: \"GET /ws/v2?ticket=SECRET-TICKET\"");
            tracing::debug!(target: "tungstenite::handshake::client", "Client handshake done.");
            tracing::trace!(target: "tungstenite::protocol", "writing frame");
        });
        let text = String::from_utf8_lossy(&capture.0.lock().expect("lock")).into_owned();
        assert!(!text.contains("SECRET-TICKET"), "{text}");
        assert!(text.contains("Client handshake done."), "{text}");
        assert!(text.contains("writing frame"), "{text}");
    }
}
