//! Media in object storage through the `object_store` crate: an S3-compatible bucket (AWS S3,
//! MinIO, Cloudflare R2, Ceph ...) behind any CDN, for operators who do not want segments on
//! the transcoding node's disk. Keys are the same as on local disk, under a bucket prefix.

use crate::store::{MediaStore, StoreError, check_key};
use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path;
use std::sync::Arc;

/// A [`MediaStore`] over any `object_store` backend.
#[derive(Debug, Clone)]
pub struct ObjectMedia {
    inner: Arc<dyn ObjectStore>,
    /// Prepended to every key (may be empty).
    prefix: String,
}

fn failed(e: object_store::Error) -> StoreError {
    StoreError::Object(e.to_string())
}

impl ObjectMedia {
    pub fn new(inner: Arc<dyn ObjectStore>, prefix: &str) -> Self {
        Self {
            inner,
            prefix: prefix.trim_matches('/').to_owned(),
        }
    }

    /// An S3-compatible bucket from `s3://bucket[/prefix]`; credentials, region and endpoint
    /// come from the usual variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_REGION`, and `AWS_ENDPOINT` for a non-AWS service such as MinIO or R2).
    pub fn s3(url: &str) -> Result<Self, StoreError> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| StoreError::Object(format!("{url:?} is not an s3:// URL")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(StoreError::Object(format!("{url:?} names no bucket")));
        }
        let s3 = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(failed)?;
        Ok(Self::new(Arc::new(s3), prefix))
    }

    fn path(&self, key: &str) -> Result<Path, StoreError> {
        check_key(key)?;
        let full = if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.prefix)
        };
        Path::parse(full).map_err(|e| StoreError::Object(e.to_string()))
    }
}

#[async_trait]
impl MediaStore for ObjectMedia {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        let path = self.path(key)?;
        self.inner.put(&path, data.into()).await.map_err(failed)?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let path = self.path(key)?;
        match self.inner.get(&path).await {
            Ok(found) => Ok(Some(found.bytes().await.map_err(failed)?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(failed(e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        match self.inner.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(failed(e)),
        }
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<(), StoreError> {
        let path = self.path(prefix)?;
        let objects: Vec<_> = self
            .inner
            .list(Some(&path))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(failed)?;
        for location in objects {
            match self.inner.delete(&location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(failed(e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What every [`MediaStore`] promises, over `store`: put, get, delete (twice), delete by
    /// prefix (`s10/` is not under `s1/`), keys checked. `segment` is the bytes of a segment.
    async fn contract(store: &ObjectMedia, segment: Bytes) {
        store.put("s1/720p/s0.m4s", segment.clone()).await.unwrap();
        store
            .put("s1/720p/p0.0.m4s", Bytes::from_static(b"part"))
            .await
            .unwrap();
        store
            .put("s10/audio/s0.m4s", Bytes::from_static(b"other"))
            .await
            .unwrap();
        assert_eq!(store.get("s1/720p/s0.m4s").await.unwrap().unwrap(), segment);
        assert!(store.get("s1/720p/s9.m4s").await.unwrap().is_none());
        store.delete("s1/720p/p0.0.m4s").await.unwrap();
        store.delete("s1/720p/p0.0.m4s").await.unwrap();
        assert!(store.get("s1/720p/p0.0.m4s").await.unwrap().is_none());
        store.delete_prefix("s1").await.unwrap();
        assert!(store.get("s1/720p/s0.m4s").await.unwrap().is_none());
        assert_eq!(
            store.get("s10/audio/s0.m4s").await.unwrap().unwrap(),
            "other",
            "s10 is not under s1/"
        );
        assert!(matches!(
            store.get("../x").await,
            Err(StoreError::BadKey(_))
        ));
    }

    #[tokio::test]
    async fn the_store_contract_over_object_storage() {
        let backend = Arc::new(object_store::memory::InMemory::new());
        let store = ObjectMedia::new(backend.clone(), "/media/");
        store
            .put("s2/720p/s0.m4s", Bytes::from_static(b"seg"))
            .await
            .unwrap();
        // Keys sit under the prefix in the bucket.
        let raw = backend
            .get(&Path::from("media/s2/720p/s0.m4s"))
            .await
            .unwrap();
        assert_eq!(raw.bytes().await.unwrap(), "seg");
        contract(&store, Bytes::from_static(b"seg")).await;
    }

    /// The same contract against a real S3-compatible server (the test command starts one on
    /// loopback), in a bucket of this test's own.
    #[tokio::test]
    async fn the_store_contract_over_an_s3_server() {
        let endpoint = std::env::var("VITRINE_TEST_S3_ENDPOINT").expect(
            "VITRINE_TEST_S3_ENDPOINT is not set: run the tests with scripts/test.sh, or \
             eval \"$(scripts/services.sh start)\" first",
        );
        let bucket = format!("t{}", std::process::id());
        let made = reqwest::Client::new()
            .put(format!("{endpoint}/{bucket}"))
            .send()
            .await
            .unwrap();
        assert!(made.status().is_success(), "{}", made.status());
        let s3 = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&endpoint)
            .with_allow_http(true)
            .with_bucket_name(&bucket)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .build()
            .unwrap();
        let store = ObjectMedia::new(Arc::new(s3), "live");
        contract(&store, Bytes::from(vec![7u8; 300_000])).await;
    }

    #[test]
    fn s3_urls_are_checked() {
        assert!(ObjectMedia::s3("http://bucket").is_err());
        assert!(ObjectMedia::s3("s3:///prefix").is_err());
        let store = ObjectMedia::s3("s3://media-bucket/vitrine/hls").unwrap();
        assert_eq!(store.prefix, "vitrine/hls");
    }
}
