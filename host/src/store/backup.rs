//! Online backup and restore of the embedded SQLite database (`orderhost backup` and
//! `orderhost restore`). PostgreSQL has its own tools (`pg_dump`, `pg_basebackup`), and
//! these commands say so instead of half-doing their job.
//!
//! A backup is `VACUUM INTO` a temporary file beside the target: one read transaction, so
//! the copy is the consistent state of one moment while the service keeps writing (WAL
//! readers do not block the writer). It is flushed, checked, then renamed into place, so
//! the named file is either absent or a whole, verified backup. A restore checks that the
//! file is a sound orderhost database this binary can serve, refuses to replace a
//! database that another process has open, drops the old write-ahead log (its frames
//! belong to the old file) and renames a flushed copy into place.

use std::{
    io,
    path::{Path, PathBuf},
    time::Duration,
};

use sqlx::{
    ConnectOptions as _, Connection as _, SqliteConnection,
    sqlite::{SqliteConnectOptions, SqliteLockingMode},
};

use super::{SQLITE_MIGRATIONS, sqlite_options, sqlite_path};
use crate::config::StoreConfig;

/// Why a backup or a restore was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// `DATABASE_URL` names PostgreSQL: its own tools do this job.
    #[error(
        "DATABASE_URL is a PostgreSQL database: `orderhost {0}` serves the embedded SQLite database only. Back up PostgreSQL with `pg_dump -Fc -f orderhost.dump \"$DATABASE_URL\"` (restore with `pg_restore --clean --if-exists -d \"$DATABASE_URL\" orderhost.dump`) or with base backups and WAL archiving (pg_basebackup); see the README, \"Operations: durability and backup\""
    )]
    Postgres(&'static str),
    /// `DATABASE_URL` is neither a SQLite file nor PostgreSQL.
    #[error("DATABASE_URL {0:?} does not name a SQLite database file (sqlite://path/to/file.db)")]
    NotAFile(String),
    /// The database to back up does not exist.
    #[error("no database to back up at {0} (check DATABASE_URL)")]
    NoDatabase(PathBuf),
    /// The backup target exists already.
    #[error("{0} exists already: a backup never overwrites a file; choose a new name")]
    BackupExists(PathBuf),
    /// The backup file to restore does not exist.
    #[error("no backup file at {0}")]
    NoBackup(PathBuf),
    /// The file is not a SQLite database at all.
    #[error("{path} is not a SQLite database: {reason}")]
    NotSqlite {
        /// The file.
        path: PathBuf,
        /// What SQLite said.
        reason: String,
    },
    /// A SQLite database, but not one of orderhost's.
    #[error("{0} is a SQLite database but not an orderhost one (no migrations or orders table)")]
    NotOrderhost(PathBuf),
    /// `pragma integrity_check` found damage.
    #[error("{path} fails SQLite's integrity check: {report}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The first lines of the report.
        report: String,
    },
    /// The database was written by a newer orderhost (a migration this binary lacks).
    #[error(
        "{path} has schema version {version}, newer than this orderhost knows ({known}): restore it with the orderhost release that wrote it"
    )]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// The newest migration applied to it.
        version: i64,
        /// The newest migration this binary has.
        known: i64,
    },
    /// The restore target exists and `--force` was not given.
    #[error(
        "{0} exists: stop every orderhost using it, then run restore again with --force to replace it"
    )]
    TargetExists(PathBuf),
    /// Another process has the restore target open.
    #[error("{0} is in use by another process (a running orderhost?): stop it before restoring")]
    InUse(PathBuf),
    /// Backup and target are the same file.
    #[error("{0} is both the backup and the database to replace")]
    SameFile(PathBuf),
    /// A file-system step failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// To which file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// SQLite failed in an unexpected way.
    #[error("SQLite error on {path}: {source}")]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: sqlx::Error,
    },
}

/// What a checked database file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbSummary {
    /// Orders in it.
    pub orders: i64,
    /// The newest migration applied to it.
    pub schema_version: i64,
    /// Its size in bytes.
    pub bytes: u64,
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> BackupError + use<> {
    let path = path.to_owned();
    move |source| BackupError::Io {
        action,
        path,
        source,
    }
}

fn sqlite_err(path: &Path) -> impl FnOnce(sqlx::Error) -> BackupError + use<> {
    let path = path.to_owned();
    move |source| BackupError::Sqlite { path, source }
}

/// The SQLite file of `cfg`, or why there is none.
fn database_file(cfg: &StoreConfig, command: &'static str) -> Result<PathBuf, BackupError> {
    let url = cfg.database_url.trim();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Err(BackupError::Postgres(command));
    }
    if !cfg.is_sqlite() {
        return Err(BackupError::NotAFile(url.to_owned()));
    }
    sqlite_path(url).ok_or_else(|| BackupError::NotAFile(url.to_owned()))
}

/// `path` beside itself with a hidden, per-process name: renamed onto `path` when whole.
fn temp_beside(path: &Path, what: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{what}-{}", std::process::id()))
}

/// The folder holding `path` (`.` for a bare file name).
fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Flushes `path`'s data, then its folder's entry (so a rename survives a power loss).
fn flush_file_and_folder(path: &Path) -> Result<(), BackupError> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_err("flush", path))?;
    let folder = folder_of(path);
    std::fs::File::open(&folder)
        .and_then(|f| f.sync_all())
        .map_err(io_err("flush the folder", &folder))
}

/// Writes a consistent copy of the live SQLite database of `cfg` to `dest` while the
/// service may keep writing; `dest` must not exist. Returns what the copy holds.
pub async fn backup(cfg: &StoreConfig, dest: &Path) -> Result<DbSummary, BackupError> {
    let source = database_file(cfg, "backup")?;
    if !source.is_file() {
        return Err(BackupError::NoDatabase(source));
    }
    if dest.exists() {
        return Err(BackupError::BackupExists(dest.to_owned()));
    }
    let folder = folder_of(dest);
    std::fs::create_dir_all(&folder).map_err(io_err("create the folder", &folder))?;
    let temp = temp_beside(dest, "partial");
    let result = write_backup(cfg, &source, &temp, dest).await;
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

async fn write_backup(
    cfg: &StoreConfig,
    source: &Path,
    temp: &Path,
    dest: &Path,
) -> Result<DbSummary, BackupError> {
    // The service's own connection settings (WAL, busy timeout), without creating a file.
    let mut conn = sqlite_options(&cfg.database_url, cfg.sqlite_synchronous)
        .map_err(|_| BackupError::NotAFile(cfg.database_url.clone()))?
        .create_if_missing(false)
        .connect()
        .await
        .map_err(sqlite_err(source))?;
    check_orderhost(&mut conn, source).await?;
    match std::fs::remove_file(temp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("remove", temp)(e)),
    }
    let temp_name = temp
        .to_str()
        .ok_or_else(|| io_err("name", temp)(io::Error::other("the path is not UTF-8")))?;
    sqlx::query("vacuum into $1")
        .bind(temp_name)
        .execute(&mut conn)
        .await
        .map_err(sqlite_err(source))?;
    let _ = conn.close().await;
    // VACUUM INTO does not flush what it wrote.
    flush_file_and_folder(temp)?;
    let summary = inspect(temp).await?;
    std::fs::rename(temp, dest).map_err(io_err("rename the backup to", dest))?;
    flush_file_and_folder(dest)?;
    Ok(summary)
}

/// Opens `path` read-only without side files (no WAL, no locks: `immutable`), checks that
/// it is a sound orderhost database this binary can serve, and says what it holds.
pub async fn inspect(path: &Path) -> Result<DbSummary, BackupError> {
    let bytes = std::fs::metadata(path).map_err(io_err("read", path))?.len();
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .immutable(true)
        .connect()
        .await
        .map_err(|e| not_sqlite(path, e))?;
    let report: Vec<String> = sqlx::query_scalar("pragma integrity_check")
        .fetch_all(&mut conn)
        .await
        .map_err(|e| not_sqlite(path, e))?;
    if report != ["ok"] {
        return Err(BackupError::Corrupt {
            path: path.to_owned(),
            report: report.into_iter().take(5).collect::<Vec<_>>().join("; "),
        });
    }
    let schema_version = check_orderhost(&mut conn, path).await?;
    let known = SQLITE_MIGRATIONS
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0);
    if schema_version > known {
        return Err(BackupError::NewerSchema {
            path: path.to_owned(),
            version: schema_version,
            known,
        });
    }
    let orders: i64 = sqlx::query_scalar("select count(*) from orders")
        .fetch_one(&mut conn)
        .await
        .map_err(sqlite_err(path))?;
    let _ = conn.close().await;
    Ok(DbSummary {
        orders,
        schema_version,
        bytes,
    })
}

fn not_sqlite(path: &Path, err: sqlx::Error) -> BackupError {
    match err.as_database_error() {
        // SQLITE_NOTADB (26) and SQLITE_CORRUPT (11): not a database, or a damaged one.
        Some(db) if matches!(db.code().as_deref(), Some("26") | Some("11")) => {
            BackupError::NotSqlite {
                path: path.to_owned(),
                reason: db.message().to_owned(),
            }
        }
        _ => BackupError::Sqlite {
            path: path.to_owned(),
            source: err,
        },
    }
}

/// The newest applied migration, when `conn` is an orderhost database.
async fn check_orderhost(conn: &mut SqliteConnection, path: &Path) -> Result<i64, BackupError> {
    let tables: i64 = sqlx::query_scalar(
        "select count(*) from sqlite_master where type = 'table' \
         and name in ('_sqlx_migrations', 'orders')",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| not_sqlite(path, e))?;
    if tables != 2 {
        return Err(BackupError::NotOrderhost(path.to_owned()));
    }
    sqlx::query_scalar("select coalesce(max(version), 0) from _sqlx_migrations where success")
        .fetch_one(&mut *conn)
        .await
        .map_err(sqlite_err(path))
}

/// Whether another connection (another process) has the SQLite file at `path` open: a
/// connection in WAL mode holds a shared lock on the file for as long as it is open, so
/// an exclusive lock is refused at once.
async fn in_use(path: &Path) -> Result<bool, BackupError> {
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .busy_timeout(Duration::ZERO)
        .locking_mode(SqliteLockingMode::Exclusive)
        .connect()
        .await
        .map_err(|e| not_sqlite(path, e))?;
    let result = sqlx::raw_sql("begin exclusive; rollback")
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
    match result {
        Ok(_) => Ok(false),
        // SQLITE_BUSY (5) or SQLITE_LOCKED (6).
        Err(err)
            if err
                .as_database_error()
                .and_then(|db| db.code())
                .is_some_and(|code| code == "5" || code == "6") =>
        {
            Ok(true)
        }
        Err(err) => Err(not_sqlite(path, err)),
    }
}

/// Replaces the SQLite database of `cfg` by the backup at `source`, after checking it.
/// An existing database is replaced only with `force` and only when no process has it
/// open. Returns what the restored database holds.
pub async fn restore(
    cfg: &StoreConfig,
    source: &Path,
    force: bool,
) -> Result<DbSummary, BackupError> {
    let target = database_file(cfg, "restore")?;
    if !source.is_file() {
        return Err(BackupError::NoBackup(source.to_owned()));
    }
    if target.exists() && std::fs::canonicalize(&target).ok() == std::fs::canonicalize(source).ok()
    {
        return Err(BackupError::SameFile(target));
    }
    let summary = inspect(source).await?;
    if target.exists() {
        if !force {
            return Err(BackupError::TargetExists(target));
        }
        if in_use(&target).await? {
            return Err(BackupError::InUse(target));
        }
    }
    let folder = folder_of(&target);
    std::fs::create_dir_all(&folder).map_err(io_err("create the folder", &folder))?;
    let temp = temp_beside(&target, "restore");
    let copied = std::fs::copy(source, &temp)
        .map_err(io_err("copy the backup to", &temp))
        .and_then(|_| flush_file_and_folder(&temp));
    if let Err(err) = copied {
        let _ = std::fs::remove_file(&temp);
        return Err(err);
    }
    // The old write-ahead log and its index describe the old file: left beside the new
    // one, SQLite would replay the old frames into it. They go first, so a crash halfway
    // leaves the old database without its log (it was being replaced), never the new
    // database with a foreign log.
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut side = target.clone().into_os_string();
        side.push(suffix);
        let side = PathBuf::from(side);
        match std::fs::remove_file(&side) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                let _ = std::fs::remove_file(&temp);
                return Err(io_err("remove", &side)(e));
            }
        }
    }
    std::fs::rename(&temp, &target).map_err(io_err("rename the restored copy to", &target))?;
    flush_file_and_folder(&target)?;
    Ok(summary)
}
