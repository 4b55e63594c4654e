//! Where segments, parts, init segments, posters and recording manifests are kept: a
//! [`MediaStore`] keyed by `{stream}/{rendition}/{file}`. Local disk under the data dir by
//! default; any store an operator provides (an S3-compatible bucket behind a CDN) implements the
//! same four calls.

use async_trait::async_trait;
use bytes::Bytes;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid media key {0:?}")]
    BadKey(String),
    #[error("media store: {0}")]
    Io(#[from] std::io::Error),
    #[error("object storage: {0}")]
    Object(String),
}

/// Object storage for media: whole objects, written once (a key is never rewritten with other
/// bytes except the manifest and the poster), read by key, removed by prefix.
#[async_trait]
pub trait MediaStore: Send + Sync + 'static {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError>;
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError>;
    /// Removes one object; a missing object is not an error.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Removes every object under `prefix/` (a deleted stream's media).
    async fn delete_prefix(&self, prefix: &str) -> Result<(), StoreError>;
}

/// Keys are made of this crate's own names, but a stream id or a file name from a URL passes
/// through here too: only `[A-Za-z0-9._-]` segments separated by `/`, none starting with a dot.
pub fn check_key(key: &str) -> Result<(), StoreError> {
    let ok = !key.is_empty()
        && key.len() <= 256
        && key.split('/').all(|part| {
            !part.is_empty()
                && !part.starts_with('.')
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(StoreError::BadKey(key.to_owned()))
    }
}

/// Files under a root directory; writes go to a temporary name and are renamed into place, so
/// a reader never sees half a segment.
#[derive(Debug, Clone)]
pub struct LocalDisk {
    root: PathBuf,
}

impl LocalDisk {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

#[async_trait]
impl MediaStore for LocalDisk {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        check_key(key)?;
        let path = self.root.join(key);
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        tokio::fs::write(&tmp, &data).await?;
        tokio::fs::rename(&tmp, &path).await?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        check_key(key)?;
        match tokio::fs::read(self.root.join(key)).await {
            Ok(data) => Ok(Some(Bytes::from(data))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        check_key(key)?;
        match tokio::fs::remove_file(self.root.join(key)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<(), StoreError> {
        check_key(prefix)?;
        match tokio::fs::remove_dir_all(self.root.join(prefix)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape() {
        for bad in [
            "",
            "../x",
            "a/../b",
            "a//b",
            "/abs",
            "a/.hidden",
            "a b",
            "a\\b",
        ] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        for good in ["s1/720p/s12.m4s", "s1/poster.jpg", "abc-DEF_1/init0.mp4"] {
            assert!(check_key(good).is_ok(), "{good:?}");
        }
    }

    #[tokio::test]
    async fn put_get_delete() {
        let dir = std::env::temp_dir().join(format!("vitrine-store-{}", std::process::id()));
        let store = LocalDisk::new(&dir);
        store
            .put("s1/720p/s0.m4s", Bytes::from_static(b"abc"))
            .await
            .unwrap();
        assert_eq!(store.get("s1/720p/s0.m4s").await.unwrap().unwrap(), "abc");
        assert!(store.get("s1/720p/s9.m4s").await.unwrap().is_none());
        store
            .put("s1/720p/p0.0.m4s", Bytes::from_static(b"p"))
            .await
            .unwrap();
        store.delete("s1/720p/p0.0.m4s").await.unwrap();
        store.delete("s1/720p/p0.0.m4s").await.unwrap();
        assert!(store.get("s1/720p/p0.0.m4s").await.unwrap().is_none());
        store.delete_prefix("s1").await.unwrap();
        assert!(store.get("s1/720p/s0.m4s").await.unwrap().is_none());
        store.delete_prefix("s1").await.unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }
}
