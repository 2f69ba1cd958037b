//! What one call's `Store` holds: the per-call sandbox. It owns the WASI context a call
//! gets (no preopens, no environment, no arguments, no network; clocks pinned to the
//! order time; randomness seeded from the order context), the memory limiter, the capped
//! stdout/stderr, the guest's `log`/`config` state, and the seed derivation.
//!
//! `engine.rs` creates one [`CallState`] per instance and drops it with the store. An
//! instance serves one call, or — when one component, config and limits serve several
//! hooks of one order — that order's calls in turn ([`CallState::begin_call`] relabels it
//! and resets the per-call log budget); nothing in here outlives an order, so nothing one
//! order does can be seen by the next.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use wasmtime::{ResourceLimiter, component::ResourceTable};
use wasmtime_wasi::{
    HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView,
    cli::{IsTerminal, StdoutStream},
    p2::{OutputStream, Pollable, StreamError},
};

use super::types::{Customer, GuestLogLevel, GuestLogLine, Hook, OrderContext, OrderLine};

/// Bytes of a component's stdout/stderr kept per call; the rest is dropped.
pub const OUTPUT_CAP: usize = 16 * 1024;
/// Host log lines a component may write per call; the rest are dropped.
pub const LOG_LINES_CAP: u32 = 64;
/// Longest host log message kept, in bytes.
pub const LOG_MESSAGE_CAP: usize = 1024;
/// Largest table a component may grow to, in elements.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Who is calling what: the tags on everything a component writes.
pub(crate) struct CallLabel {
    pub(crate) tenant: String,
    pub(crate) hook: Hook,
    pub(crate) component: String,
}

/// The data of a per-call store.
pub(crate) struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: CallLimiter,
    stdout: CappedOutput,
    stderr: CappedOutput,
    config: Arc<BTreeMap<String, String>>,
    label: CallLabel,
    log_lines: u32,
    kept_lines: Vec<GuestLogLine>,
}

impl CallState {
    /// The sandbox for calls on `ctx`: linear memories capped at `memory_bytes`, the
    /// binding's `config` behind `host.config`, randomness from `seed` (the
    /// [`call_seed`] of `ctx`, computed once per order by the caller).
    pub(crate) fn new(
        ctx: &OrderContext,
        seed: u128,
        label: CallLabel,
        config: Arc<BTreeMap<String, String>>,
        memory_bytes: u64,
    ) -> Self {
        let stdout = CappedOutput::default();
        let stderr = CappedOutput::default();
        // Grants nothing: no preopened directories, no environment, no arguments, no
        // network; clocks pinned to the order time; randomness seeded from the context.
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .wall_clock(PinnedClock(ctx.order_time_ms))
            .monotonic_clock(PinnedClock(ctx.order_time_ms))
            .secure_random(wasmtime_wasi::Deterministic::new(
                seed.to_le_bytes().to_vec(),
            ))
            .insecure_random(wasmtime_wasi::Deterministic::new(
                seed.to_be_bytes().to_vec(),
            ))
            .insecure_random_seed(seed)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: CallLimiter {
                memory_bytes,
                exceeded: false,
                peak_bytes: 0,
            },
            stdout,
            stderr,
            config,
            label,
            log_lines: 0,
            kept_lines: Vec::new(),
        }
    }

    /// Readies a kept instance's state for its next call, of `hook`: the log lines and
    /// their budget are per call, as with a fresh store. (Output is taken by
    /// `flush_output` after every call; the limiter's peak stays, since a linear memory
    /// never shrinks: the next call starts at that size.)
    pub(crate) fn begin_call(&mut self, hook: Hook) {
        self.label.hook = hook;
        self.log_lines = 0;
        self.kept_lines.clear();
    }

    /// The limiter to install with `Store::limiter`.
    pub(crate) fn limiter(&mut self) -> &mut dyn ResourceLimiter {
        &mut self.limiter
    }

    /// Whether the call was refused a memory growth (so its trap is
    /// `MemoryLimitExceeded`, whatever the guest did next).
    pub(crate) fn memory_refused(&self) -> bool {
        self.limiter.exceeded
    }

    /// Largest linear memory size the call reached, bytes.
    pub(crate) fn peak_memory_bytes(&self) -> u64 {
        self.limiter.peak_bytes
    }

    /// `host.config(key)`.
    pub(crate) fn config_value(&self, key: &str) -> Option<String> {
        self.config.get(key).cloned()
    }

    /// `host.log(level, message)`: into our log, tagged, capped in count and length.
    pub(crate) fn guest_log(&mut self, level: GuestLogLevel, message: &str) {
        self.log_lines += 1;
        if self.log_lines > LOG_LINES_CAP {
            return;
        }
        let message: String = message.chars().take(LOG_MESSAGE_CAP).collect();
        self.kept_lines.push(GuestLogLine {
            level,
            message: message.clone(),
        });
        let CallLabel {
            tenant,
            hook,
            component,
        } = &self.label;
        match level {
            GuestLogLevel::Trace => {
                tracing::trace!(target: "orderhost::policy::guest", %tenant, %hook, %component, "{message}")
            }
            GuestLogLevel::Debug => {
                tracing::debug!(target: "orderhost::policy::guest", %tenant, %hook, %component, "{message}")
            }
            GuestLogLevel::Info => {
                tracing::info!(target: "orderhost::policy::guest", %tenant, %hook, %component, "{message}")
            }
            GuestLogLevel::Warn => {
                tracing::warn!(target: "orderhost::policy::guest", %tenant, %hook, %component, "{message}")
            }
            GuestLogLevel::Error => {
                tracing::error!(target: "orderhost::policy::guest", %tenant, %hook, %component, "{message}")
            }
        }
    }

    /// The `host.log` lines of the call (at most [`LOG_LINES_CAP`]).
    pub(crate) fn take_log_lines(&mut self) -> Vec<GuestLogLine> {
        std::mem::take(&mut self.kept_lines)
    }

    /// Writes what the component printed to the debug log, stdout first.
    pub(crate) fn flush_output(&self) {
        for (stream, output) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let bytes = output.take();
            if bytes.is_empty() {
                continue;
            }
            let CallLabel {
                tenant,
                hook,
                component,
            } = &self.label;
            tracing::debug!(
                target: "orderhost::policy::guest",
                %tenant, %hook, %component, stream,
                "{}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Tag of the seed encoding below, hashed first: changing the encoding on purpose means
/// bumping it, so every seed changes, not just some.
const SEED_ENCODING: &[u8] = b"orderhost/policy-seed/v1\0";

/// The random seed of a call on `ctx`: the first 16 bytes (big-endian) of the SHA-256 of
/// a canonical encoding of the context. Same context, same "randomness" — on any build,
/// any Rust release, any machine — so a stored order's evaluation can be replayed
/// bit-for-bit later.
///
/// The encoding is written field by field rather than taken from serde or `Hash`: serde
/// names follow the API (a rename would move every seed) and `Hash` is free to change
/// between Rust releases. Every field is destructured, so adding one to the context does
/// not compile until someone decides here whether it feeds the seed (a replayed old
/// order must keep its seed). Strings and lists carry their length, so no two contexts
/// share an encoding.
///
/// WIT 1.1's fields are encoded apart (`ext`) and feed the seed only when one of them is
/// set: a context stored before they existed reads them as empty and keeps its seed.
pub(crate) fn call_seed(ctx: &OrderContext) -> u128 {
    let OrderContext {
        tenant,
        customer,
        lines,
        expected_total,
        order_time_ms,
        discount_codes,
        attributes,
    } = ctx;
    let Customer {
        id,
        vip,
        tags,
        order_count,
        account_age_days,
        lifetime_orders,
        lifetime_spend,
    } = customer;
    let mut ext = SeedInput(Sha256::new());
    let mut extended = !discount_codes.is_empty()
        || !attributes.is_empty()
        || *lifetime_orders != 0
        || !lifetime_spend.is_empty();
    ext.len(discount_codes.len());
    discount_codes.iter().for_each(|code| ext.str(code));
    ext.len(attributes.len());
    for attribute in attributes {
        ext.str(&attribute.key);
        ext.str(&attribute.value);
    }
    ext.put(&lifetime_orders.to_le_bytes());
    ext.len(lifetime_spend.len());
    for money in lifetime_spend {
        ext.put(&money.amount.to_le_bytes());
        ext.str(&money.currency);
    }
    let mut seed = SeedInput(Sha256::new());
    seed.put(SEED_ENCODING);
    seed.str(tenant);
    seed.str(id);
    seed.put(&[u8::from(*vip)]);
    seed.len(tags.len());
    tags.iter().for_each(|tag| seed.str(tag));
    seed.put(&order_count.to_le_bytes());
    seed.put(&account_age_days.to_le_bytes());
    seed.len(lines.len());
    for line in lines {
        let OrderLine {
            product_id,
            stock_id,
            sku,
            quantity,
            unit_price,
            currency,
            available,
            tags,
            vendor,
            category,
            units_last24h,
            units_last30d,
        } = line;
        extended |= !tags.is_empty()
            || vendor.is_some()
            || category.is_some()
            || *units_last24h != 0
            || *units_last30d != 0;
        ext.len(tags.len());
        tags.iter().for_each(|tag| ext.str(tag));
        for text in [vendor, category] {
            match text {
                None => ext.put(&[0]),
                Some(text) => {
                    ext.put(&[1]);
                    ext.str(text);
                }
            }
        }
        ext.put(&units_last24h.to_le_bytes());
        ext.put(&units_last30d.to_le_bytes());
        seed.str(product_id);
        seed.str(stock_id);
        seed.str(sku);
        seed.put(&quantity.to_le_bytes());
        seed.put(&unit_price.to_le_bytes());
        seed.str(currency);
        seed.put(&available.to_le_bytes());
    }
    match expected_total {
        None => seed.put(&[0]),
        Some(total) => {
            seed.put(&[1]);
            seed.put(&total.to_le_bytes());
        }
    }
    seed.put(&order_time_ms.to_le_bytes());
    if extended {
        seed.put(b"1.1\0");
        seed.put(&ext.0.finalize());
    }
    let digest = seed.0.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(first)
}

/// The canonical encoding of a context, written straight into the hash.
struct SeedInput(Sha256);

impl SeedInput {
    fn put(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn len(&mut self, n: usize) {
        self.put(&(n as u64).to_le_bytes());
    }

    fn str(&mut self, s: &str) {
        self.len(s.len());
        self.put(s.as_bytes());
    }
}

/// Caps every linear memory at the binding's limit and remembers a refusal, so a guest
/// that aborts after a failed `memory.grow` is reported as `MemoryLimitExceeded` rather
/// than as a generic trap.
struct CallLimiter {
    memory_bytes: u64,
    exceeded: bool,
    peak_bytes: u64,
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let desired = desired as u64;
        if desired > self.memory_bytes {
            self.exceeded = true;
            return Ok(false);
        }
        self.peak_bytes = self.peak_bytes.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// A clock stuck at the order time: components see when the order was placed, never
/// the real time.
#[derive(Clone, Copy)]
struct PinnedClock(i64);

impl HostWallClock for PinnedClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }

    fn now(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.0).unwrap_or(0))
    }
}

impl HostMonotonicClock for PinnedClock {
    fn resolution(&self) -> u64 {
        1_000_000
    }

    fn now(&self) -> u64 {
        u64::try_from(self.0).unwrap_or(0).saturating_mul(1_000_000)
    }
}

/// stdout/stderr of a component: kept up to [`OUTPUT_CAP`] bytes, the rest silently
/// dropped (a chatty component must not fail its call or flood the log). Written by
/// hand because wasmtime-wasi's memory pipe traps the guest when full.
#[derive(Clone, Default)]
struct CappedOutput(Arc<Mutex<Vec<u8>>>);

impl CappedOutput {
    fn push(&self, bytes: &[u8]) {
        let mut buf = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let room = OUTPUT_CAP.saturating_sub(buf.len());
        buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl IsTerminal for CappedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for CappedOutput {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.push(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for CappedOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> OrderContext {
        OrderContext {
            tenant: "default".into(),
            customer: Customer {
                id: "cust-1".into(),
                vip: true,
                tags: vec!["wholesale".into()],
                order_count: 3,
                account_age_days: 40,
                ..Customer::default()
            },
            lines: vec![OrderLine {
                product_id: "p-A".into(),
                stock_id: "s-A".into(),
                sku: "A".into(),
                quantity: 2,
                unit_price: 1_250,
                currency: "EUR".into(),
                available: 1_000,
                ..OrderLine::default()
            }],
            expected_total: Some(2_500),
            order_time_ms: 1_700_000_000_123,
            ..OrderContext::default()
        }
    }

    /// Pinned: a stored order replays with the seed it was decided with. If this fails,
    /// the derivation changed and every stored order's replay would diverge; change it
    /// only on purpose, with a new `SEED_ENCODING` tag. The value is the first 16 bytes
    /// of the SHA-256, as hex (checked against an independent Python implementation of
    /// the encoding with `hashlib`).
    #[test]
    fn the_seed_of_a_fixed_context_is_pinned() {
        assert_eq!(
            call_seed(&context()),
            0x337335df7319aee2c8ee90ae79251afc_u128
        );
    }

    #[test]
    fn every_field_moves_the_seed_and_no_two_encodings_collide() {
        let base = call_seed(&context());
        let mut moved = context();
        moved.expected_total = None;
        assert_ne!(call_seed(&moved), base);
        let mut moved = context();
        moved.lines[0].available = 999;
        assert_ne!(call_seed(&moved), base);
        // Bytes shifted from one string to the next must not give the same encoding.
        let mut shifted = context();
        shifted.tenant = "defaultc".into();
        shifted.customer.id = "ust-1".into();
        assert_ne!(call_seed(&shifted), base);
    }

    /// WIT 1.1's fields: unset, the seed is 1.0's (stored orders replay as decided);
    /// each one set moves it, and a code moved into an attribute does not collide.
    #[test]
    fn the_1_1_fields_move_the_seed_only_when_set() {
        let base = call_seed(&context());
        let mut moves: Vec<OrderContext> = Vec::new();
        let mut c = context();
        c.discount_codes = vec!["SAVE10".into()];
        moves.push(c);
        let mut c = context();
        c.attributes = vec![crate::policy::types::Attribute {
            key: "SAVE10".into(),
            value: String::new(),
        }];
        moves.push(c);
        let mut c = context();
        c.customer.lifetime_orders = 1;
        moves.push(c);
        let mut c = context();
        c.customer.lifetime_spend = vec![crate::policy::types::Money {
            amount: 0,
            currency: "EUR".into(),
        }];
        moves.push(c);
        let mut c = context();
        c.lines[0].tags = vec!["mug".into()];
        moves.push(c);
        let mut c = context();
        c.lines[0].vendor = Some(String::new());
        moves.push(c);
        let mut c = context();
        c.lines[0].category = Some(String::new());
        moves.push(c);
        let mut c = context();
        c.lines[0].units_last24h = 1;
        moves.push(c);
        let mut c = context();
        c.lines[0].units_last30d = 1;
        moves.push(c);
        let seeds: std::collections::HashSet<u128> = moves.iter().map(call_seed).collect();
        assert_eq!(seeds.len(), moves.len(), "no two collide");
        assert!(!seeds.contains(&base));
    }
}
