//! Test-only crate: see `api/` for the integration test binary.
