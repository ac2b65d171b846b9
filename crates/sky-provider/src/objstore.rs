//! The object store seam: buckets and objects on S3, GCS, Azure Blob, R2 or a local directory,
//! behind one trait. `sky-storage` implements it (and turns listing pages into a stream); the
//! launcher, the node-side COPY and `sky storage` use it through `Arc<dyn ObjectStore>`.
//!
//! Contract (every implementation, checked by sky-storage's conformance suite):
//! - `create_bucket` of an existing bucket is [`ObjectStoreErrorKind::Conflict`]; a name the
//!   store refuses is [`ObjectStoreErrorKind::BadName`];
//! - `delete_bucket` deletes an empty bucket; a non-empty one is `Conflict`, a missing one
//!   `NotFound`;
//! - object calls on a missing bucket are `NotFound`; `get`/`head` of a missing key are
//!   `NotFound`; `delete` of a missing key succeeds (idempotent, as S3);
//! - listing is paged: one call returns at most `max_keys` objects (in key order) and a token
//!   for the next page, so millions of keys are never held at once;
//! - multipart: parts are numbered from 1, may be uploaded concurrently and in any order, every
//!   part but the last is at least [`ObjectStore::min_part_size`] bytes, and `complete` takes
//!   the parts in number order.

use std::fmt;
use std::path::Path;
use std::pin::Pin;

use async_trait::async_trait;

pub use sky_spec::buckets::StoreType;

/// What kind of failure an object store call met; callers branch on it.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectStoreErrorKind {
    /// The bucket or object does not exist.
    NotFound,
    /// Credentials are missing, wrong, or lack the permission.
    AccessDenied,
    /// The store refuses the bucket (or object) name.
    BadName,
    /// The bucket already exists, or is not empty where it must be.
    Conflict,
    /// A temporary failure (throttling, 5xx, a dropped connection): retry with backoff.
    Transient,
    /// Anything else.
    Other,
}

impl fmt::Display for ObjectStoreErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectStoreErrorKind::NotFound => "not found",
            ObjectStoreErrorKind::AccessDenied => "access denied",
            ObjectStoreErrorKind::BadName => "bad name",
            ObjectStoreErrorKind::Conflict => "conflict",
            ObjectStoreErrorKind::Transient => "transient",
            ObjectStoreErrorKind::Other => "other",
        })
    }
}

/// An object store failure: its kind and a lowercase message that names the store, bucket
/// and key and, where there is one, the fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectStoreError {
    pub kind: ObjectStoreErrorKind,
    pub message: String,
}

impl ObjectStoreError {
    pub fn new(kind: ObjectStoreErrorKind, message: impl Into<String>) -> Self {
        ObjectStoreError {
            kind,
            message: message.into(),
        }
    }

    /// Whether retrying the same call may succeed.
    pub fn is_transient(&self) -> bool {
        self.kind == ObjectStoreErrorKind::Transient
    }
}

impl fmt::Display for ObjectStoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ObjectStoreError {}

/// One object as a listing or `head` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    /// The store's entity tag, when it gives one (quotes removed).
    pub etag: Option<String>,
}

/// One page of a listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListPage {
    pub objects: Vec<ObjectMeta>,
    /// The token for the next page; `None` on the last page.
    pub next: Option<String>,
}

/// A part of a multipart upload, as `complete_multipart` needs it back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompletedPart {
    pub number: u32,
    /// The store's tag for the part (S3 ETag, Azure block id, GCS/local part object name).
    pub tag: String,
}

/// A byte range `[start, end)` of an object; `end: None` reads to the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: Option<u64>,
}

/// An object's bytes as they arrive.
pub type ObjectReader = Pin<Box<dyn tokio::io::AsyncRead + Send>>;

/// Buckets and objects of one store (one account / endpoint).
#[async_trait]
pub trait ObjectStore: Send + Sync + fmt::Debug {
    /// Which store this is.
    fn store_type(&self) -> StoreType;

    /// The smallest part a multipart upload accepts (all parts but the last).
    fn min_part_size(&self) -> u64 {
        5 * 1024 * 1024
    }

    async fn create_bucket(&self, bucket: &str) -> Result<(), ObjectStoreError>;
    async fn delete_bucket(&self, bucket: &str) -> Result<(), ObjectStoreError>;
    async fn bucket_exists(&self, bucket: &str) -> Result<bool, ObjectStoreError>;

    /// Writes a whole object from memory (small objects).
    async fn put(&self, bucket: &str, key: &str, data: Vec<u8>) -> Result<(), ObjectStoreError>;
    /// Writes a whole object streamed from a local file (one request; see multipart for large
    /// files).
    async fn put_file(&self, bucket: &str, key: &str, path: &Path) -> Result<(), ObjectStoreError>;
    /// Reads an object, or a range of it, as a stream.
    async fn get(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<ObjectReader, ObjectStoreError>;
    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectMeta, ObjectStoreError>;
    /// One page of the objects whose keys start with `prefix`, at most `max_keys` (the store may
    /// cap it lower: 1,000 on S3), continuing after `token`.
    async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        token: Option<&str>,
        max_keys: u32,
    ) -> Result<ListPage, ObjectStoreError>;
    async fn delete(&self, bucket: &str, key: &str) -> Result<(), ObjectStoreError>;

    /// Starts a multipart upload; returns its id.
    async fn create_multipart(&self, bucket: &str, key: &str) -> Result<String, ObjectStoreError>;
    async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: u32,
        data: Vec<u8>,
    ) -> Result<CompletedPart, ObjectStoreError>;
    async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<(), ObjectStoreError>;
    async fn abort_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(), ObjectStoreError>;
}
