//! What the benches that start orderhost share: a throw-away PostgreSQL database and
//! percentiles. (A folder module: cargo does not take it for a bench target of its own.)

use std::time::Duration;

use sqlx::{Connection as _, Executor as _};

/// Creates the database `name` afresh on the PostgreSQL server at `server`; returns its URL.
pub async fn create_pg_database(server: &str, name: &str) -> String {
    let mut conn = sqlx::PgConnection::connect(server)
        .await
        .expect("PostgreSQL answers");
    conn.execute(format!("drop database if exists {name} with (force)").as_str())
        .await
        .expect("drop");
    conn.execute(format!("create database {name}").as_str())
        .await
        .expect("create database");
    let mut url = url::Url::parse(server).expect("DATABASE_URL");
    url.set_path(name);
    url.to_string()
}

/// Drops the database `name` (best effort: the bench's figures are already printed).
pub async fn drop_pg_database(server: &str, name: &str) {
    if let Ok(mut conn) = sqlx::PgConnection::connect(server).await {
        let _ = conn
            .execute(format!("drop database if exists {name} with (force)").as_str())
            .await;
    }
}

/// The `p` quantile (0–1) of `sorted`, nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}
