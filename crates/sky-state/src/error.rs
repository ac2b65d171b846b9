//! The crate's one error type.

/// What a caller can branch on; see [`Error::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The named cluster does not exist.
    NotFound,
    /// The write clashes with what is stored (e.g. creating a cluster whose name is taken).
    Conflict,
    /// The database URL is not one this crate understands.
    InvalidUrl,
    /// The database itself failed: IO, locking, connection, a corrupt row, a schema too new.
    Backend,
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
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::Conflict { .. } => ErrorKind::Conflict,
            Error::InvalidUrl { .. } => ErrorKind::InvalidUrl,
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
}

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
