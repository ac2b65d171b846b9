//! The crate's one error type.

/// What a caller can branch on; see [`Error::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The named cluster (or the managed job) does not exist.
    NotFound,
    /// The write clashes with what is stored (e.g. creating a cluster whose name is taken).
    Conflict,
    /// The database URL is not one this crate understands.
    InvalidUrl,
    /// The database itself failed: IO, locking, connection, a corrupt row, a schema too new.
    Backend,
    /// The SQLite file is not a database, or a damaged one (garbage bytes, truncated): the
    /// message names the file and says to move it aside.
    Damaged,
}

/// Errors from [`crate::StateDb`]. Messages read well after "failed to ...".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// See [`ErrorKind::NotFound`].
    #[error("find cluster {name:?} in the state database; run `sky status -a` to list clusters")]
    NotFound {
        /// The cluster name that was looked up.
        name: String,
    },
    /// See [`ErrorKind::NotFound`]: no managed job with that id.
    #[error(
        "find managed job {job_id} in the state database; run `sky jobs queue -a` to list managed jobs"
    )]
    ManagedJobNotFound {
        /// The job id that was looked up.
        job_id: i64,
    },
    /// See [`ErrorKind::Conflict`].
    #[error("create cluster {name:?}: a cluster with that name already exists")]
    Conflict {
        /// The cluster name that is taken.
        name: String,
    },
    /// See [`ErrorKind::InvalidUrl`].
    #[error(
        "open state database {url:?}: {reason}; use `sqlite:///absolute/path/state.db` or `postgres://user@host/db`"
    )]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A database operation failed.
    #[error("{context}: {source}")]
    Backend {
        /// What was being done, e.g. "update cluster status".
        context: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// A stored value could not be read back.
    #[error("read {what} from the state database: {reason}")]
    Corrupt {
        /// Which value, e.g. `clusters.handle of "dev"`.
        what: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The database was migrated by a newer `sky`.
    #[error(
        "use state database schema version {found}: this sky supports up to {supported}; upgrade sky"
    )]
    SchemaTooNew {
        /// The version stored in the database.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// See [`ErrorKind::Damaged`].
    #[error(
        "the state database {} is damaged ({detail}): move it aside (`mv {} {}.damaged`, and its -wal and -shm files if any); sky then starts a fresh one and finds local clusters from their own records",
        path.display(), path.display(), path.display()
    )]
    Damaged {
        /// The SQLite file.
        path: std::path::PathBuf,
        /// What SQLite said, e.g. "file is not a database".
        detail: String,
    },
    /// Creating the database's parent directory failed.
    #[error("create state database directory {path:?}: {source}")]
    Io {
        /// The directory.
        path: std::path::PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The category a caller can branch on.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound { .. } | Error::ManagedJobNotFound { .. } => ErrorKind::NotFound,
            Error::Conflict { .. } => ErrorKind::Conflict,
            Error::InvalidUrl { .. } => ErrorKind::InvalidUrl,
            Error::Damaged { .. } => ErrorKind::Damaged,
            Error::Backend { .. }
            | Error::Corrupt { .. }
            | Error::SchemaTooNew { .. }
            | Error::Io { .. } => ErrorKind::Backend,
        }
    }

    pub(crate) fn not_found(name: &str) -> Self {
        Error::NotFound {
            name: name.to_owned(),
        }
    }

    /// This error as [`Error::Damaged`] when SQLite said the file at `path` is not a database
    /// or is damaged (SQLITE_NOTADB, SQLITE_CORRUPT and their extended codes).
    pub(crate) fn damaged_at(self, path: &std::path::Path) -> Self {
        let detail = match &self {
            Error::Backend { source, .. } => source.as_database_error().and_then(|d| {
                let code = d.code()?.parse::<i32>().ok()?;
                matches!(code & 0xff, SQLITE_CORRUPT | SQLITE_NOTADB)
                    .then(|| d.message().to_owned())
            }),
            _ => None,
        };
        match detail {
            Some(detail) => Error::Damaged {
                path: path.to_owned(),
                detail,
            },
            None => self,
        }
    }
}

/// SQLite's primary result codes for a damaged file and for a file that is no database.
const SQLITE_CORRUPT: i32 = 11;
const SQLITE_NOTADB: i32 = 26;

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches a context to sqlx results.
pub(crate) trait Context<T> {
    fn ctx(self, context: &str) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, sqlx::Error> {
    fn ctx(self, context: &str) -> Result<T> {
        self.map_err(|source| Error::Backend {
            context: context.to_owned(),
            source,
        })
    }
}
