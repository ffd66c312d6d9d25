//! Opening the files a scenario names (the scenario itself, WAVs to play) without hanging or
//! reading without bound: only regular files, opened non-blocking (a FIFO does not wait for a
//! writer), checked after opening (no swap between a check and the open), within a size limit,
//! and, where the caller asks, never through a symbolic link.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Whether a symbolic link may lead to the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Symlinks {
    Follow,
    /// The last component must not be a link (the web workspace: a link could lead outside it).
    Refuse,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a regular file (it is {0}); callflow reads only regular files")]
    NotRegular(&'static str),
    #[error("a symbolic link; links are not followed here")]
    Symlink,
    #[error("{size} bytes, more than the limit of {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
}

/// Opens `path` for reading if it is a regular file of at most `limit` bytes; its size.
pub fn open_regular(path: &Path, limit: u64, symlinks: Symlinks) -> Result<(File, u64), OpenError> {
    let mut flags = libc::O_NONBLOCK | libc::O_NOCTTY;
    if symlinks == Symlinks::Refuse {
        flags |= libc::O_NOFOLLOW;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| {
            // O_NOFOLLOW on a link fails with ELOOP.
            if symlinks == Symlinks::Refuse && e.raw_os_error() == Some(libc::ELOOP) {
                OpenError::Symlink
            } else {
                OpenError::Io(e)
            }
        })?;
    let meta = file.metadata()?;
    let ft = meta.file_type();
    if !ft.is_file() {
        use std::os::unix::fs::FileTypeExt;
        let kind = if ft.is_dir() {
            "a folder"
        } else if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_char_device() || ft.is_block_device() {
            "a device"
        } else if ft.is_socket() {
            "a socket"
        } else {
            "not a file"
        };
        return Err(OpenError::NotRegular(kind));
    }
    if meta.len() > limit {
        return Err(OpenError::TooLarge {
            size: meta.len(),
            limit,
        });
    }
    Ok((file, meta.len()))
}

/// The bytes of a regular file of at most `limit` bytes (a file that grows while it is read is
/// cut at the limit and refused).
pub fn read_regular(path: &Path, limit: u64, symlinks: Symlinks) -> Result<Vec<u8>, OpenError> {
    let (file, size) = open_regular(path, limit, symlinks)?;
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(OpenError::TooLarge {
            size: bytes.len() as u64,
            limit,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_regular_file_at_once() {
        let dir = std::env::temp_dir().join(format!("callflow-open-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        let _ = std::fs::remove_file(&fifo);
        // mkfifo(1) keeps `unsafe` out of the crate.
        let st = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(st.success());
        let e = read_regular(&fifo, 100, Symlinks::Follow).unwrap_err();
        assert!(matches!(e, OpenError::NotRegular("a FIFO")), "{e}");
        let e = read_regular(Path::new("/dev/zero"), 100, Symlinks::Follow).unwrap_err();
        assert!(matches!(e, OpenError::NotRegular("a device")), "{e}");
        let link = dir.join("zero-link");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let e = read_regular(&link, 100, Symlinks::Follow).unwrap_err();
        assert!(matches!(e, OpenError::NotRegular("a device")), "{e}");
        let e = read_regular(&link, 100, Symlinks::Refuse).unwrap_err();
        assert!(matches!(e, OpenError::Symlink), "{e}");
        let big = dir.join("big");
        std::fs::write(&big, vec![b'x'; 101]).unwrap();
        let e = read_regular(&big, 100, Symlinks::Follow).unwrap_err();
        assert!(
            matches!(
                e,
                OpenError::TooLarge {
                    size: 101,
                    limit: 100
                }
            ),
            "{e}"
        );
        assert_eq!(
            read_regular(&big, 101, Symlinks::Refuse).unwrap().len(),
            101
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
