//! Logging: `tracing` to standard output (pretty or JSON) and, like the service it
//! replaces, to `logs/combined.log` (everything) and `logs/error.log` (errors), rotated
//! daily and kept for two weeks.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_appender::{
    non_blocking::WorkerGuard,
    rolling::{RollingFileAppender, Rotation},
};
use tracing_subscriber::{
    EnvFilter, Layer, Registry,
    field::RecordFields,
    filter::LevelFilter,
    fmt::{
        FormatFields,
        format::{DefaultFields, Writer},
    },
    layer::SubscriberExt,
    util::SubscriberInitExt,
};

use crate::config::{LogConfig, LogFormat};

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Field formatter distinct per output. `fmt` layers cache a span's formatted fields in
/// the span under the formatter's type; layers sharing a type would each append to the
/// same cache and every field recorded after span creation (status, user, …) would print
/// once per layer. A distinct type per output keeps one copy each.
#[derive(Default)]
struct OutputFields<const N: u8>(DefaultFields);

impl<'w, const N: u8> FormatFields<'w> for OutputFields<N> {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> std::fmt::Result {
        self.0.format_fields(writer, fields)
    }
}

fn fmt_layer<W, const N: u8>(format: LogFormat, writer: W, ansi: bool) -> BoxedLayer
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            // The whole span list: a line logged inside a step of a request (`decide`, a
            // policy call) still carries the request span's id, tenant and user.
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(writer)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .fmt_fields(OutputFields::<N>::default())
            .with_ansi(ansi)
            .with_writer(writer)
            .boxed(),
    }
}

fn appender(dir: &str, prefix: &str) -> anyhow::Result<RollingFileAppender> {
    Ok(RollingFileAppender::builder()
        .rotation(Rotation::DAILY)
        .filename_prefix(prefix)
        .filename_suffix("log")
        .max_log_files(14)
        .build(dir)?)
}

/// The process-wide Prometheus recorder, installed on first use (one per process: the
/// `metrics` facade has a single global recorder, shared by every app in a test run).
pub fn metrics_handle() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5,
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ])
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            Some(handle)
        })
        .clone()
}

/// Installs the global subscriber. Keep the returned guards alive for the life of the
/// process: they flush the file writers on drop.
pub fn init(cfg: &LogConfig) -> anyhow::Result<Vec<WorkerGuard>> {
    let filter = EnvFilter::try_new(&cfg.log_level).map_err(|e| {
        anyhow::anyhow!(
            "ORDERHOST_LOG {:?} is not a valid filter: {e}",
            cfg.log_level
        )
    })?;
    let mut layers: Vec<BoxedLayer> =
        vec![fmt_layer::<_, 0>(cfg.log_format, std::io::stdout, true)];
    let mut guards = Vec::new();
    if !cfg.log_dir.trim().is_empty() {
        std::fs::create_dir_all(&cfg.log_dir)
            .map_err(|e| anyhow::anyhow!("cannot create log folder {:?}: {e}", cfg.log_dir))?;
        let (combined, guard) = tracing_appender::non_blocking(appender(&cfg.log_dir, "combined")?);
        guards.push(guard);
        layers.push(fmt_layer::<_, 1>(cfg.log_format, combined, false));
        let (errors, guard) = tracing_appender::non_blocking(appender(&cfg.log_dir, "error")?);
        guards.push(guard);
        layers.push(
            fmt_layer::<_, 2>(cfg.log_format, errors, false)
                .with_filter(LevelFilter::ERROR)
                .boxed(),
        );
    }
    tracing_subscriber::registry()
        .with(layers)
        .with(filter)
        .try_init()
        .map_err(|e| anyhow::anyhow!("logging already initialised: {e}"))?;
    Ok(guards)
}
