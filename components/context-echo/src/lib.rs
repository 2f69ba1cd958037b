//! Test component (WIT 1.1, `validator`): rejects every order with one violation,
//! `CONTEXT_ECHO`, whose message is the order context it received in Rust's debug
//! notation, and a second one, `CONFIG_ECHO`, with the value of config `echo-key`
//! (when that key is set). The host tests read them to check what a 1.1 component is
//! given: discount codes, attributes, customer tags and history, product tags, vendor,
//! category and recent units, and structured config values as JSON text.

wit_bindgen::generate!({ world: "validator", path: "../../wit/1.1.0" });

use exports::ordering::policy::validation::Guest;
use ordering::policy::host::config;
use ordering::policy::types::{OrderContext, Violation};

struct Echo;

impl Guest for Echo {
    fn validate(ctx: OrderContext) -> Vec<Violation> {
        let mut violations = vec![Violation {
            code: "CONTEXT_ECHO".into(),
            message: format!("{ctx:?}"),
            line: None,
        }];
        if let Some(key) = config("echo-key") {
            violations.push(Violation {
                code: "CONFIG_ECHO".into(),
                message: config(&key).unwrap_or_else(|| "<unset>".into()),
                line: None,
            });
        }
        violations
    }
}

export!(Echo);
