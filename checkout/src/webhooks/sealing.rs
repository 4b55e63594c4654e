//! Webhook signing secrets at rest. Unlike API tokens they cannot be stored as hashes (signing
//! needs the key itself), so they are sealed with ChaCha20-Poly1305 under a key the database
//! never sees: a file in the data directory, made on first start (mode 0600), which every node
//! of a deployment must share. A stolen database alone reveals no secret.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("key file {0}: {1}")]
    KeyFile(String, std::io::Error),
    #[error("key file {0} must hold 32 bytes")]
    KeyLength(String),
    #[error(
        "a sealed secret does not open with this key (another deployment's database, or a different key file)"
    )]
    Open,
}

/// Seals and opens secrets; cheap to clone.
#[derive(Clone)]
pub struct SecretBox {
    key: Arc<LessSafeKey>,
}

const PREFIX: &str = "c1:";

impl SecretBox {
    pub fn from_key(key: &[u8; 32]) -> Self {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, key).expect("32-byte key");
        Self {
            key: Arc::new(LessSafeKey::new(unbound)),
        }
    }

    /// A key for one process only (tests, tools): its sealed secrets die with it.
    pub fn ephemeral() -> Self {
        let mut key = [0u8; 32];
        SystemRandom::new()
            .fill(&mut key)
            .expect("system randomness");
        Self::from_key(&key)
    }

    /// Reads the key file, creating it with a fresh random key when missing.
    pub fn load_or_create(path: &Path) -> Result<Self, SealError> {
        load_or_create_key(path).map(|key| Self::from_key(&key))
    }

    pub fn seal(&self, plain: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("system randomness");
        let mut data = plain.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut data)
            .expect("sealing cannot fail for small inputs");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        format!("{PREFIX}{}", STANDARD.encode(out))
    }

    pub fn open(&self, sealed: &str) -> Result<String, SealError> {
        let raw = sealed.strip_prefix(PREFIX).ok_or(SealError::Open)?;
        let mut bytes = STANDARD.decode(raw).map_err(|_| SealError::Open)?;
        if bytes.len() < NONCE_LEN {
            return Err(SealError::Open);
        }
        let mut data = bytes.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&bytes).map_err(|_| SealError::Open)?;
        let plain = self
            .key
            .open_in_place(nonce, Aad::empty(), &mut data)
            .map_err(|_| SealError::Open)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SealError::Open)
    }
}

/// Reads a 32-byte server key from `path`, creating the file (mode 0600) with a fresh random
/// key when it is missing. Shared by every server secret kept in the data directory.
pub(crate) fn load_or_create_key(path: &Path) -> Result<[u8; 32], SealError> {
    let name = path.display().to_string();
    match std::fs::read(path) {
        Ok(bytes) => bytes.try_into().map_err(|_| SealError::KeyLength(name)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            SystemRandom::new()
                .fill(&mut key)
                .expect("system randomness");
            write_private(path, &key).map_err(|e| SealError::KeyFile(name, e))?;
            Ok(key)
        }
        Err(e) => Err(SealError::KeyFile(name, e)),
    }
}

fn write_private(path: &Path, key: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    options.open(path)?.write_all(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_their_key() {
        let a = SecretBox::ephemeral();
        let sealed = a.seal("whsec_abc");
        assert!(!sealed.contains("whsec"));
        assert_ne!(sealed, a.seal("whsec_abc"), "a fresh nonce each time");
        assert_eq!(a.open(&sealed).unwrap(), "whsec_abc");
        assert!(SecretBox::ephemeral().open(&sealed).is_err());
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push('A');
        assert!(a.open(&tampered).is_err() || tampered == sealed);
    }

    #[test]
    fn the_key_file_is_made_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let sealed = SecretBox::load_or_create(&path).unwrap().seal("x");
        assert_eq!(
            SecretBox::load_or_create(&path)
                .unwrap()
                .open(&sealed)
                .unwrap(),
            "x"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, b"short").unwrap();
        assert!(matches!(
            SecretBox::load_or_create(&path),
            Err(SealError::KeyLength(_))
        ));
    }
}
