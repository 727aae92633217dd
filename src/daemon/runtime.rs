//! The daemon's runtime identity (`status.daemonRuntime`): which build of
//! rollbridge is answering. `ensure-daemon` compares it with its own identity and
//! refuses to hand a deploy to a daemon running different code.
//!
//! A Rust binary keeps running even after its file is replaced or deleted, so
//! there is nothing to snapshot: the identity is the crate version plus the
//! SHA-256 of the executable, computed once at startup.

use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The identity format `ensure-daemon` understands.
pub const RUNTIME_FORMAT: u64 = 1;

pub use crate::control::status::RuntimeIdentity;

impl RuntimeIdentity {
    /// The identity of the running executable.
    pub fn current() -> std::io::Result<RuntimeIdentity> {
        RuntimeIdentity::current_with_digest(None)
    }

    /// [`RuntimeIdentity::current`], with the digest already known (a live
    /// upgrade hashed the new binary before executing it).
    pub fn current_with_digest(known: Option<String>) -> std::io::Result<RuntimeIdentity> {
        // `/proc/self/exe` still opens the running image after the file on disk was
        // replaced; `current_exe` gives the path it was started from.
        let image = Path::new("/proc/self/exe");
        let digest = match known {
            Some(digest) => digest,
            None if image.exists() => digest_file(image)?,
            None => digest_file(&std::env::current_exe()?)?,
        };
        let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("rollbridge"));
        let exe_text = exe.to_string_lossy();
        let exe = PathBuf::from(exe_text.trim_end_matches(" (deleted)"));
        let path = exe
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"));
        Ok(RuntimeIdentity {
            digest,
            format: RUNTIME_FORMAT,
            path: path.to_string_lossy().into_owned(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        })
    }
}

/// SHA-256 of a file's bytes as lowercase hex.
pub fn digest_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let count = file.read(&mut buffer)?;
        if count == 0 {
            break;
        }
        hasher.update(&buffer[..count]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_of_the_test_binary() {
        let identity = RuntimeIdentity::current().unwrap();
        assert_eq!(identity.digest.len(), 64);
        assert!(
            identity
                .digest
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(identity.format, 1);
        let json = serde_json::to_value(&identity).unwrap();
        let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["digest", "format", "path", "version"]);
    }

    #[test]
    fn digest_matches_known_value() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"abc").unwrap();
        assert_eq!(
            digest_file(&file).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
