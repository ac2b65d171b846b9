//! `sky-storage`: the buckets of sky-rs. It implements sky-provider's [`ObjectStore`] seam for
//! S3 ([`S3Store`], aws-sdk-s3 with the standard credential chain and `AWS_ENDPOINT_URL`), GCS
//! ([`GcsStore`], the JSON API with a gcp_auth token, or an emulator at
//! `STORAGE_EMULATOR_HOST`), Azure Blob ([`AzureBlobStore`], REST signed with a SharedKey from
//! `AZURE_STORAGE_CONNECTION_STRING` or an account and key) and a local directory
//! ([`LocalDirStore`]); parses bucket URIs into a store ([`store_for_uri`]); streams listings
//! page by page ([`list_pages`]); and does COPY: parallel ranged downloads of a prefix into a
//! directory and uploads of a directory ([`copy`]), with transient errors retried.
//!
//! Why SharedKey and not azure_identity: the Azure SDK crates (azure_core, typespec, ...) add a
//! second HTTP stack and minutes of build on the 2-core machines, and SharedKey (plus the
//! connection string) is what Azurite and storage accounts accept; Entra ID tokens are left for
//! later.

mod azure;
pub mod copy;
mod gcs;
mod http;
mod local;
mod retry;
mod s3;
mod uri;

use std::sync::Arc;

use futures_util::Stream;
pub use sky_provider::objstore::{
    ByteRange, CompletedPart, ListPage, ObjectMeta, ObjectReader, ObjectStore, ObjectStoreError,
    ObjectStoreErrorKind, StoreType,
};

pub use azure::{AZURITE_ACCOUNT, AZURITE_KEY, AzureBlobStore};
pub use gcs::{GcsStore, MULTIPART_PREFIX as GCS_MULTIPART_PREFIX};
pub use local::LocalDirStore;
pub use retry::{RetryPolicy, with_retry};
pub use s3::S3Store;
pub use uri::{BucketUri, StoreEnv, parse_bucket_uri, store_for_uri, store_for_uri_with};

/// The objects under `prefix` as a stream of pages of at most `page_size` keys: one request per
/// page, pulled as the consumer asks, so a listing of millions of keys holds one page at a time.
/// Transient errors of a page are retried with [`RetryPolicy::default`].
pub fn list_pages(
    store: Arc<dyn ObjectStore>,
    bucket: String,
    prefix: String,
    page_size: u32,
) -> impl Stream<Item = Result<ListPage, ObjectStoreError>> + Send {
    // State: `Some(token)` while pages remain (`Some(None)` = the first page).
    futures_util::stream::try_unfold(Some(None::<String>), move |state| {
        let store = store.clone();
        let bucket = bucket.clone();
        let prefix = prefix.clone();
        async move {
            let Some(token) = state else {
                return Ok(None);
            };
            let page = with_retry(&RetryPolicy::default(), || {
                store.list_page(&bucket, &prefix, token.as_deref(), page_size)
            })
            .await?;
            let next = page.next.clone().map(Some);
            Ok(Some((page, next)))
        }
    })
}

/// Deletes every object of `bucket` (page by page), then the bucket.
pub async fn delete_bucket_and_objects(
    store: &dyn ObjectStore,
    bucket: &str,
) -> Result<(), ObjectStoreError> {
    loop {
        let page = store.list_page(bucket, "", None, 1000).await?;
        if page.objects.is_empty() {
            break;
        }
        for o in &page.objects {
            store.delete(bucket, &o.key).await?;
        }
    }
    store.delete_bucket(bucket).await
}
