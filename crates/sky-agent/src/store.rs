//! The head's job table, persisted in `node_home/.sky/`: `jobs.json` is a snapshot (written to a
//! temporary file and renamed, so a crash leaves the old or the new one, never half of one) and
//! `jobs.journal` holds one JSON line per job change since the snapshot (appends cost O(1)
//! however long the table; a torn last line is ignored). Loading replays the journal over the
//! snapshot and compacts both into a new snapshot.
//!
//! Secrets (`JobSpec::secret_keys`) are stored `<redacted>`: a job's spec on disk is only a
//! record (a restarted head marks unfinished jobs FAILED_DRIVER; it never runs a stored spec).
//! Every file and directory the agent creates is its owner's only (0600 / 0700, set when
//! creating it).

use std::borrow::Cow;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::protocol::{JobRecord, JobSpec, JobStatus};
use crate::{AgentError, clock};

/// One job as stored: the public record plus what the head needs to run it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct StoredJob {
    pub record: JobRecord,
    pub spec: JobSpec,
    /// `YYYY-MM-DD-HH-MM-SS-ffffff`, the log directory's and task id's timestamp.
    pub run_timestamp: String,
}

impl StoredJob {
    /// The job as written to disk: secret env values redacted.
    fn on_disk(&self) -> Cow<'_, StoredJob> {
        if self.spec.secret_keys.is_empty() {
            return Cow::Borrowed(self);
        }
        Cow::Owned(StoredJob {
            record: self.record.clone(),
            spec: self.spec.redacted(),
            run_timestamp: self.run_timestamp.clone(),
        })
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct JobsFile {
    next_id: u64,
    jobs: Vec<StoredJob>,
}

/// The job table in memory (ascending id) and its files.
#[derive(Debug)]
pub(crate) struct JobStore {
    path: PathBuf,
    journal_path: PathBuf,
    journal: Option<std::fs::File>,
    journal_lines: usize,
    next_id: u64,
    jobs: Vec<StoredJob>,
    dirty: Vec<u64>,
}

impl JobStore {
    /// Loads `sky_dir/jobs.json` (empty when absent).
    pub(crate) fn load(sky_dir: &Path) -> Result<Self, AgentError> {
        let path = sky_dir.join("jobs.json");
        let file = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice::<JobsFile>(&bytes).map_err(|e| AgentError::Store {
                    path: path.clone(),
                    message: e.to_string(),
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => JobsFile::default(),
            Err(e) => return Err(AgentError::io(format!("read {}", path.display()), e)),
        };
        let journal_path = sky_dir.join("jobs.journal");
        let mut store = Self {
            path,
            journal_path,
            journal: None,
            journal_lines: 0,
            next_id: file.next_id,
            jobs: file.jobs,
            dirty: Vec::new(),
        };
        store.jobs.sort_by_key(|j| j.record.id);
        if let Ok(text) = std::fs::read(&store.journal_path) {
            for line in text.split(|&b| b == b'\n') {
                if let Ok(job) = serde_json::from_slice::<StoredJob>(line) {
                    store.upsert(job);
                }
            }
            store.save()?;
        }
        let max_id = store.jobs.last().map_or(0, |j| j.record.id);
        store.next_id = store.next_id.max(max_id + 1).max(1);
        Ok(store)
    }

    fn upsert(&mut self, job: StoredJob) {
        match self
            .jobs
            .binary_search_by_key(&job.record.id, |j| j.record.id)
        {
            Ok(i) => self.jobs[i] = job,
            Err(i) => self.jobs.insert(i, job),
        }
    }

    pub(crate) fn jobs(&self) -> &[StoredJob] {
        &self.jobs
    }

    /// Adds a new job (its id from `alloc_id`).
    pub(crate) fn insert(&mut self, job: StoredJob) {
        self.dirty.push(job.record.id);
        self.upsert(job);
    }

    /// Appends every job changed since the last call to the journal (compacting into a
    /// snapshot now and then).
    pub(crate) fn flush(&mut self) -> Result<(), AgentError> {
        if self.dirty.is_empty() {
            return Ok(());
        }
        if self.journal_lines > 1000 + 2 * self.jobs.len() {
            return self.save();
        }
        let mut buf = Vec::new();
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        for id in dirty {
            if let Some(j) = self.get(id) {
                serde_json::to_writer(&mut buf, &j.on_disk()).map_err(|e| AgentError::Store {
                    path: self.journal_path.clone(),
                    message: e.to_string(),
                })?;
                buf.push(b'\n');
                self.journal_lines += 1;
            }
        }
        let ctx = || format!("append to {}", self.journal_path.display());
        if self.journal.is_none() {
            let f =
                open_private_append(&self.journal_path).map_err(|e| AgentError::io(ctx(), e))?;
            self.journal = Some(f);
        }
        if let Some(f) = self.journal.as_mut() {
            f.write_all(&buf).map_err(|e| AgentError::io(ctx(), e))?;
        }
        Ok(())
    }

    pub(crate) fn alloc_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    pub(crate) fn get(&self, id: u64) -> Option<&StoredJob> {
        self.index(id).map(|i| &self.jobs[i])
    }

    /// A job to change (recorded by the next `flush`).
    pub(crate) fn get_mut(&mut self, id: u64) -> Option<&mut StoredJob> {
        let i = self.index(id)?;
        self.dirty.push(id);
        Some(&mut self.jobs[i])
    }

    fn index(&self, id: u64) -> Option<usize> {
        self.jobs.binary_search_by_key(&id, |j| j.record.id).ok()
    }

    /// Every non-terminal job → FAILED_DRIVER. Returns their ids.
    pub(crate) fn fail_non_terminal(&mut self) -> Vec<u64> {
        let now = clock::now_unix();
        let mut ids = Vec::new();
        for j in &mut self.jobs {
            if !j.record.status.is_terminal() {
                j.record.status = JobStatus::FailedDriver;
                j.record.ended_at = Some(now);
                ids.push(j.record.id);
            }
        }
        ids
    }

    /// Writes the whole table as a new snapshot and empties the journal.
    pub(crate) fn save(&mut self) -> Result<(), AgentError> {
        let file = JobsFileRef {
            next_id: self.next_id,
            jobs: self.jobs.iter().map(StoredJob::on_disk).collect(),
        };
        let bytes = serde_json::to_vec(&file).map_err(|e| AgentError::Store {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        write_atomic(&self.path, &bytes)
            .map_err(|e| AgentError::io(format!("write {}", self.path.display()), e))?;
        self.journal = None;
        self.journal_lines = 0;
        self.dirty.clear();
        match std::fs::remove_file(&self.journal_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(AgentError::io(
                format!("remove {}", self.journal_path.display()),
                e,
            )),
            _ => Ok(()),
        }
    }
}

#[derive(Serialize)]
struct JobsFileRef<'a> {
    next_id: u64,
    jobs: Vec<Cow<'a, StoredJob>>,
}

/// Writes `path` (mode 0600) via a new sibling temporary file and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(
        ".tmp{}.{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = PathBuf::from(tmp);
    // Left behind by a crashed process with the same pid, perhaps with another mode.
    let _ = std::fs::remove_file(&tmp);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes))
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Opens `path` for appending, creating it readable by its owner only.
pub(crate) fn open_private_append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// `create_dir_all`, each directory it creates accessible to its owner only.
pub(crate) fn create_private_dir_all(path: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// For the CLI when no head agent is running (it was killed, or the node restarted): marks
/// every non-terminal job in `node_home/.sky/jobs.json` FAILED_DRIVER and kills the process
/// groups the dead agent recorded on this node. Returns the ids it marked. A running agent
/// does the same by itself when it starts; do not call this while one is running.
pub fn mark_orphans_failed_driver(node_home: &Path) -> Result<Vec<u64>, AgentError> {
    let sky_dir = node_home.join(".sky");
    crate::proc::kill_recorded_orphans(&sky_dir, std::time::Duration::from_secs(2));
    if !sky_dir.join("jobs.json").exists() && !sky_dir.join("jobs.journal").exists() {
        return Ok(Vec::new());
    }
    let mut store = JobStore::load(&sky_dir)?;
    let ids = store.fail_non_terminal();
    if !ids.is_empty() {
        store.save()?;
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: u64, status: JobStatus) -> StoredJob {
        StoredJob {
            record: JobRecord {
                id,
                name: None,
                user: "u".into(),
                submitted_at: 0.0,
                started_at: None,
                ended_at: None,
                status,
                exit_codes: Vec::new(),
                log_dir: String::new(),
                resources: String::new(),
                num_nodes: 1,
            },
            spec: JobSpec::default(),
            run_timestamp: String::new(),
        }
    }

    #[test]
    fn journal_replays_over_the_snapshot_and_ignores_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = JobStore::load(dir.path()).unwrap();
        let a = s.alloc_id();
        s.insert(job(a, JobStatus::Pending));
        s.save().unwrap();
        let b = s.alloc_id();
        s.insert(job(b, JobStatus::Pending));
        s.get_mut(a).unwrap().record.status = JobStatus::Running;
        s.flush().unwrap();
        // a crash in the middle of an append
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("jobs.journal"))
            .unwrap();
        f.write_all(b"{\"record\":{\"id\":").unwrap();
        drop(f);
        let mut s = JobStore::load(dir.path()).unwrap();
        assert_eq!(s.jobs().len(), 2);
        assert_eq!(s.get(a).unwrap().record.status, JobStatus::Running);
        assert_eq!(s.fail_non_terminal(), vec![a, b]);
        assert_eq!(s.alloc_id(), 3);
        assert!(
            !dir.path().join("jobs.journal").exists(),
            "compacted on load"
        );
    }
}
