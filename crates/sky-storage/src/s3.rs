//! [`S3Store`]: S3 and S3-compatible stores (R2, moto) through aws-sdk-s3.

use std::path::Path;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLocationConstraint, CompletedMultipartUpload, CreateBucketConfiguration,
};
use sky_provider::objstore::{
    ByteRange, CompletedPart, ListPage, ObjectMeta, ObjectReader, ObjectStore, ObjectStoreError,
    ObjectStoreErrorKind as K, StoreType,
};

/// An S3 (or S3-compatible) account.
#[derive(Clone, Debug)]
pub struct S3Store {
    client: Client,
    region: String,
    store: StoreType,
}

/// Maps an SDK error to a kind by its code, then its HTTP status.
fn map_err<E>(what: &str, e: SdkError<E, HttpResponse>) -> ObjectStoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = e.raw_response().map(|r| r.status().as_u16());
    let code = ProvideErrorMetadata::code(&e).map(str::to_string);
    let msg = ProvideErrorMetadata::message(&e).map(str::to_string);
    let kind = match (&e, code.as_deref()) {
        (
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_),
            _,
        ) => K::Transient,
        (_, Some("NoSuchBucket" | "NoSuchKey" | "NotFound" | "NoSuchUpload")) => K::NotFound,
        (
            _,
            Some(
                "AccessDenied"
                | "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "ExpiredToken"
                | "InvalidToken"
                | "AllAccessDisabled",
            ),
        ) => K::AccessDenied,
        (_, Some("InvalidBucketName")) => K::BadName,
        (_, Some("BucketAlreadyExists" | "BucketAlreadyOwnedByYou" | "BucketNotEmpty")) => {
            K::Conflict
        }
        (_, Some("SlowDown" | "InternalError" | "ServiceUnavailable" | "RequestTimeout")) => {
            K::Transient
        }
        _ => match status {
            Some(s) => crate::http::kind_of_status(s),
            None => K::Other,
        },
    };
    let detail = match (code, msg) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c,
        (None, Some(m)) => m,
        (None, None) => match status {
            Some(s) => format!("HTTP {s}"),
            None => format!("{}", aws_sdk_s3::error::DisplayErrorContext(&e)),
        },
    };
    let hint = match kind {
        K::AccessDenied => {
            "; check the AWS credentials (AWS_ACCESS_KEY_ID/AWS_PROFILE, ~/.aws/credentials) and their permissions"
        }
        _ => "",
    };
    ObjectStoreError::new(kind, format!("{what}: {detail}{hint}"))
}

impl S3Store {
    /// The standard AWS chain: environment, profile, SSO-less config files, IMDS;
    /// `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_S3`) selects another endpoint, which is then
    /// addressed path-style (moto, MinIO). The region defaults to us-east-1.
    pub async fn from_env() -> Self {
        let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        let path_style = std::env::var_os("AWS_ENDPOINT_URL").is_some()
            || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
        Self::from_conf(&conf, path_style, StoreType::S3)
    }

    /// An explicit endpoint (moto, R2, MinIO) with static credentials, path-style.
    pub async fn with_endpoint(
        store: StoreType,
        endpoint: &str,
        region: &str,
        access_key_id: &str,
        secret_access_key: &str,
    ) -> Self {
        let creds = aws_sdk_s3::config::Credentials::new(
            access_key_id,
            secret_access_key,
            None,
            None,
            "sky-storage",
        );
        let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_string()))
            .credentials_provider(creds)
            .endpoint_url(endpoint)
            .load()
            .await;
        Self::from_conf(&conf, true, store)
    }

    /// The standard chain, with an explicit endpoint (R2's account endpoint).
    pub async fn from_env_with_endpoint(store: StoreType, endpoint: &str) -> Self {
        let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .load()
            .await;
        Self::from_conf(&conf, true, store)
    }

    fn from_conf(conf: &aws_config::SdkConfig, path_style: bool, store: StoreType) -> Self {
        let region = conf
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "us-east-1".to_string());
        let s3conf = aws_sdk_s3::config::Builder::from(conf)
            .region(aws_config::Region::new(region.clone()))
            .force_path_style(path_style)
            .build();
        S3Store {
            client: Client::from_conf(s3conf),
            region,
            store,
        }
    }

    fn what(&self, bucket: &str, key: Option<&str>, op: &str) -> String {
        match key {
            Some(k) => format!("{op} of `{k}` in {} bucket `{bucket}`", self.store),
            None => format!("{op} of {} bucket `{bucket}`", self.store),
        }
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    fn store_type(&self) -> StoreType {
        self.store
    }

    async fn create_bucket(&self, bucket: &str) -> Result<(), ObjectStoreError> {
        let what = self.what(bucket, None, "create");
        sky_spec::buckets::check_bucket_name(self.store, bucket)
            .map_err(|e| ObjectStoreError::new(K::BadName, e))?;
        if self.bucket_exists(bucket).await? {
            return Err(ObjectStoreError::new(
                K::Conflict,
                format!("{what}: the bucket already exists"),
            ));
        }
        let mut req = self.client.create_bucket().bucket(bucket);
        if self.region != "us-east-1" && self.store == StoreType::S3 {
            req = req.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(self.region.as_str()))
                    .build(),
            );
        }
        req.send().await.map_err(|e| map_err(&what, e))?;
        Ok(())
    }

    async fn delete_bucket(&self, bucket: &str) -> Result<(), ObjectStoreError> {
        let what = self.what(bucket, None, "delete");
        self.client
            .delete_bucket()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| map_err(&what, e))?;
        Ok(())
    }

    async fn bucket_exists(&self, bucket: &str) -> Result<bool, ObjectStoreError> {
        match self.client.head_bucket().bucket(bucket).send().await {
            Ok(_) => Ok(true),
            Err(e) => {
                let e = map_err(&self.what(bucket, None, "head"), e);
                if e.kind == K::NotFound {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
        }
    }

    async fn put(&self, bucket: &str, key: &str, data: Vec<u8>) -> Result<(), ObjectStoreError> {
        let what = self.what(bucket, Some(key), "put");
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| map_err(&what, e))?;
        Ok(())
    }

    async fn put_file(&self, bucket: &str, key: &str, path: &Path) -> Result<(), ObjectStoreError> {
        let what = self.what(bucket, Some(key), "put");
        let body = ByteStream::from_path(path).await.map_err(|e| {
            ObjectStoreError::new(
                K::Other,
                format!("{what}: cannot read {}: {e}", path.display()),
            )
        })?;
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(body)
            .send()
            .await
            .map_err(|e| map_err(&what, e))?;
        Ok(())
    }

    async fn get(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<ObjectReader, ObjectStoreError> {
        let what = self.what(bucket, Some(key), "get");
        let mut req = self.client.get_object().bucket(bucket).key(key);
        if let Some(r) = range {
            if r.end.is_some_and(|e| e <= r.start) {
                return Ok(Box::pin(tokio::io::empty()));
            }
            req = req.range(match r.end {
                Some(e) => format!("bytes={}-{}", r.start, e - 1),
                None => format!("bytes={}-", r.start),
            });
        }
        let out = req.send().await.map_err(|e| map_err(&what, e))?;
        Ok(Box::pin(out.body.into_async_read()))
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectMeta, ObjectStoreError> {
        let what = self.what(bucket, Some(key), "head");
        let out = self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| map_err(&what, e))?;
        Ok(ObjectMeta {
            key: key.to_string(),
            size: out.content_length().unwrap_or(0).max(0) as u64,
            etag: out.e_tag().map(|t| t.trim_matches('"').to_string()),
        })
    }

    async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        token: Option<&str>,
        max_keys: u32,
    ) -> Result<ListPage, ObjectStoreError> {
        let what = self.what(bucket, None, "list");
        let out = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .max_keys(max_keys.clamp(1, 1000) as i32)
            .set_continuation_token(token.map(str::to_string))
            .send()
            .await
            .map_err(|e| map_err(&what, e))?;
        let objects = out
            .contents()
            .iter()
            .map(|o| ObjectMeta {
                key: o.key().unwrap_or_default().to_string(),
                size: o.size().unwrap_or(0).max(0) as u64,
                etag: o.e_tag().map(|t| t.trim_matches('"').to_string()),
            })
            .collect();
        let next = if out.is_truncated() == Some(true) {
            out.next_continuation_token().map(str::to_string)
        } else {
            None
        };
        Ok(ListPage { objects, next })
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), ObjectStoreError> {
        let what = self.what(bucket, Some(key), "delete");
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| map_err(&what, e))?;
        Ok(())
    }

    async fn create_multipart(&self, bucket: &str, key: &str) -> Result<String, ObjectStoreError> {
        let what = self.what(bucket, Some(key), "multipart upload");
        let out = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| map_err(&what, e))?;
        out.upload_id().map(str::to_string).ok_or_else(|| {
            ObjectStoreError::new(K::Other, format!("{what}: the store returned no upload id"))
        })
    }

    async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: u32,
        data: Vec<u8>,
    ) -> Result<CompletedPart, ObjectStoreError> {
        let what = self.what(bucket, Some(key), &format!("upload of part {number}"));
        let out = self
            .client
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number as i32)
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| map_err(&what, e))?;
        Ok(CompletedPart {
            number,
            tag: out.e_tag().unwrap_or_default().to_string(),
        })
    }

    async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<(), ObjectStoreError> {
        let what = self.what(bucket, Some(key), "completing the multipart upload");
        let parts = parts
            .into_iter()
            .map(|p| {
                aws_sdk_s3::types::CompletedPart::builder()
                    .part_number(p.number as i32)
                    .e_tag(p.tag)
                    .build()
            })
            .collect();
        self.client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| map_err(&what, e))?;
        Ok(())
    }

    async fn abort_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(), ObjectStoreError> {
        let what = self.what(bucket, Some(key), "aborting the multipart upload");
        self.client
            .abort_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| map_err(&what, e))?;
        Ok(())
    }
}
