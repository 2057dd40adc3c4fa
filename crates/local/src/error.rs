//! The local backend's error type, and how it maps onto the ports' [`PortError`].

use dlq_healer_core::ports::PortError;
use rusqlite::ErrorCode;
use std::path::PathBuf;

/// What went wrong in the local backend: what, to what, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The database file could not be opened or created.
    #[error(
        "cannot open the dlq-healer database {path}: {reason}; check that the directory exists and is writable"
    )]
    Open {
        /// The database file.
        path: PathBuf,
        /// Why, in words.
        reason: String,
    },
    /// The file exists but is not a SQLite database (or is damaged).
    #[error(
        "{path} is not a dlq-healer database (not SQLite, or damaged): {reason}; point to another file or move this one away"
    )]
    NotADatabase {
        /// The file.
        path: PathBuf,
        /// What SQLite said.
        reason: String,
    },
    /// The file is an SQLite database of something else: opening it would add the store's
    /// tables to it.
    #[error(
        "{path} is an SQLite database of something else (its tables include {tables}), not a dlq-healer one; give dlq-healer a file of its own (--db)"
    )]
    ForeignDatabase {
        /// The file.
        path: PathBuf,
        /// Some of its tables, quoted.
        tables: String,
    },
    /// The database file can only be read.
    #[error(
        "the database {path} can only be read (its permissions, or its file system); dlq-healer writes to it even to read a queue, whose receives hide the messages they hand out"
    )]
    ReadOnly {
        /// The file.
        path: PathBuf,
    },
    /// The database was written by a newer dlq-healer.
    #[error(
        "the database {path} has schema version {found}, newer than this build understands ({known}); upgrade dlq-healer"
    )]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// The version found in the file.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// Another process held the database locked for longer than the busy timeout.
    #[error(
        "{operation} {target}: the database {path} stayed locked by another process; try again, or stop the process holding it"
    )]
    Busy {
        /// What was attempted.
        operation: String,
        /// What it was attempted on.
        target: String,
        /// The database file.
        path: PathBuf,
    },
    /// The disk holding the database or the archive is full.
    #[error("{operation} {target}: the disk holding {path} is full; free some space and try again")]
    DiskFull {
        /// What was attempted.
        operation: String,
        /// What it was attempted on.
        target: String,
        /// The file that could not grow.
        path: PathBuf,
    },
    /// Any other database failure.
    #[error("{operation} {target} failed in the database {path}: {source}")]
    Database {
        /// What was attempted.
        operation: String,
        /// What it was attempted on.
        target: String,
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: Box<rusqlite::Error>,
    },
    /// A file of the archive could not be read or written.
    #[error("{operation} {path} failed: {source}")]
    Io {
        /// What was attempted.
        operation: String,
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A queue that was named does not exist.
    #[error("queue {0:?} does not exist")]
    NoSuchQueue(String),
    /// Settings or arguments that cannot work.
    #[error("{0}")]
    Invalid(String),
    /// Data in the database that cannot be read back.
    #[error("{what} in the database {path} is damaged: {reason}")]
    Corrupt {
        /// What could not be read.
        what: String,
        /// The database file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl LocalError {
    /// Classify a SQLite error: locked and full disks get their own variants.
    pub(crate) fn sql(
        operation: &str,
        target: &str,
        path: &std::path::Path,
        source: rusqlite::Error,
    ) -> Self {
        match source.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => LocalError::Busy {
                operation: operation.to_string(),
                target: target.to_string(),
                path: path.to_path_buf(),
            },
            Some(ErrorCode::ReadOnly) => LocalError::ReadOnly {
                path: path.to_path_buf(),
            },
            Some(ErrorCode::DiskFull) => LocalError::DiskFull {
                operation: operation.to_string(),
                target: target.to_string(),
                path: path.to_path_buf(),
            },
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
                LocalError::NotADatabase {
                    path: path.to_path_buf(),
                    reason: source.to_string(),
                }
            }
            _ => LocalError::Database {
                operation: operation.to_string(),
                target: target.to_string(),
                path: path.to_path_buf(),
                source: Box::new(source),
            },
        }
    }

    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            LocalError::Busy { .. } | LocalError::DiskFull { .. } | LocalError::Io { .. } => true,
            LocalError::Database { .. } => true,
            LocalError::Open { .. }
            | LocalError::ReadOnly { .. }
            | LocalError::NotADatabase { .. }
            | LocalError::ForeignDatabase { .. }
            | LocalError::NewerSchema { .. }
            | LocalError::NoSuchQueue(_)
            | LocalError::Invalid(_)
            | LocalError::Corrupt { .. } => false,
        }
    }

    /// This error as a port error for `operation` on `target`.
    pub fn into_port(self, operation: &str, target: &str) -> PortError {
        let retryable = self.is_retryable();
        let message = self.to_string();
        if retryable {
            PortError::retryable(operation, target, message)
        } else {
            PortError::permanent(operation, target, message)
        }
    }
}
