//! Kept logs and private files under the jobs home: a job's controller log (one
//! human-readable, UTC-stamped line per event) and its 0600 secret file. The task run logs
//! (`logs/<id>/<task>.log`) are appended by the driver's `stream_logs`, and stay after the job
//! and its cluster are gone.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

/// Appends `<stamp> <line>` to `path` (best effort: the database is the truth).
pub(crate) fn append_line(path: &Path, now_ms: i64, line: &str) {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{} {line}", stamp(now_ms));
    }
}

/// `2026-12-07T19:58:55Z`.
pub(crate) fn stamp(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // civil-from-days (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// A 0600 file written whole (a temporary file renamed over it).
pub(crate) fn write_private<T: Serialize>(path: &std::path::Path, v: &T) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec(v).map_err(std::io::Error::other)?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Where each attempt's copy starts in a task's kept log (`<log>.starts`: attempt → byte
/// offset). The first copy of an attempt records the log's length; a later copy of the same
/// attempt (the controller restarted while it ran) cuts the log back to that offset, since it
/// copies the attempt's log from its start again. Readers following the log by offset see the
/// same bytes written again, nothing twice.
pub(crate) fn rewind_for_attempt(log: &Path, attempt: u32) -> std::io::Result<()> {
    let starts_path = log.with_extension("starts");
    let mut starts: std::collections::BTreeMap<u32, u64> = match std::fs::read(&starts_path) {
        Ok(b) => serde_json::from_slice(&b).unwrap_or_default(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
        Err(e) => return Err(e),
    };
    let len = match std::fs::metadata(log) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e),
    };
    match starts.get(&attempt) {
        Some(&at) if at < len => std::fs::OpenOptions::new()
            .write(true)
            .open(log)?
            .set_len(at),
        Some(_) => Ok(()),
        None => {
            starts.insert(attempt, len);
            write_private(&starts_path, &starts)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_copy_of_an_attempt_replaces_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("0.log");
        let append = |s: &str| {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap();
            f.write_all(s.as_bytes()).unwrap();
        };
        rewind_for_attempt(&log, 1).unwrap();
        append("a1\na2\n");
        // Attempt 2 (a recovery) starts after attempt 1's lines.
        rewind_for_attempt(&log, 2).unwrap();
        append("b1\n");
        // The controller restarted during attempt 2: its copy starts again from b1.
        rewind_for_attempt(&log, 2).unwrap();
        append("b1\nb2\n");
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "a1\na2\nb1\nb2\n");
    }
}
