//! [`GcsStore`]: Google Cloud Storage through its JSON API (which fake-gcs-server and
//! gcp-storage-emulator serve too; the XML API is not emulated). Authorised by a gcp_auth token
//! (ADC: `GOOGLE_APPLICATION_CREDENTIALS`, gcloud's config, the metadata server), or not at all
//! against an emulator at `STORAGE_EMULATOR_HOST`.
//!
//! Multipart uploads are parts stored as temporary objects under the reserved prefix
//! [`MULTIPART_PREFIX`] (`.sky-multipart/<upload id>/<n>`) and joined by `compose` (32 sources
//! per call, in rounds); the parts (and the rounds' intermediates) are deleted after the
//! compose and by an abort. Listings never show keys under the reserved prefix, so the parts
//! of an upload in flight (or of one abandoned by a crash) are invisible to `list_page` and so
//! to COPY; a bucket left with only such parts counts as empty for `delete_bucket`, which
//! deletes them first.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use sky_provider::objstore::{
    ByteRange, CompletedPart, ListPage, ObjectMeta, ObjectReader, ObjectStore, ObjectStoreError,
    ObjectStoreErrorKind as K, StoreType,
};

use crate::http::{body_reader, enc, file_body, kind_of_status, random_id, send_error};

const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.full_control";

/// The reserved key prefix of a GCS bucket under which multipart uploads keep their parts
/// (`.sky-multipart/<upload id>/...`). Listings skip every key under it; do not store objects
/// there.
pub const MULTIPART_PREFIX: &str = ".sky-multipart/";

fn reserved(key: &str) -> bool {
    key.starts_with(MULTIPART_PREFIX)
}

/// A GCS project's buckets.
#[derive(Clone)]
pub struct GcsStore {
    http: reqwest::Client,
    base: String,
    project: String,
    auth: Option<Arc<dyn gcp_auth::TokenProvider>>,
}

impl std::fmt::Debug for GcsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcsStore")
            .field("base", &self.base)
            .field("project", &self.project)
            .field("authorised", &self.auth.is_some())
            .finish()
    }
}

#[derive(Deserialize)]
struct ObjectJson {
    name: String,
    #[serde(default)]
    size: Option<String>,
    #[serde(default)]
    etag: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListJson {
    #[serde(default)]
    items: Vec<ObjectJson>,
    #[serde(default)]
    next_page_token: Option<String>,
}

impl GcsStore {
    /// An emulator (or any endpoint) without authorisation, e.g. `http://127.0.0.1:4443`.
    pub fn with_endpoint(endpoint: &str, project: &str) -> Self {
        let base = if endpoint.contains("://") {
            endpoint.trim_end_matches('/').to_string()
        } else {
            format!("http://{}", endpoint.trim_end_matches('/'))
        };
        GcsStore {
            http: reqwest::Client::new(),
            base,
            project: project.to_string(),
            auth: None,
        }
    }

    /// `STORAGE_EMULATOR_HOST` when set (no token); else storage.googleapis.com with a gcp_auth
    /// token. The project is `GOOGLE_CLOUD_PROJECT` (or `CLOUDSDK_CORE_PROJECT`), else the
    /// credentials' own.
    pub async fn from_env() -> Result<Self, ObjectStoreError> {
        let project = std::env::var("GOOGLE_CLOUD_PROJECT")
            .or_else(|_| std::env::var("CLOUDSDK_CORE_PROJECT"))
            .ok();
        if let Ok(host) = std::env::var("STORAGE_EMULATOR_HOST") {
            return Ok(Self::with_endpoint(
                &host,
                project.as_deref().unwrap_or("test-project"),
            ));
        }
        let provider = gcp_auth::provider().await.map_err(|e| {
            ObjectStoreError::new(
                K::AccessDenied,
                format!("gcs: no google credentials found ({e}); run `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS"),
            )
        })?;
        let project = match project {
            Some(p) => p,
            None => provider.project_id().await.map(|p| p.to_string()).map_err(|e| {
                ObjectStoreError::new(
                    K::AccessDenied,
                    format!("gcs: no project in the google credentials ({e}); set GOOGLE_CLOUD_PROJECT"),
                )
            })?,
        };
        Ok(GcsStore {
            http: reqwest::Client::new(),
            base: "https://storage.googleapis.com".to_string(),
            project,
            auth: Some(provider),
        })
    }

    async fn req(
        &self,
        method: reqwest::Method,
        url: String,
    ) -> Result<reqwest::RequestBuilder, ObjectStoreError> {
        let mut rb = self.http.request(method, url);
        if let Some(a) = &self.auth {
            let tok = a.token(&[SCOPE]).await.map_err(|e| {
                ObjectStoreError::new(K::AccessDenied, format!("gcs: cannot get a token: {e}"))
            })?;
            rb = rb.bearer_auth(tok.as_str());
        }
        Ok(rb)
    }

    /// Sends and turns a non-success status into an error; `bad_name` says a 400 means the
    /// name was refused.
    async fn send(
        &self,
        what: &str,
        rb: reqwest::RequestBuilder,
        bad_name: bool,
    ) -> Result<reqwest::Response, ObjectStoreError> {
        let resp = rb.send().await.map_err(|e| send_error(what, e))?;
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        let kind = if status == 400 && bad_name {
            K::BadName
        } else {
            kind_of_status(status)
        };
        let detail = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| body.trim().chars().take(300).collect());
        let hint = if kind == K::AccessDenied {
            "; check the google credentials (GOOGLE_APPLICATION_CREDENTIALS) and their roles"
        } else {
            ""
        };
        Err(ObjectStoreError::new(
            kind,
            format!("{what}: HTTP {status}: {detail}{hint}"),
        ))
    }

    fn bucket_url(&self, bucket: &str) -> String {
        format!("{}/storage/v1/b/{}", self.base, enc(bucket))
    }

    fn object_url(&self, bucket: &str, key: &str) -> String {
        format!("{}/o/{}", self.bucket_url(bucket), enc(key))
    }

    fn upload_url(&self, bucket: &str, key: &str) -> String {
        format!(
            "{}/upload/storage/v1/b/{}/o?uploadType=media&name={}",
            self.base,
            enc(bucket),
            enc(key)
        )
    }

    fn what(bucket: &str, key: Option<&str>, op: &str) -> String {
        match key {
            Some(k) => format!("{op} of `{k}` in gcs bucket `{bucket}`"),
            None => format!("{op} of gcs bucket `{bucket}`"),
        }
    }

    /// A 404 on an object call: a missing bucket stays NotFound, a missing key of an existing
    /// bucket becomes `Ok(None)`.
    async fn missing_key_ok(
        &self,
        bucket: &str,
        e: ObjectStoreError,
    ) -> Result<(), ObjectStoreError> {
        if e.kind == K::NotFound && self.bucket_exists(bucket).await? {
            Ok(())
        } else {
            Err(e)
        }
    }

    async fn compose(
        &self,
        bucket: &str,
        dest: &str,
        sources: &[String],
    ) -> Result<(), ObjectStoreError> {
        let what = Self::what(bucket, Some(dest), "compose");
        let body = serde_json::json!({
            "sourceObjects": sources.iter().map(|s| serde_json::json!({"name": s})).collect::<Vec<_>>(),
            "destination": {"name": dest},
        });
        let rb = self
            .req(
                reqwest::Method::POST,
                format!("{}/compose", self.object_url(bucket, dest)),
            )
            .await?
            .json(&body);
        self.send(&what, rb, false).await?;
        Ok(())
    }

    /// Where the objects of upload `upload_id` live; an id that no `create_multipart` gave is
    /// refused (it could name another upload's parts or none).
    fn upload_dir(bucket: &str, key: &str, upload_id: &str) -> Result<String, ObjectStoreError> {
        if upload_id.is_empty() || !upload_id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(ObjectStoreError::new(
                K::NotFound,
                format!(
                    "{}: upload id {upload_id:?} is not one create_multipart returned",
                    Self::what(bucket, Some(key), "multipart upload")
                ),
            ));
        }
        Ok(format!("{MULTIPART_PREFIX}{upload_id}/"))
    }

    /// One page of the raw listing (reserved keys included).
    async fn list_raw(
        &self,
        bucket: &str,
        prefix: &str,
        token: Option<&str>,
        max_keys: u32,
    ) -> Result<ListPage, ObjectStoreError> {
        let what = Self::what(bucket, None, "list");
        let mut url = format!(
            "{}/o?prefix={}&maxResults={}",
            self.bucket_url(bucket),
            enc(prefix),
            max_keys.clamp(1, 1000)
        );
        if let Some(t) = token {
            url.push_str(&format!("&pageToken={}", enc(t)));
        }
        let rb = self.req(reqwest::Method::GET, url).await?;
        let l: ListJson = self
            .send(&what, rb, false)
            .await?
            .json()
            .await
            .map_err(|e| ObjectStoreError::new(K::Other, format!("{what}: bad answer: {e}")))?;
        Ok(ListPage {
            objects: l
                .items
                .into_iter()
                .map(|o| ObjectMeta {
                    key: o.name,
                    size: o.size.and_then(|s| s.parse().ok()).unwrap_or(0),
                    etag: o.etag,
                })
                .collect(),
            next: l.next_page_token.filter(|t| !t.is_empty()),
        })
    }

    /// Deletes `names` (missing ones are fine), 16 at a time; the first error.
    async fn delete_all(&self, bucket: &str, names: Vec<String>) -> Result<(), ObjectStoreError> {
        use futures_util::StreamExt;
        let mut s = std::pin::pin!(
            futures_util::stream::iter(names.into_iter().map(|n| async move {
                crate::with_retry(&crate::RetryPolicy::default(), || self.delete(bucket, &n)).await
            }))
            .buffer_unordered(16)
        );
        let mut first = None;
        while let Some(r) = s.next().await {
            if let Err(e) = r {
                first = first.or(Some(e));
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Deletes every object under `prefix` (reserved ones included).
    async fn delete_under(&self, bucket: &str, prefix: &str) -> Result<(), ObjectStoreError> {
        loop {
            let page = self.list_raw(bucket, prefix, None, 1000).await?;
            if page.objects.is_empty() {
                return Ok(());
            }
            self.delete_all(bucket, page.objects.into_iter().map(|o| o.key).collect())
                .await?;
        }
    }

    async fn compose_parts(
        &self,
        bucket: &str,
        key: &str,
        dir: &str,
        parts: &[String],
        temps: &mut Vec<String>,
    ) -> Result<(), ObjectStoreError> {
        let mut level: Vec<String> = parts.to_vec();
        let mut round = 0u32;
        while level.len() > 32 {
            let mut next = Vec::new();
            for (i, chunk) in level.chunks(32).enumerate() {
                let name = format!("{dir}r{round}-{i:06}");
                temps.push(name.clone());
                self.compose(bucket, &name, chunk).await?;
                next.push(name);
            }
            level = next;
            round += 1;
        }
        self.compose(bucket, key, &level).await
    }
}

#[async_trait]
impl ObjectStore for GcsStore {
    fn store_type(&self) -> StoreType {
        StoreType::Gcs
    }

    async fn create_bucket(&self, bucket: &str) -> Result<(), ObjectStoreError> {
        let what = Self::what(bucket, None, "create");
        sky_spec::buckets::check_bucket_name(StoreType::Gcs, bucket)
            .map_err(|e| ObjectStoreError::new(K::BadName, e))?;
        let rb = self
            .req(
                reqwest::Method::POST,
                format!("{}/storage/v1/b?project={}", self.base, enc(&self.project)),
            )
            .await?
            .json(&serde_json::json!({"name": bucket}));
        self.send(&what, rb, true).await.map_err(|mut e| {
            if e.kind == K::Conflict {
                e.message = format!("{what}: the bucket already exists");
            }
            e
        })?;
        Ok(())
    }

    async fn delete_bucket(&self, bucket: &str) -> Result<(), ObjectStoreError> {
        let what = Self::what(bucket, None, "delete");
        let rb = self
            .req(reqwest::Method::DELETE, self.bucket_url(bucket))
            .await?;
        match self.send(&what, rb, false).await {
            Ok(_) => return Ok(()),
            // Not empty: if all that is left is parts of unfinished uploads, delete them.
            Err(e) if e.kind == K::Conflict => {
                let visible = self.list_page(bucket, "", None, 1).await?;
                if !visible.objects.is_empty() {
                    return Err(e);
                }
                self.delete_under(bucket, MULTIPART_PREFIX).await?;
            }
            Err(e) => return Err(e),
        }
        let rb = self
            .req(reqwest::Method::DELETE, self.bucket_url(bucket))
            .await?;
        self.send(&what, rb, false).await?;
        Ok(())
    }

    async fn bucket_exists(&self, bucket: &str) -> Result<bool, ObjectStoreError> {
        let what = Self::what(bucket, None, "get");
        let rb = self
            .req(reqwest::Method::GET, self.bucket_url(bucket))
            .await?;
        match self.send(&what, rb, false).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind == K::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn put(&self, bucket: &str, key: &str, data: Vec<u8>) -> Result<(), ObjectStoreError> {
        let what = Self::what(bucket, Some(key), "put");
        let rb = self
            .req(reqwest::Method::POST, self.upload_url(bucket, key))
            .await?
            .header("content-type", "application/octet-stream")
            .body(data);
        self.send(&what, rb, false).await?;
        Ok(())
    }

    async fn put_file(&self, bucket: &str, key: &str, path: &Path) -> Result<(), ObjectStoreError> {
        let what = Self::what(bucket, Some(key), "put");
        let (body, len) = file_body(&what, path).await?;
        let rb = self
            .req(reqwest::Method::POST, self.upload_url(bucket, key))
            .await?
            .header("content-type", "application/octet-stream")
            .header("content-length", len)
            .body(body);
        self.send(&what, rb, false).await?;
        Ok(())
    }

    async fn get(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<ObjectReader, ObjectStoreError> {
        let what = Self::what(bucket, Some(key), "get");
        let mut rb = self
            .req(
                reqwest::Method::GET,
                format!("{}?alt=media", self.object_url(bucket, key)),
            )
            .await?;
        if let Some(r) = range {
            if r.end.is_some_and(|e| e <= r.start) {
                return Ok(Box::pin(tokio::io::empty()));
            }
            rb = rb.header(
                "range",
                match r.end {
                    Some(e) => format!("bytes={}-{}", r.start, e - 1),
                    None => format!("bytes={}-", r.start),
                },
            );
        }
        let resp = self.send(&what, rb, false).await?;
        Ok(body_reader(resp))
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectMeta, ObjectStoreError> {
        let what = Self::what(bucket, Some(key), "head");
        let rb = self
            .req(reqwest::Method::GET, self.object_url(bucket, key))
            .await?;
        let o: ObjectJson = self
            .send(&what, rb, false)
            .await?
            .json()
            .await
            .map_err(|e| ObjectStoreError::new(K::Other, format!("{what}: bad answer: {e}")))?;
        Ok(ObjectMeta {
            key: o.name,
            size: o.size.and_then(|s| s.parse().ok()).unwrap_or(0),
            etag: o.etag,
        })
    }

    async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        token: Option<&str>,
        max_keys: u32,
    ) -> Result<ListPage, ObjectStoreError> {
        // Parts of multipart uploads (under MULTIPART_PREFIX) are skipped; a page of nothing but
        // parts is followed by the next, so only the last page may be empty.
        let mut token = token.map(str::to_string);
        loop {
            let mut page = self
                .list_raw(bucket, prefix, token.as_deref(), max_keys)
                .await?;
            page.objects.retain(|o| !reserved(&o.key));
            if !page.objects.is_empty() || page.next.is_none() {
                return Ok(page);
            }
            token = page.next;
        }
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), ObjectStoreError> {
        let what = Self::what(bucket, Some(key), "delete");
        let rb = self
            .req(reqwest::Method::DELETE, self.object_url(bucket, key))
            .await?;
        match self.send(&what, rb, false).await {
            Ok(_) => Ok(()),
            Err(e) => self.missing_key_ok(bucket, e).await,
        }
    }

    async fn create_multipart(&self, bucket: &str, key: &str) -> Result<String, ObjectStoreError> {
        if !self.bucket_exists(bucket).await? {
            return Err(ObjectStoreError::new(
                K::NotFound,
                format!(
                    "{}: the bucket does not exist",
                    Self::what(bucket, Some(key), "multipart upload")
                ),
            ));
        }
        Ok(random_id())
    }

    async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: u32,
        data: Vec<u8>,
    ) -> Result<CompletedPart, ObjectStoreError> {
        let tag = format!("{}{number:06}", Self::upload_dir(bucket, key, upload_id)?);
        self.put(bucket, &tag, data).await?;
        Ok(CompletedPart { number, tag })
    }

    async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<(), ObjectStoreError> {
        let dir = Self::upload_dir(bucket, key, upload_id)?;
        let names: Vec<String> = parts.into_iter().map(|p| p.tag).collect();
        if let Some(n) = names.iter().find(|n| !n.starts_with(&dir)) {
            return Err(ObjectStoreError::new(
                K::Other,
                format!(
                    "{}: part {n:?} is not a part of upload {upload_id}",
                    Self::what(bucket, Some(key), "multipart upload")
                ),
            ));
        }
        let mut temps = Vec::new();
        let composed = self
            .compose_parts(bucket, key, &dir, &names, &mut temps)
            .await;
        // The intermediates of the rounds go either way; the parts only once composed (a
        // retried complete needs them; abort deletes them).
        let cleanup = if composed.is_ok() {
            names.into_iter().chain(temps).collect()
        } else {
            temps
        };
        let deleted = self.delete_all(bucket, cleanup).await;
        composed?;
        deleted
    }

    async fn abort_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(), ObjectStoreError> {
        let dir = Self::upload_dir(bucket, key, upload_id)?;
        self.delete_under(bucket, &dir).await
    }
}
