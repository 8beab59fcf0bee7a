//! File edges: capped input (a store, a config or a header file that is
//! really `/dev/zero` or a 10 GB dump must not exhaust memory) and atomic
//! output (a reader sees the old file or the whole new one, never a part).

use std::io::{Read, Write};
use std::path::Path;

use crate::error::Error;

/// Largest certificate store file read (PEM bundle, DER, PKCS #7, SST): 64 MiB,
/// about 40 times Microsoft's whole root program as a PEM bundle.
pub const MAX_STORE_FILE: u64 = 64 * 1024 * 1024;

/// Largest small text input read (a certificate or key PEM, a TOML config or
/// scenario file, a voicemail header file): 1 MiB.
pub const MAX_TEXT_FILE: u64 = 1024 * 1024;

/// Reads a whole file, refusing it once it passes `cap` bytes. Works on
/// devices and pipes too (their size is unknown until read): at most
/// `cap + 1` bytes are ever held.
pub fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, Error> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    if let Ok(meta) = file.metadata()
        && meta.is_file()
        && meta.len() > cap
    {
        return Err(Error::TooLarge {
            path: path.to_path_buf(),
            limit: cap,
        });
    }
    let mut bytes = Vec::new();
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > cap {
        return Err(Error::TooLarge {
            path: path.to_path_buf(),
            limit: cap,
        });
    }
    Ok(bytes)
}

/// [`read_capped`] for text: the bytes must be UTF-8.
pub fn read_capped_text(path: &Path, cap: u64) -> Result<String, Error> {
    let bytes = read_capped(path, cap)?;
    String::from_utf8(bytes).map_err(|e| {
        Error::malformed(
            path,
            format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
        )
    })
}

/// Who may read a written file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// 0644: certificates, bundles, manifests.
    Public,
    /// 0600: private keys.
    Private,
}

/// Writes `bytes` to `path` through a temporary file in the same folder, fsyncs
/// it, renames it into place and fsyncs the folder.
///
/// The temporary file is created 0600, so a private key is never readable by
/// others, not even for a moment.
pub fn write_atomic(path: &Path, bytes: &[u8], access: Access) -> Result<(), Error> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".certgen-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| Error::io(tmp.path(), e))?;
    #[cfg(unix)]
    if access == Access::Public {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
            .map_err(|e| Error::io(tmp.path(), e))?;
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io(tmp.path(), e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    sync_dir(dir)
}

/// Creates a folder (and its parents) for output.
pub fn create_dir(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_read_refuses_devices_and_large_files() {
        let err = read_capped(Path::new("/dev/zero"), 4096).unwrap_err();
        assert!(matches!(err, Error::TooLarge { limit: 4096, .. }), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![b'a'; 100]).unwrap();
        assert_eq!(read_capped(&path, 100).unwrap().len(), 100);
        assert!(matches!(
            read_capped(&path, 99),
            Err(Error::TooLarge { limit: 99, .. })
        ));
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert!(matches!(
            read_capped_text(&path, 100),
            Err(Error::Malformed { .. })
        ));
    }
}
