//! Built-in prioritizer: VIP customers before regular ones, plus a weight per
//! matching customer tag. Orders of equal priority are served FIFO by the host.
//!
//! Config (all optional): `vip-weight` (default 100), `regular-weight`
//! (default 10), `tag-weights` as `"tag:weight,..."`, e.g. `"wholesale:50"`
//! (default: none). Sums saturate at `u32::MAX`. This hook has no error
//! channel, so a bad value is logged as a warning and its default used.

wit_bindgen::generate!({ world: "prioritizer", path: "../../wit/1.1.0" });

use exports::ordering::policy::prioritization::Guest;
use ordering::policy::host::{config, log};
use ordering::policy::types::{LogLevel, OrderContext};

struct Vip;

fn weight(key: &str, default: u32) -> u32 {
    let Some(raw) = config(key) else {
        return default;
    };
    raw.trim().parse().unwrap_or_else(|_| {
        log(
            LogLevel::Warn,
            &format!("config `{key}` = {raw:?} is not a u32; using {default}"),
        );
        default
    })
}

/// Parses `tag-weights`; any bad entry discards the whole setting.
fn tag_weights() -> Vec<(String, u32)> {
    let Some(raw) = config("tag-weights") else {
        return Vec::new();
    };
    let parsed: Option<Vec<(String, u32)>> = raw
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|entry| {
            let (tag, w) = entry.split_once(':')?;
            Some((tag.trim().to_string(), w.trim().parse().ok()?))
        })
        .collect();
    parsed.unwrap_or_else(|| {
        log(
            LogLevel::Warn,
            &format!("config `tag-weights` = {raw:?} is malformed; ignoring it"),
        );
        Vec::new()
    })
}

impl Guest for Vip {
    fn priority(ctx: OrderContext) -> u32 {
        let base = if ctx.customer.vip {
            weight("vip-weight", 100)
        } else {
            weight("regular-weight", 10)
        };
        tag_weights()
            .iter()
            .filter(|(tag, _)| ctx.customer.tags.contains(tag))
            .fold(base, |sum, (_, w)| sum.saturating_add(*w))
    }
}

export!(Vip);
