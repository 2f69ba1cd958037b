//! Test component: a validator that probes its sandbox and reports what it saw
//! as violations, so host tests can assert what WASI grants:
//! - `FILE_READ_OK` / `FILE_READ_DENIED`: reading `/etc/passwd`;
//! - `ENV_SEEN` / `ENV_EMPTY`: the `HOME` variable (count of all vars in the message);
//! - `CLOCK_MS:<ms>`: `SystemTime::now()` as Unix epoch milliseconds;
//! - `RANDOM:<u64>`: a hash keyed by a fresh `RandomState`, i.e. the random seed.
//!
//! It also writes one line to stdout and one to stderr, for log capture tests.

wit_bindgen::generate!({ world: "validator", path: "../../wit/1.0.0" });

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::{SystemTime, UNIX_EPOCH};

use exports::ordering::policy::validation::Guest;
use ordering::policy::types::{OrderContext, Violation};

struct BadSandbox;

fn seen(code: String, message: String) -> Violation {
    Violation {
        code,
        message,
        line: None,
    }
}

impl Guest for BadSandbox {
    fn validate(_ctx: OrderContext) -> Vec<Violation> {
        println!("bad-sandbox: stdout probe");
        eprintln!("bad-sandbox: stderr probe");

        let file = match std::fs::read_to_string("/etc/passwd") {
            Ok(text) => seen("FILE_READ_OK".into(), format!("read {} bytes", text.len())),
            Err(err) => seen("FILE_READ_DENIED".into(), err.to_string()),
        };
        let vars = std::env::vars_os().count();
        let env = match std::env::var("HOME") {
            Ok(home) => seen("ENV_SEEN".into(), format!("HOME={home}; {vars} vars")),
            Err(_) => seen("ENV_EMPTY".into(), format!("HOME unset; {vars} vars")),
        };
        let clock_ms = match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(since) => i128::try_from(since.as_millis()).unwrap_or(i128::MAX),
            Err(before) => -i128::try_from(before.duration().as_millis()).unwrap_or(i128::MAX),
        };
        let clock = seen(format!("CLOCK_MS:{clock_ms}"), "SystemTime::now()".into());
        let random = RandomState::new().hash_one(0u64);
        let random = seen(format!("RANDOM:{random}"), "RandomState hash of 0".into());
        vec![file, env, clock, random]
    }
}

export!(BadSandbox);
