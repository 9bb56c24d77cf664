//! `[telemetry]`: Herald's `ingest` and `attempt` spans exported over OTLP/HTTP (SPEC §10).
//!
//! The API and the dispatcher report finished span records to a [`SpanSink`] (herald-core);
//! [`Telemetry`] is that sink. It turns each record into the OpenTelemetry SDK's `SpanData`
//! and hands it to the SDK's `BatchSpanProcessor`: a bounded queue (2048 spans) drained by the
//! processor's own thread, which posts batches (up to 512 spans, at least every 5 s) as
//! protobuf to `<otlp_endpoint>/v1/traces` with reqwest's blocking client. A request or an
//! attempt task only pushes onto that queue; when the collector is slow or down the queue
//! fills and further spans are dropped, never waited for. The `OTEL_BSP_*` variables tune the
//! processor and `OTEL_EXPORTER_OTLP_TIMEOUT` / `OTEL_EXPORTER_OTLP_HEADERS` the exporter, as
//! in any OpenTelemetry SDK.
//!
//! Why records and `SpanData` rather than the SDK's `Tracer` (or `tracing-opentelemetry`): an
//! attempt's span id must be the one it sends in its `traceparent` header, and the SDK's
//! `Tracer` always draws span ids from its own generator; a finished record also costs one
//! allocation per span and no per-span state held across the attempt's awaits (no span
//! object, no context guard, no sampler call). `tracing-opentelemetry` would in addition tie
//! export to the log level filter (the attempt's `tracing` span is at debug level so that it
//! costs nothing at info) and build every span through `tracing`'s field visitors.
//!
//! Export failures are logged here, with the endpoint as a [`DisplayUrl`] (no user info, no
//! query): once when export starts failing (warn), once when it works again (info). The SDK's
//! own diagnostics are compiled out (no `internal-logs` feature): they print the full URL.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use base64::prelude::{Engine as _, BASE64_STANDARD};
use herald_config::TelemetryConfig;
use herald_core::{AttemptOutcome, AttemptSpan, DisplayUrl, IngestSpan, SpanSink, Traceparent};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, SpanData, SpanEvents, SpanExporter, SpanLinks, SpanProcessor as _,
};
use opentelemetry_sdk::Resource;

/// How long a graceful shutdown waits for the last spans to be posted.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// The span sink of a daemon with `[telemetry]`.
pub(crate) struct Telemetry {
    processor: BatchSpanProcessor,
    scope: InstrumentationScope,
    endpoint: DisplayUrl,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Telemetry {
    /// Builds the exporter and starts the batch processor's thread.
    pub(crate) fn start(config: &TelemetryConfig) -> anyhow::Result<Self> {
        let endpoint = config.display_url();
        let mut builder = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(config.traces_url().as_str());
        if let Some(credentials) = config.basic_auth() {
            // The endpoint's user info, as a header rather than in the URL (see herald-config).
            let value = format!("Basic {}", BASE64_STANDARD.encode(credentials.expose()));
            builder = builder.with_headers(HashMap::from([("authorization".to_owned(), value)]));
        }
        let exporter = builder
            .build()
            // The error may quote the endpoint it was given: show it as displayed instead.
            .map_err(|e| {
                anyhow::anyhow!(
                    "{}",
                    e.to_string()
                        .replace(config.traces_url().as_str(), endpoint.as_str())
                )
            })
            .with_context(|| format!("setting up span export to {endpoint}"))?;
        let mut exporter = Logged {
            inner: exporter,
            endpoint: endpoint.clone(),
            failing: AtomicBool::new(false),
        };
        let resource = Resource::builder()
            .with_service_name(config.service_name.clone())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        exporter.set_resource(&resource);
        let processor = BatchSpanProcessor::builder(exporter).build();
        let scope = InstrumentationScope::builder("herald")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        tracing::info!(%endpoint, service_name = %config.service_name, "exporting spans over OTLP/HTTP");
        Ok(Self {
            processor,
            scope,
            endpoint,
        })
    }

    /// Posts the spans still queued (waiting at most [`FLUSH_TIMEOUT`]) and stops the
    /// processor's thread. Blocks: call it off the async workers.
    pub(crate) fn shutdown(&self) {
        if let Err(e) = self.processor.shutdown_with_timeout(FLUSH_TIMEOUT) {
            tracing::warn!(endpoint = %self.endpoint, error = %e, "flushing the last spans failed");
        }
    }

    /// Queues one finished span (never blocks: a full queue drops it).
    #[allow(clippy::too_many_arguments)]
    fn queue(
        &self,
        name: &'static str,
        kind: SpanKind,
        context: Traceparent,
        parent_span_id: Option<u64>,
        (start, end): (SystemTime, SystemTime),
        attributes: Vec<KeyValue>,
        status: Status,
    ) {
        self.processor.on_end(SpanData {
            span_context: SpanContext::new(
                TraceId::from(context.trace_id),
                SpanId::from(context.span_id),
                TraceFlags::new(context.flags),
                false,
                TraceState::NONE,
            ),
            parent_span_id: parent_span_id.map_or(SpanId::INVALID, SpanId::from),
            // The parent came from another process (the producer) or through the store.
            parent_span_is_remote: parent_span_id.is_some(),
            span_kind: kind,
            name: Cow::Borrowed(name),
            start_time: start,
            end_time: end,
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status,
            instrumentation_scope: self.scope.clone(),
        });
    }
}

impl SpanSink for Telemetry {
    fn ingest(&self, span: &IngestSpan) {
        if !span.context.sampled() {
            return;
        }
        let attributes = vec![
            KeyValue::new("http.request.method", "POST"),
            KeyValue::new("http.route", span.route),
            KeyValue::new("http.response.status_code", i64::from(span.status)),
            KeyValue::new("herald.events", count(span.events)),
            KeyValue::new("herald.events.accepted", count(span.accepted)),
        ];
        // A server span is an error when Herald failed (5xx), not when the client did (4xx).
        let status = if span.status >= 500 {
            Status::error(format!("HTTP {}", span.status))
        } else {
            Status::Unset
        };
        self.queue(
            "ingest",
            SpanKind::Server,
            span.context,
            span.parent_span_id,
            (span.start, span.end),
            attributes,
            status,
        );
    }

    fn attempt(&self, span: &AttemptSpan<'_>) {
        if !span.context.sampled() {
            return;
        }
        let mut attributes = Vec::with_capacity(7);
        attributes.push(KeyValue::new("http.request.method", "POST"));
        attributes.push(KeyValue::new(
            "herald.subscriber",
            span.subscriber.as_str().to_owned(),
        ));
        attributes.push(KeyValue::new(
            "herald.delivery.id",
            span.delivery_id.to_string(),
        ));
        attributes.push(KeyValue::new("herald.event.id", span.event_id.to_string()));
        attributes.push(KeyValue::new("herald.attempt", i64::from(span.attempt)));
        if let Some(code) = span.status_code {
            attributes.push(KeyValue::new("http.response.status_code", i64::from(code)));
        }
        attributes.push(KeyValue::new("herald.outcome", span.outcome.as_str()));
        let status = match span.outcome {
            AttemptOutcome::Delivered => Status::Unset,
            AttemptOutcome::Retry | AttemptOutcome::Dead => {
                Status::error(span.error.unwrap_or("attempt failed").to_owned())
            }
        };
        self.queue(
            "attempt",
            SpanKind::Client,
            span.context,
            span.parent_span_id,
            (span.start, span.end),
            attributes,
            status,
        );
    }
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The OTLP exporter, with its failures logged (the endpoint shown without user info or
/// query): a warning when export starts failing, a line when it works again, and nothing in
/// between but debug lines, so that a collector that is down does not flood the log.
struct Logged {
    inner: opentelemetry_otlp::SpanExporter,
    endpoint: DisplayUrl,
    failing: AtomicBool,
}

impl std::fmt::Debug for Logged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logged")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl SpanExporter for Logged {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        match &result {
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(endpoint = %self.endpoint, "span export works again");
                }
            }
            Err(error) => {
                if self.failing.swap(true, Ordering::Relaxed) {
                    tracing::debug!(endpoint = %self.endpoint, %error, spans, "span export failed; spans dropped");
                } else {
                    tracing::warn!(endpoint = %self.endpoint, %error, spans,
                        "span export failed; spans dropped (logged again when it works)");
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
