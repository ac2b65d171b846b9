//! [`LocalDirStore`]: buckets as subdirectories of one root directory, objects as files (a key's
//! `/` makes subdirectories). Writes go to a temporary file under `<root>/.sky-tmp` and are
//! renamed into place, so a reader never sees half an object.

use std::io::SeekFrom;
use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;
use sky_provider::objstore::{
    ByteRange, CompletedPart, ListPage, ObjectMeta, ObjectReader, ObjectStore, ObjectStoreError,
    ObjectStoreErrorKind as K, StoreType,
};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::http::random_id;

/// A directory of buckets.
#[derive(Clone, Debug)]
pub struct LocalDirStore {
    root: PathBuf,
}

fn io_err(what: String, e: std::io::Error) -> ObjectStoreError {
    let kind = match e.kind() {
        std::io::ErrorKind::NotFound => K::NotFound,
        std::io::ErrorKind::PermissionDenied => K::AccessDenied,
        _ => K::Other,
    };
    ObjectStoreError::new(kind, format!("{what}: {e}"))
}

impl LocalDirStore {
    /// A store rooted at `root` (created on first use).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalDirStore { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn bucket_dir(&self, bucket: &str) -> Result<PathBuf, ObjectStoreError> {
        sky_spec::buckets::check_bucket_name(StoreType::Local, bucket)
            .map_err(|e| ObjectStoreError::new(K::BadName, e))?;
        Ok(self.root.join(bucket))
    }

    async fn existing_bucket(&self, bucket: &str) -> Result<PathBuf, ObjectStoreError> {
        let d = self.bucket_dir(bucket)?;
        if tokio::fs::metadata(&d).await.is_ok_and(|m| m.is_dir()) {
            Ok(d)
        } else {
            Err(ObjectStoreError::new(
                K::NotFound,
                format!(
                    "local bucket `{bucket}` does not exist under {}",
                    self.root.display()
                ),
            ))
        }
    }

    fn key_path(dir: &Path, bucket: &str, key: &str) -> Result<PathBuf, ObjectStoreError> {
        let p = Path::new(key);
        let ok = !key.is_empty()
            && !key.ends_with('/')
            && p.components().all(|c| matches!(c, Component::Normal(_)));
        if !ok {
            return Err(ObjectStoreError::new(
                K::BadName,
                format!(
                    "object key {key:?} in local bucket `{bucket}` is invalid: keys are relative paths without `.`, `..` or a trailing `/`"
                ),
            ));
        }
        Ok(dir.join(p))
    }

    async fn object_path(&self, bucket: &str, key: &str) -> Result<PathBuf, ObjectStoreError> {
        let dir = self.existing_bucket(bucket).await?;
        Self::key_path(&dir, bucket, key)
    }

    async fn tmp_file(&self) -> Result<(PathBuf, tokio::fs::File), ObjectStoreError> {
        let d = self.root.join(".sky-tmp");
        tokio::fs::create_dir_all(&d)
            .await
            .map_err(|e| io_err(format!("creating {}", d.display()), e))?;
        let p = d.join(random_id());
        let f = tokio::fs::File::create(&p)
            .await
            .map_err(|e| io_err(format!("creating {}", p.display()), e))?;
        Ok((p, f))
    }

    async fn commit(&self, tmp: &Path, dest: &Path) -> Result<(), ObjectStoreError> {
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| io_err(format!("creating {}", parent.display()), e))?;
        }
        tokio::fs::rename(tmp, dest)
            .await
            .map_err(|e| io_err(format!("writing {}", dest.display()), e))
    }

    fn parts_dir(&self, upload_id: &str) -> PathBuf {
        self.root.join(".sky-multipart").join(upload_id)
    }
}

/// The files under `dir` as (key, size), keys with `/` starting with `base`; of `dir` itself
/// only the entries whose names start with `first` (the last segment of a listing's prefix);
/// only keys after `after` (subtrees wholly before it are not read).
fn walk(
    dir: &Path,
    base: &str,
    first: &str,
    after: Option<&str>,
    out: &mut Vec<(String, u64)>,
) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with(first) {
            continue;
        }
        let key = if base.is_empty() {
            name
        } else {
            format!("{base}/{name}")
        };
        let md = e.metadata()?;
        if md.is_dir() {
            // Every key below starts with `key/`: all of them sort before `after` when it does
            // not start with `key/` and `key/` sorts before it.
            let sub = format!("{key}/");
            if after.is_some_and(|t| !t.starts_with(&sub) && sub.as_str() < t) {
                continue;
            }
            walk(&e.path(), &key, "", after, out)?;
        } else if after.is_none_or(|t| key.as_str() > t) {
            out.push((key, md.len()));
        }
    }
    Ok(())
}

/// The objects of the bucket directory `bucket_dir` whose keys start with `prefix` and sort
/// after `after`, in key order. The walk starts at the deepest directory the prefix names
/// (`a/b/c` reads `a/b/` and keeps its entries starting with `c`), so sibling trees are never
/// read. A prefix whose directory part no key can have (`a//b`, `./a`, `a/../b`) or that does
/// not exist matches nothing.
fn list_prefix(
    bucket_dir: &Path,
    prefix: &str,
    after: Option<&str>,
) -> std::io::Result<Vec<(String, u64)>> {
    let (dir_part, first) = match prefix.rfind('/') {
        Some(i) => (&prefix[..i], &prefix[i + 1..]),
        None => ("", prefix),
    };
    let mut start = bucket_dir.to_path_buf();
    if !dir_part.is_empty() {
        if dir_part
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            return Ok(Vec::new());
        }
        start.push(dir_part);
        match std::fs::metadata(&start) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Ok(Vec::new()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        }
    }
    let mut out = Vec::new();
    walk(&start, dir_part, first, after, &mut out)?;
    // Key order (byte order of the keys): a page's token is its last key.
    out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

#[async_trait]
impl ObjectStore for LocalDirStore {
    fn store_type(&self) -> StoreType {
        StoreType::Local
    }

    async fn create_bucket(&self, bucket: &str) -> Result<(), ObjectStoreError> {
        let d = self.bucket_dir(bucket)?;
        tokio::fs::create_dir_all(&self.root)
            .await
            .map_err(|e| io_err(format!("creating {}", self.root.display()), e))?;
        match tokio::fs::create_dir(&d).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(ObjectStoreError::new(
                K::Conflict,
                format!("local bucket `{bucket}` already exists"),
            )),
            Err(e) => Err(io_err(format!("creating local bucket `{bucket}`"), e)),
        }
    }

    async fn delete_bucket(&self, bucket: &str) -> Result<(), ObjectStoreError> {
        let d = self.existing_bucket(bucket).await?;
        let mut rd = tokio::fs::read_dir(&d)
            .await
            .map_err(|e| io_err(format!("reading local bucket `{bucket}`"), e))?;
        if rd.next_entry().await.ok().flatten().is_some() {
            return Err(ObjectStoreError::new(
                K::Conflict,
                format!("local bucket `{bucket}` is not empty; delete its objects first"),
            ));
        }
        tokio::fs::remove_dir(&d)
            .await
            .map_err(|e| io_err(format!("deleting local bucket `{bucket}`"), e))
    }

    async fn bucket_exists(&self, bucket: &str) -> Result<bool, ObjectStoreError> {
        match self.existing_bucket(bucket).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind == K::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn put(&self, bucket: &str, key: &str, data: Vec<u8>) -> Result<(), ObjectStoreError> {
        let dest = self.object_path(bucket, key).await?;
        let (tmp, mut f) = self.tmp_file().await?;
        f.write_all(&data)
            .await
            .map_err(|e| io_err(format!("writing {}", tmp.display()), e))?;
        drop(f);
        self.commit(&tmp, &dest).await
    }

    async fn put_file(&self, bucket: &str, key: &str, path: &Path) -> Result<(), ObjectStoreError> {
        let dest = self.object_path(bucket, key).await?;
        let (tmp, f) = self.tmp_file().await?;
        drop(f);
        tokio::fs::copy(path, &tmp)
            .await
            .map_err(|e| io_err(format!("copying {}", path.display()), e))?;
        self.commit(&tmp, &dest).await
    }

    async fn get(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<ObjectReader, ObjectStoreError> {
        let p = self.object_path(bucket, key).await?;
        let mut f = tokio::fs::File::open(&p)
            .await
            .map_err(|e| io_err(format!("object `{key}` in local bucket `{bucket}`"), e))?;
        let Some(r) = range else {
            return Ok(Box::pin(f));
        };
        f.seek(SeekFrom::Start(r.start))
            .await
            .map_err(|e| io_err(format!("seeking in {}", p.display()), e))?;
        Ok(match r.end {
            Some(end) => Box::pin(f.take(end.saturating_sub(r.start))),
            None => Box::pin(f),
        })
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectMeta, ObjectStoreError> {
        let p = self.object_path(bucket, key).await?;
        let md = tokio::fs::metadata(&p)
            .await
            .map_err(|e| io_err(format!("object `{key}` in local bucket `{bucket}`"), e))?;
        if md.is_dir() {
            return Err(ObjectStoreError::new(
                K::NotFound,
                format!("object `{key}` in local bucket `{bucket}`: not found"),
            ));
        }
        Ok(ObjectMeta {
            key: key.to_string(),
            size: md.len(),
            etag: None,
        })
    }

    async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        token: Option<&str>,
        max_keys: u32,
    ) -> Result<ListPage, ObjectStoreError> {
        let d = self.existing_bucket(bucket).await?;
        let (prefix, token) = (prefix.to_string(), token.map(str::to_string));
        let max = max_keys.clamp(1, 1000) as usize;
        let bucket2 = bucket.to_string();
        tokio::task::spawn_blocking(move || {
            let bucket = bucket2;
            let all = list_prefix(&d, &prefix, token.as_deref()).map_err(|e| {
                io_err(
                    format!(
                        "listing prefix {prefix:?} of local bucket `{bucket}` ({})",
                        d.display()
                    ),
                    e,
                )
            })?;
            let mut it = all.into_iter();
            let objects: Vec<ObjectMeta> = it
                .by_ref()
                .take(max)
                .map(|(key, size)| ObjectMeta {
                    key,
                    size,
                    etag: None,
                })
                .collect();
            let next = if it.next().is_some() {
                objects.last().map(|o| o.key.clone())
            } else {
                None
            };
            Ok(ListPage { objects, next })
        })
        .await
        .map_err(|e| {
            ObjectStoreError::new(K::Other, format!("listing local bucket `{bucket}`: {e}"))
        })?
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), ObjectStoreError> {
        let p = self.object_path(bucket, key).await?;
        match tokio::fs::remove_file(&p).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(format!("deleting {}", p.display()), e)),
        }
        // Remove directories the key left empty (up to the bucket).
        let dir = self.bucket_dir(bucket)?;
        let mut cur = p.parent().map(Path::to_path_buf);
        while let Some(c) = cur {
            if c == dir || tokio::fs::remove_dir(&c).await.is_err() {
                break;
            }
            cur = c.parent().map(Path::to_path_buf);
        }
        Ok(())
    }

    async fn create_multipart(&self, bucket: &str, key: &str) -> Result<String, ObjectStoreError> {
        self.object_path(bucket, key).await?;
        let id = random_id();
        let d = self.parts_dir(&id);
        tokio::fs::create_dir_all(&d)
            .await
            .map_err(|e| io_err(format!("creating {}", d.display()), e))?;
        Ok(id)
    }

    async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: u32,
        data: Vec<u8>,
    ) -> Result<CompletedPart, ObjectStoreError> {
        self.object_path(bucket, key).await?;
        let d = self.parts_dir(upload_id);
        if !d.is_dir() {
            return Err(ObjectStoreError::new(
                K::NotFound,
                format!(
                    "multipart upload {upload_id} of `{key}` in local bucket `{bucket}` does not exist"
                ),
            ));
        }
        let tag = format!("{number:06}");
        tokio::fs::write(d.join(&tag), data)
            .await
            .map_err(|e| io_err(format!("writing part {number} of `{key}`"), e))?;
        Ok(CompletedPart { number, tag })
    }

    async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<(), ObjectStoreError> {
        let dest = self.object_path(bucket, key).await?;
        let d = self.parts_dir(upload_id);
        let (tmp, mut out) = self.tmp_file().await?;
        for p in &parts {
            let mut f = tokio::fs::File::open(d.join(&p.tag))
                .await
                .map_err(|e| io_err(format!("part {} of upload {upload_id}", p.number), e))?;
            tokio::io::copy(&mut f, &mut out)
                .await
                .map_err(|e| io_err(format!("assembling `{key}`"), e))?;
        }
        out.flush()
            .await
            .map_err(|e| io_err(format!("assembling `{key}`"), e))?;
        drop(out);
        self.commit(&tmp, &dest).await?;
        let _ = tokio::fs::remove_dir_all(&d).await;
        Ok(())
    }

    async fn abort_multipart(
        &self,
        _bucket: &str,
        _key: &str,
        upload_id: &str,
    ) -> Result<(), ObjectStoreError> {
        match tokio::fs::remove_dir_all(self.parts_dir(upload_id)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(format!("aborting upload {upload_id}"), e)),
        }
    }
}
