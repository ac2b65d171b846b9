//! COPY: a bucket object downloaded as a file, or a bucket prefix into a directory, with
//! parallel ranged reads ([`download_prefix`]), and a local
//! directory uploaded to a bucket (multipart above a threshold). Concurrency is bounded by a
//! semaphore over ranges (not files), listing is streamed page by page, and each range is
//! retried on transient errors (a failure mid-stream restarts that range only).

use std::io::SeekFrom;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use sky_provider::objstore::{
    ByteRange, ObjectMeta, ObjectStore, ObjectStoreError, ObjectStoreErrorKind as K,
};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::{RetryPolicy, list_pages, with_retry};

/// Knobs of a copy.
#[derive(Clone, Debug)]
pub struct CopyOptions {
    /// Ranges (downloads) or parts/files (uploads) in flight at once.
    pub concurrency: usize,
    /// Bytes per ranged read (at least) and per multipart part.
    pub chunk_size: u64,
    /// At most this many ranges per object: a large object is read in `size / this` ranges
    /// (fewer, larger requests: servers that read the whole object per request, as moto does,
    /// would otherwise slow down with the object's size).
    pub max_ranges_per_object: u64,
    /// Files at least this large are uploaded in parts.
    pub multipart_threshold: u64,
    pub retry: RetryPolicy,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            concurrency: 32,
            chunk_size: 16 * 1024 * 1024,
            max_ranges_per_object: 8,
            multipart_threshold: 64 * 1024 * 1024,
            retry: RetryPolicy::default(),
        }
    }
}

/// What a copy moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyStats {
    pub files: u64,
    pub bytes: u64,
}

fn io(what: String, e: std::io::Error) -> ObjectStoreError {
    let kind = match e.kind() {
        std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::ConnectionAborted
        | std::io::ErrorKind::UnexpectedEof
        | std::io::ErrorKind::TimedOut => K::Transient,
        _ => K::Other,
    };
    ObjectStoreError::new(kind, format!("{what}: {e}"))
}

/// The local path of `key` under `dest` once `prefix` is removed; `None` for a key that would
/// escape `dest` (`..`, absolute) or names a directory marker (`dir/`).
fn local_path(dest: &Path, prefix: &str, key: &str) -> Option<PathBuf> {
    let rel = key.strip_prefix(prefix)?.trim_start_matches('/');
    if rel.is_empty() || rel.ends_with('/') {
        return None;
    }
    let p = Path::new(rel);
    p.components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then(|| dest.join(p))
}

/// Reads `range` of `key` and writes it at its offset in `path` (already sized).
async fn fetch_range(
    store: &dyn ObjectStore,
    bucket: &str,
    key: &str,
    range: ByteRange,
    path: &Path,
) -> Result<u64, ObjectStoreError> {
    let mut r = store.get(bucket, key, Some(range)).await?;
    let mut f = tokio::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .await
        .map_err(|e| io(format!("opening {}", path.display()), e))?;
    f.seek(SeekFrom::Start(range.start))
        .await
        .map_err(|e| io(format!("seeking in {}", path.display()), e))?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let k = r
            .read(&mut buf)
            .await
            .map_err(|e| io(format!("reading `{key}` from bucket `{bucket}`"), e))?;
        if k == 0 {
            break;
        }
        f.write_all(&buf[..k])
            .await
            .map_err(|e| io(format!("writing {}", path.display()), e))?;
        n += k as u64;
    }
    f.flush()
        .await
        .map_err(|e| io(format!("writing {}", path.display()), e))?;
    let want = range.end.map(|e| e - range.start);
    if want.is_some_and(|w| w != n) {
        return Err(ObjectStoreError::new(
            K::Transient,
            format!(
                "reading `{key}` from bucket `{bucket}`: got {n} bytes of a {}-byte range",
                want.unwrap_or(0)
            ),
        ));
    }
    Ok(n)
}

/// Downloads a bucket sub-path, as SkyPilot's COPY of `<store>://bucket/<path>` does:
///
/// - if `path` names an object (an exact key; it does not end with `/`), that object is
///   downloaded as the file `dest` (or, when `dest` is an existing directory, as
///   `dest/<the key's last segment>`, like `cp`); an object wins over a prefix of the same name;
/// - otherwise `path` names a directory: every object under `path/` is downloaded into the
///   directory `dest` (keys relative to the prefix become relative paths; `data` and `data/`
///   are the same, and `data` never matches `database/...`); an empty `path` is the whole
///   bucket.
///
/// Large objects are read in `chunk_size` ranges in parallel; at most `concurrency` ranges are
/// in flight. Stops at the first error that retries do not cure.
pub async fn download_prefix(
    store: Arc<dyn ObjectStore>,
    bucket: &str,
    prefix: &str,
    dest: &Path,
    opts: &CopyOptions,
) -> Result<CopyStats, ObjectStoreError> {
    let mut dl = Downloads::new(store.clone(), bucket, opts);
    if let Some(meta) = exact_object(store.as_ref(), bucket, prefix, &opts.retry).await? {
        let name = meta.key.rsplit('/').next().unwrap_or(&meta.key);
        let is_dir = tokio::fs::metadata(dest).await.is_ok_and(|m| m.is_dir());
        let path = if is_dir {
            dest.join(name)
        } else {
            dest.to_path_buf()
        };
        dl.object(&meta.key, meta.size, &path).await?;
        return dl.finish().await;
    }
    // A prefix names a directory: `data` copies `data/...`, not `database/...`.
    let prefix = if prefix.is_empty() || prefix.ends_with('/') {
        prefix.to_string()
    } else {
        format!("{prefix}/")
    };
    let prefix = prefix.as_str();
    let mut pages = std::pin::pin!(list_pages(
        store.clone(),
        bucket.to_string(),
        prefix.to_string(),
        1000
    ));
    while let Some(page) = pages.next().await {
        for o in page?.objects {
            let Some(path) = local_path(dest, prefix, &o.key) else {
                continue;
            };
            dl.object(&o.key, o.size, &path).await?;
        }
    }
    dl.finish().await
}

/// The object named exactly `key`, if there is one. An empty key or one ending with `/` names a
/// directory; a key the store refuses as an object name (a local store's `a/./b`) is no
/// object either, and is left to the listing.
async fn exact_object(
    store: &dyn ObjectStore,
    bucket: &str,
    key: &str,
    retry: &RetryPolicy,
) -> Result<Option<ObjectMeta>, ObjectStoreError> {
    if key.is_empty() || key.ends_with('/') {
        return Ok(None);
    }
    match with_retry(retry, || store.head(bucket, key)).await {
        Ok(meta) => Ok(Some(ObjectMeta {
            key: key.to_string(),
            ..meta
        })),
        Err(e) if matches!(e.kind, K::NotFound | K::BadName) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The ranged reads of a download in flight: objects are added one by one, their ranges run
/// `concurrency` at a time.
struct Downloads {
    store: Arc<dyn ObjectStore>,
    bucket: String,
    opts: CopyOptions,
    sem: Arc<Semaphore>,
    tasks: JoinSet<Result<u64, ObjectStoreError>>,
    stats: CopyStats,
}

impl Downloads {
    fn new(store: Arc<dyn ObjectStore>, bucket: &str, opts: &CopyOptions) -> Self {
        Downloads {
            store,
            bucket: bucket.to_string(),
            opts: opts.clone(),
            sem: Arc::new(Semaphore::new(opts.concurrency.max(1))),
            tasks: JoinSet::new(),
            stats: CopyStats::default(),
        }
    }

    /// Creates `path` at the object's size and queues its ranges.
    async fn object(&mut self, key: &str, size: u64, path: &Path) -> Result<(), ObjectStoreError> {
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| io(format!("creating {}", parent.display()), e))?;
        }
        let f = tokio::fs::File::create(path)
            .await
            .map_err(|e| io(format!("creating {}", path.display()), e))?;
        f.set_len(size)
            .await
            .map_err(|e| io(format!("sizing {}", path.display()), e))?;
        drop(f);
        self.stats.files += 1;
        let per = size.div_ceil(self.opts.max_ranges_per_object.max(1));
        let chunk = self.opts.chunk_size.max(1).max(per);
        let mut start = 0;
        while start < size {
            let end = (start + chunk).min(size);
            let permit = self
                .sem
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            // Surface failures early instead of queueing more work behind them.
            while let Some(done) = self.tasks.try_join_next() {
                self.stats.bytes += joined(done)?;
            }
            let (store, bucket, key, path, retry) = (
                self.store.clone(),
                self.bucket.clone(),
                key.to_string(),
                path.to_path_buf(),
                self.opts.retry.clone(),
            );
            self.tasks.spawn(async move {
                let _permit = permit;
                let range = ByteRange {
                    start,
                    end: Some(end),
                };
                with_retry(&retry, || {
                    fetch_range(store.as_ref(), &bucket, &key, range, &path)
                })
                .await
            });
            start = end;
        }
        Ok(())
    }

    /// Waits for every queued range.
    async fn finish(mut self) -> Result<CopyStats, ObjectStoreError> {
        while let Some(done) = self.tasks.join_next().await {
            self.stats.bytes += joined(done)?;
        }
        Ok(self.stats)
    }
}

fn joined(
    r: Result<Result<u64, ObjectStoreError>, tokio::task::JoinError>,
) -> Result<u64, ObjectStoreError> {
    r.map_err(|e| ObjectStoreError::new(K::Other, format!("copy task failed: {e}")))?
}

/// Every regular file under `dir`, as (path, key relative to `dir` with `/`).
fn walk_files(dir: &Path) -> Result<Vec<(PathBuf, String)>, ObjectStoreError> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((d, base)) = stack.pop() {
        let rd = std::fs::read_dir(&d).map_err(|e| io(format!("reading {}", d.display()), e))?;
        for e in rd {
            let e = e.map_err(|e| io(format!("reading {}", d.display()), e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let key = if base.is_empty() {
                name
            } else {
                format!("{base}/{name}")
            };
            let ft = e
                .file_type()
                .map_err(|er| io(format!("reading {}", e.path().display()), er))?;
            if ft.is_dir() {
                stack.push((e.path(), key));
            } else if ft.is_file() || (ft.is_symlink() && e.path().is_file()) {
                out.push((e.path(), key));
            }
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

/// Uploads one file in parts of `chunk_size` (at least the store's minimum), `concurrency` at once.
pub async fn upload_file_multipart(
    store: Arc<dyn ObjectStore>,
    bucket: &str,
    key: &str,
    path: &Path,
    opts: &CopyOptions,
) -> Result<u64, ObjectStoreError> {
    let size = tokio::fs::metadata(path)
        .await
        .map_err(|e| io(format!("reading {}", path.display()), e))?
        .len();
    let part = opts.chunk_size.max(store.min_part_size());
    let upload = store.create_multipart(bucket, key).await?;
    let sem = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let mut number = 0u32;
    let mut start = 0u64;
    while start < size || number == 0 {
        number += 1;
        let len = part.min(size - start);
        let permit = sem
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let (store, bucket, key, path, upload, retry) = (
            store.clone(),
            bucket.to_string(),
            key.to_string(),
            path.to_path_buf(),
            upload.clone(),
            opts.retry.clone(),
        );
        tasks.spawn(async move {
            let _permit = permit;
            let mut f = tokio::fs::File::open(&path)
                .await
                .map_err(|e| io(format!("opening {}", path.display()), e))?;
            f.seek(SeekFrom::Start(start))
                .await
                .map_err(|e| io(format!("seeking in {}", path.display()), e))?;
            let mut data = vec![0u8; len as usize];
            f.read_exact(&mut data)
                .await
                .map_err(|e| io(format!("reading {}", path.display()), e))?;
            with_retry(&retry, || {
                store.upload_part(&bucket, &key, &upload, number, data.clone())
            })
            .await
        });
        start += len;
        if size == 0 {
            break;
        }
    }
    let mut parts = Vec::new();
    let mut failed = None;
    while let Some(r) = tasks.join_next().await {
        match r
            .map_err(|e| ObjectStoreError::new(K::Other, format!("upload task failed: {e}")))
            .and_then(|x| x)
        {
            Ok(p) => parts.push(p),
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    if let Some(e) = failed {
        let _ = store.abort_multipart(bucket, key, &upload).await;
        return Err(e);
    }
    parts.sort_by_key(|p| p.number);
    let done = with_retry(&opts.retry, || {
        store.complete_multipart(bucket, key, &upload, parts.clone())
    })
    .await;
    if let Err(e) = done {
        // Leave no parts behind (stores keep them, and bill for them, until aborted).
        let _ = store.abort_multipart(bucket, key, &upload).await;
        return Err(e);
    }
    Ok(size)
}

/// Uploads every file under `src` to `bucket` under `prefix` (`prefix/relative/path`); files
/// of `multipart_threshold` bytes or more go in parts.
pub async fn upload_dir(
    store: Arc<dyn ObjectStore>,
    src: &Path,
    bucket: &str,
    prefix: &str,
    opts: &CopyOptions,
) -> Result<CopyStats, ObjectStoreError> {
    let src2 = src.to_path_buf();
    let files = tokio::task::spawn_blocking(move || walk_files(&src2))
        .await
        .map_err(|e| {
            ObjectStoreError::new(K::Other, format!("walking {}: {e}", src.display()))
        })??;
    let prefix = prefix.trim_matches('/');
    let mut stats = CopyStats::default();
    let results = futures_util::stream::iter(files.into_iter().map(|(path, rel)| {
        let key = if prefix.is_empty() {
            rel
        } else {
            format!("{prefix}/{rel}")
        };
        let store = store.clone();
        let opts = opts.clone();
        let bucket = bucket.to_string();
        async move {
            let size = tokio::fs::metadata(&path)
                .await
                .map_err(|e| io(format!("reading {}", path.display()), e))?
                .len();
            if size >= opts.multipart_threshold {
                upload_file_multipart(store, &bucket, &key, &path, &opts).await
            } else {
                with_retry(&opts.retry, || store.put_file(&bucket, &key, &path)).await?;
                Ok(size)
            }
        }
    }))
    .buffer_unordered(opts.concurrency.max(1));
    let mut results = std::pin::pin!(results);
    while let Some(r) = results.next().await {
        stats.bytes += r?;
        stats.files += 1;
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_inside_the_destination_only() {
        let d = Path::new("/dst");
        assert_eq!(
            local_path(d, "data/", "data/a/b.txt"),
            Some(PathBuf::from("/dst/a/b.txt"))
        );
        assert_eq!(
            local_path(d, "data", "data/a"),
            Some(PathBuf::from("/dst/a"))
        );
        assert_eq!(local_path(d, "", "x"), Some(PathBuf::from("/dst/x")));
        assert_eq!(local_path(d, "", "../etc/passwd"), None);
        assert_eq!(local_path(d, "", "a/../../x"), None);
        assert_eq!(local_path(d, "", "dir/"), None);
        assert_eq!(local_path(d, "p/", "q/x"), None);
    }
}
