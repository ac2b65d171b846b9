//! A lost or damaged state database. Every command that builds the backend first adopts the
//! clusters the database lost (`Backend::adopt_lost_clusters`: the local cloud finds them from
//! its node directories) and says so; a damaged SQLite file stops commands with a message that
//! names it and says what to do, except `sky down`, which carries on with an in-memory state
//! filled from the clusters' own records, so a user can tear them down without the file.

use sky_launch::Backend;
use sky_state::{ErrorKind, StateDb};

use crate::exit;

/// Why the backend could not be built, and the exit code to leave with.
#[derive(Debug)]
pub struct BackendError {
    pub message: String,
    pub code: i32,
}

impl From<String> for BackendError {
    /// A problem with the user's files or settings (exit 3).
    fn from(message: String) -> Self {
        BackendError {
            message,
            code: exit::INVALID_INPUT,
        }
    }
}

impl BackendError {
    fn failure(message: String) -> Self {
        BackendError {
            message,
            code: exit::FAILURE,
        }
    }
}

/// Opens the state database at `url` and reads its clusters once (a damaged file can open and
/// fail on its first read). A damaged SQLite file is an error (exit 1) with sky-state's message,
/// which names the file and says what to do; with `in_memory_if_damaged` (`sky down`) it says
/// so and returns a private in-memory database instead, for [`adopt`] to fill.
pub async fn open_state(url: &str, in_memory_if_damaged: bool) -> Result<StateDb, BackendError> {
    let opened = match StateDb::open(url).await {
        Ok(db) => db.list_clusters().await.map(|_| db),
        Err(e) => Err(e),
    };
    match opened {
        Ok(db) => Ok(db),
        Err(e) if e.kind() == ErrorKind::Damaged && in_memory_if_damaged => {
            eprintln!("{e}");
            eprintln!(
                "sky down goes on without it: it finds local clusters from their own records and tears them down; the damaged file is left as it is."
            );
            StateDb::open_in_memory().await.map_err(|e| {
                BackendError::failure(format!("failed to open an in-memory state database: {e}"))
            })
        }
        Err(e) if e.kind() == ErrorKind::Damaged => Err(BackendError::failure(e.to_string())),
        Err(e) => Err(format!("failed to open the state database {url}: {e}").into()),
    }
}

/// Records the clusters the state database lost, one line each on stderr.
pub async fn adopt(backend: &Backend) -> Result<(), BackendError> {
    match backend.adopt_lost_clusters().await {
        Ok(names) => {
            for name in names {
                eprintln!(
                    "Found cluster `{name}` from its own records (the state database had lost it)."
                );
            }
            Ok(())
        }
        Err(e)
            if e.state_error()
                .is_some_and(|s| s.kind() == ErrorKind::Damaged) =>
        {
            Err(BackendError::failure(
                e.state_error().map(ToString::to_string).unwrap_or_default(),
            ))
        }
        Err(e) => Err(BackendError::failure(format!(
            "failed to look for clusters the state database lost: {e}"
        ))),
    }
}
