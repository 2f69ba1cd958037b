//! Misbehaving test component: a validator that tries to open a TCP connection.
//! `std::net` on wasm32-wasip2 imports `wasi:sockets/*`, which is outside the host's
//! import allowlist, so upload validation must refuse it with `FORBIDDEN_IMPORT`.

wit_bindgen::generate!({ world: "validator", path: "../../wit/1.0.0" });

use exports::ordering::policy::validation::Guest;
use ordering::policy::types::{OrderContext, Violation};

struct BadForbiddenImport;

impl Guest for BadForbiddenImport {
    fn validate(_ctx: OrderContext) -> Vec<Violation> {
        match std::net::TcpStream::connect("127.0.0.1:9") {
            Ok(_) => vec![Violation {
                code: "NETWORK_REACHED".into(),
                message: "opened a TCP connection".into(),
                line: None,
            }],
            Err(_) => Vec::new(),
        }
    }
}

export!(BadForbiddenImport);
