//! [`AzureBlobStore`]: Azure Blob Storage through its REST API, signed with the account's
//! SharedKey (from `AZURE_STORAGE_CONNECTION_STRING`, or `AZURE_STORAGE_ACCOUNT` +
//! `AZURE_STORAGE_KEY`). Buckets are containers. Multipart uploads are staged blocks
//! (`Put Block`) committed by `Put Block List`.

use std::path::Path;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use sky_provider::objstore::{
    ByteRange, CompletedPart, ListPage, ObjectMeta, ObjectReader, ObjectStore, ObjectStoreError,
    ObjectStoreErrorKind as K, StoreType,
};

use crate::http::{body_reader, enc, enc_path, file_body, kind_of_status, random_id, send_error};

const VERSION: &str = "2021-08-06";

/// Azurite's well-known development account (public, documented by Microsoft).
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// Azurite's well-known development key.
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// One storage account's containers.
#[derive(Clone)]
pub struct AzureBlobStore {
    http: reqwest::Client,
    account: String,
    key: Vec<u8>,
    /// `https://<account>.blob.core.windows.net` or `http://127.0.0.1:10000/<account>`.
    base: String,
    /// The path prefix of `base` (`/<account>` for emulators) for the canonical resource.
    base_path: String,
}

impl std::fmt::Debug for AzureBlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureBlobStore")
            .field("account", &self.account)
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct EnumerationResults {
    #[serde(rename = "Blobs", default)]
    blobs: Blobs,
    #[serde(rename = "NextMarker", default)]
    next_marker: Option<String>,
}

#[derive(Deserialize, Default)]
struct Blobs {
    #[serde(rename = "Blob", default)]
    blob: Vec<BlobXml>,
}

#[derive(Deserialize)]
struct BlobXml {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Properties")]
    properties: PropsXml,
}

#[derive(Deserialize)]
struct PropsXml {
    #[serde(rename = "Content-Length", default)]
    content_length: Option<u64>,
    #[serde(rename = "Etag", default)]
    etag: Option<String>,
}

fn bad_config(msg: String) -> ObjectStoreError {
    ObjectStoreError::new(K::AccessDenied, msg)
}

impl AzureBlobStore {
    /// An account, its base64 key and its blob endpoint (`None`: the public
    /// `https://<account>.blob.core.windows.net`).
    pub fn new(
        account: &str,
        key_b64: &str,
        endpoint: Option<&str>,
    ) -> Result<Self, ObjectStoreError> {
        let key = B64.decode(key_b64.trim()).map_err(|e| {
            bad_config(format!("azure: the key of storage account `{account}` is not base64 ({e}); copy it from the portal or `az storage account keys list`"))
        })?;
        let base = match endpoint {
            Some(e) => e.trim_end_matches('/').to_string(),
            None => format!("https://{account}.blob.core.windows.net"),
        };
        let url = reqwest::Url::parse(&base)
            .map_err(|e| bad_config(format!("azure: blob endpoint {base:?} is not a URL: {e}")))?;
        let base_path = url.path().trim_end_matches('/').to_string();
        Ok(AzureBlobStore {
            http: reqwest::Client::new(),
            account: account.to_string(),
            key,
            base,
            base_path,
        })
    }

    /// Azurite's development account at `endpoint` (e.g. `http://127.0.0.1:10000`).
    pub fn azurite(endpoint: &str) -> Self {
        let ep = format!("{}/{AZURITE_ACCOUNT}", endpoint.trim_end_matches('/'));
        Self::new(AZURITE_ACCOUNT, AZURITE_KEY, Some(&ep)).expect("the Azurite key is base64")
    }

    /// Parses a connection string (`AccountName=..;AccountKey=..;BlobEndpoint=..` or
    /// `UseDevelopmentStorage=true`).
    pub fn from_connection_string(cs: &str) -> Result<Self, ObjectStoreError> {
        let mut name = None;
        let mut key = None;
        let mut endpoint = None;
        let mut protocol = "https".to_string();
        let mut suffix = "core.windows.net".to_string();
        for part in cs.split(';').filter(|p| !p.trim().is_empty()) {
            let Some((k, v)) = part.split_once('=') else {
                return Err(bad_config("azure: AZURE_STORAGE_CONNECTION_STRING has a part without `=`; expected `AccountName=...;AccountKey=...`".to_string()));
            };
            match k.trim() {
                "AccountName" => name = Some(v.to_string()),
                "AccountKey" => key = Some(v.to_string()),
                "BlobEndpoint" => endpoint = Some(v.to_string()),
                "DefaultEndpointsProtocol" => protocol = v.to_string(),
                "EndpointSuffix" => suffix = v.to_string(),
                "UseDevelopmentStorage" if v.eq_ignore_ascii_case("true") => {
                    return Ok(Self::azurite("http://127.0.0.1:10000"));
                }
                _ => {}
            }
        }
        let (Some(name), Some(key)) = (name, key) else {
            return Err(bad_config("azure: AZURE_STORAGE_CONNECTION_STRING needs AccountName and AccountKey (SAS-only strings are not supported yet)".to_string()));
        };
        let endpoint = endpoint.unwrap_or_else(|| format!("{protocol}://{name}.blob.{suffix}"));
        Self::new(&name, &key, Some(&endpoint))
    }

    /// `AZURE_STORAGE_CONNECTION_STRING`, else `AZURE_STORAGE_ACCOUNT` + `AZURE_STORAGE_KEY`;
    /// `account`, when given, must match.
    pub fn from_env(account: Option<&str>) -> Result<Self, ObjectStoreError> {
        let store = if let Ok(cs) = std::env::var("AZURE_STORAGE_CONNECTION_STRING") {
            Self::from_connection_string(&cs)?
        } else {
            let acct = account
                .map(str::to_string)
                .or_else(|| std::env::var("AZURE_STORAGE_ACCOUNT").ok())
                .ok_or_else(|| bad_config("azure: no storage account; set AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY".to_string()))?;
            let key = std::env::var("AZURE_STORAGE_KEY").map_err(|_| {
                bad_config(format!("azure: no key for storage account `{acct}`; set AZURE_STORAGE_KEY (or AZURE_STORAGE_CONNECTION_STRING)"))
            })?;
            Self::new(&acct, &key, None)?
        };
        if let Some(a) = account
            && a != store.account
        {
            return Err(bad_config(format!(
                "azure: the URI names storage account `{a}` but the credentials are for `{}`; set AZURE_STORAGE_CONNECTION_STRING for `{a}`",
                store.account
            )));
        }
        Ok(store)
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    /// Builds a signed request. `path` is the encoded path below the base (`/ctr/blob`);
    /// `query` holds raw (unencoded) pairs.
    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        headers: &[(&str, String)],
        content_length: u64,
        content_type: &str,
    ) -> reqwest::RequestBuilder {
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        let mut xms: Vec<(String, String)> = headers
            .iter()
            .filter(|(k, _)| k.starts_with("x-ms-"))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        xms.push(("x-ms-date".into(), date.clone()));
        xms.push(("x-ms-version".into(), VERSION.into()));
        xms.sort();
        let mut canon_res = format!("/{}{}{}", self.account, self.base_path, path);
        let mut q: Vec<(String, &String)> = query
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        q.sort();
        for (k, v) in &q {
            canon_res.push_str(&format!("\n{k}:{v}"));
        }
        let len = if content_length == 0 {
            String::new()
        } else {
            content_length.to_string()
        };
        let canon_headers: String = xms.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
        let sts = format!(
            "{}\n\n\n{len}\n\n{content_type}\n\n\n\n\n\n\n{canon_headers}{canon_res}",
            method.as_str()
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("hmac takes any key");
        mac.update(sts.as_bytes());
        let sig = B64.encode(mac.finalize().into_bytes());
        let mut url = format!("{}{}", self.base, path);
        for (i, (k, v)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&format!("{k}={}", enc(v)));
        }
        let mut rb = self
            .http
            .request(method, url)
            .header("authorization", format!("SharedKey {}:{sig}", self.account));
        for (k, v) in &xms {
            rb = rb.header(k.as_str(), v.as_str());
        }
        if !content_type.is_empty() {
            rb = rb.header("content-type", content_type);
        }
        rb
    }

    async fn send(
        &self,
        what: &str,
        rb: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ObjectStoreError> {
        let resp = rb.send().await.map_err(|e| send_error(what, e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let code = resp
            .headers()
            .get("x-ms-error-code")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let kind = match code.as_str() {
            "InvalidResourceName" | "OutOfRangeInput" => K::BadName,
            "ContainerNotFound" | "BlobNotFound" | "ResourceNotFound" => K::NotFound,
            "ContainerAlreadyExists" | "ContainerBeingDeleted" => K::Conflict,
            "AuthenticationFailed" | "AuthorizationFailure" | "AuthorizationPermissionMismatch" => {
                K::AccessDenied
            }
            "ServerBusy" | "OperationTimedOut" | "InternalError" => K::Transient,
            _ => kind_of_status(status),
        };
        let hint = if kind == K::AccessDenied {
            "; check AZURE_STORAGE_CONNECTION_STRING (or AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY)"
        } else {
            ""
        };
        let code = if code.is_empty() {
            String::new()
        } else {
            format!(" {code}")
        };
        Err(ObjectStoreError::new(
            kind,
            format!("{what}: HTTP {status}{code}{hint}"),
        ))
    }

    fn what(bucket: &str, key: Option<&str>, op: &str) -> String {
        match key {
            Some(k) => format!("{op} of `{k}` in azure container `{bucket}`"),
            None => format!("{op} of azure container `{bucket}`"),
        }
    }

    fn blob_path(bucket: &str, key: &str) -> String {
        format!("/{}/{}", enc(bucket), enc_path(key))
    }

    async fn put_blob(
        &self,
        what: &str,
        bucket: &str,
        key: &str,
        body: reqwest::Body,
        len: u64,
    ) -> Result<(), ObjectStoreError> {
        let rb = self
            .request(
                reqwest::Method::PUT,
                &Self::blob_path(bucket, key),
                &[],
                &[("x-ms-blob-type", "BlockBlob".to_string())],
                len,
                "application/octet-stream",
            )
            .header("content-length", len)
            .body(body);
        self.send(what, rb).await?;
        Ok(())
    }

    fn block_id(upload_id: &str, number: u32) -> String {
        B64.encode(format!("{upload_id}-{number:06}"))
    }
}

#[async_trait]
impl ObjectStore for AzureBlobStore {
    fn store_type(&self) -> StoreType {
        StoreType::Azure
    }

    async fn create_bucket(&self, bucket: &str) -> Result<(), ObjectStoreError> {
        let what = Self::what(bucket, None, "create");
        sky_spec::buckets::check_bucket_name(StoreType::Azure, bucket)
            .map_err(|e| ObjectStoreError::new(K::BadName, e))?;
        let rb = self
            .request(
                reqwest::Method::PUT,
                &format!("/{}", enc(bucket)),
                &[("restype", "container".into())],
                &[],
                0,
                "",
            )
            .header("content-length", 0);
        self.send(&what, rb).await.map_err(|mut e| {
            if e.kind == K::Conflict {
                e.message = format!("{what}: the container already exists");
            }
            e
        })?;
        Ok(())
    }

    async fn delete_bucket(&self, bucket: &str) -> Result<(), ObjectStoreError> {
        let what = Self::what(bucket, None, "delete");
        // Azure deletes non-empty containers; the seam's contract refuses that.
        if !self
            .list_page(bucket, "", None, 1)
            .await?
            .objects
            .is_empty()
        {
            return Err(ObjectStoreError::new(
                K::Conflict,
                format!("{what}: the container is not empty; delete its blobs first"),
            ));
        }
        let rb = self.request(
            reqwest::Method::DELETE,
            &format!("/{}", enc(bucket)),
            &[("restype", "container".into())],
            &[],
            0,
            "",
        );
        self.send(&what, rb).await?;
        Ok(())
    }

    async fn bucket_exists(&self, bucket: &str) -> Result<bool, ObjectStoreError> {
        let what = Self::what(bucket, None, "get");
        let rb = self.request(
            reqwest::Method::GET,
            &format!("/{}", enc(bucket)),
            &[("restype", "container".into())],
            &[],
            0,
            "",
        );
        match self.send(&what, rb).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind == K::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn put(&self, bucket: &str, key: &str, data: Vec<u8>) -> Result<(), ObjectStoreError> {
        let what = Self::what(bucket, Some(key), "put");
        let len = data.len() as u64;
        self.put_blob(&what, bucket, key, data.into(), len).await
    }

    async fn put_file(&self, bucket: &str, key: &str, path: &Path) -> Result<(), ObjectStoreError> {
        let what = Self::what(bucket, Some(key), "put");
        let (body, len) = file_body(&what, path).await?;
        self.put_blob(&what, bucket, key, body, len).await
    }

    async fn get(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<ObjectReader, ObjectStoreError> {
        let what = Self::what(bucket, Some(key), "get");
        let mut headers = Vec::new();
        if let Some(r) = range {
            if r.end.is_some_and(|e| e <= r.start) {
                return Ok(Box::pin(tokio::io::empty()));
            }
            headers.push((
                "x-ms-range",
                match r.end {
                    Some(e) => format!("bytes={}-{}", r.start, e - 1),
                    None => format!("bytes={}-", r.start),
                },
            ));
        }
        let rb = self.request(
            reqwest::Method::GET,
            &Self::blob_path(bucket, key),
            &[],
            &headers,
            0,
            "",
        );
        Ok(body_reader(self.send(&what, rb).await?))
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectMeta, ObjectStoreError> {
        let what = Self::what(bucket, Some(key), "head");
        let rb = self.request(
            reqwest::Method::HEAD,
            &Self::blob_path(bucket, key),
            &[],
            &[],
            0,
            "",
        );
        let resp = self.send(&what, rb).await?;
        let h = resp.headers();
        Ok(ObjectMeta {
            key: key.to_string(),
            size: h
                .get("content-length")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            etag: h
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim_matches('"').to_string()),
        })
    }

    async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        token: Option<&str>,
        max_keys: u32,
    ) -> Result<ListPage, ObjectStoreError> {
        let what = Self::what(bucket, None, "list");
        let mut q = vec![
            ("restype", "container".to_string()),
            ("comp", "list".to_string()),
            ("maxresults", max_keys.clamp(1, 5000).to_string()),
        ];
        if !prefix.is_empty() {
            q.push(("prefix", prefix.to_string()));
        }
        if let Some(t) = token {
            q.push(("marker", t.to_string()));
        }
        let rb = self.request(
            reqwest::Method::GET,
            &format!("/{}", enc(bucket)),
            &q,
            &[],
            0,
            "",
        );
        let text = self
            .send(&what, rb)
            .await?
            .text()
            .await
            .map_err(|e| send_error(&what, e))?;
        let text = text.trim_start_matches('\u{feff}');
        let r: EnumerationResults = quick_xml::de::from_str(text)
            .map_err(|e| ObjectStoreError::new(K::Other, format!("{what}: bad answer: {e}")))?;
        Ok(ListPage {
            objects: r
                .blobs
                .blob
                .into_iter()
                .map(|b| ObjectMeta {
                    key: b.name,
                    size: b.properties.content_length.unwrap_or(0),
                    etag: b.properties.etag.map(|t| t.trim_matches('"').to_string()),
                })
                .collect(),
            next: r.next_marker.filter(|m| !m.is_empty()),
        })
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), ObjectStoreError> {
        let what = Self::what(bucket, Some(key), "delete");
        let rb = self.request(
            reqwest::Method::DELETE,
            &Self::blob_path(bucket, key),
            &[],
            &[],
            0,
            "",
        );
        match self.send(&what, rb).await {
            Ok(_) => Ok(()),
            Err(e) if e.message.contains("BlobNotFound") => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn create_multipart(&self, bucket: &str, key: &str) -> Result<String, ObjectStoreError> {
        if !self.bucket_exists(bucket).await? {
            return Err(ObjectStoreError::new(
                K::NotFound,
                format!(
                    "{}: the container does not exist",
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
        let what = Self::what(bucket, Some(key), &format!("upload of block {number}"));
        let id = Self::block_id(upload_id, number);
        let len = data.len() as u64;
        let rb = self
            .request(
                reqwest::Method::PUT,
                &Self::blob_path(bucket, key),
                &[("comp", "block".into()), ("blockid", id.clone())],
                &[],
                len,
                "application/octet-stream",
            )
            .header("content-length", len)
            .body(data);
        self.send(&what, rb).await?;
        Ok(CompletedPart { number, tag: id })
    }

    async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        _upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<(), ObjectStoreError> {
        let what = Self::what(bucket, Some(key), "committing the block list");
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
        for p in &parts {
            xml.push_str(&format!("<Latest>{}</Latest>", p.tag));
        }
        xml.push_str("</BlockList>");
        let len = xml.len() as u64;
        let rb = self
            .request(
                reqwest::Method::PUT,
                &Self::blob_path(bucket, key),
                &[("comp", "blocklist".into())],
                &[],
                len,
                "application/xml",
            )
            .header("content-length", len)
            .body(xml);
        self.send(&what, rb).await?;
        Ok(())
    }

    async fn abort_multipart(
        &self,
        _bucket: &str,
        _key: &str,
        _upload_id: &str,
    ) -> Result<(), ObjectStoreError> {
        // Uncommitted blocks are discarded by the service (after a week, or when another
        // block list is committed); nothing to do.
        Ok(())
    }
}
