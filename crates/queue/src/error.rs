//! [`QueueError`] (opening a store) and the mapping of sled errors into
//! [`herald_core::StoreError`] (everything after).

use std::io;
use std::path::PathBuf;

use herald_core::StoreError;

use crate::keys;
use crate::records::DecodeError;

/// Why a queue directory could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// Another process (or another store in this process) has the directory open.
    #[error(
        "queue directory {} is locked: it is in use by another process (is another herald \
         running with the same data_dir?)",
        path.display()
    )]
    Locked {
        /// The directory.
        path: PathBuf,
        /// sled's report.
        #[source]
        source: sled::Error,
    },
    /// The directory could not be created, read or opened as a sled database.
    #[error("cannot open queue directory {}: {source}", path.display())]
    Open {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: sled::Error,
    },
    /// The directory holds a queue written in a layout this build does not read.
    #[error(
        "queue directory {} has storage format {found}; this build reads format {supported}",
        path.display()
    )]
    UnsupportedFormat {
        /// The directory.
        path: PathBuf,
        /// The version found on disk.
        found: u8,
        /// The version this build reads.
        supported: u8,
    },
    /// The directory holds sled data that Herald did not write.
    #[error("{} is not a herald queue directory (it has data but no herald format marker)", path.display())]
    NotAQueue {
        /// The directory.
        path: PathBuf,
    },
    /// Reading the stored deliveries back at open failed.
    #[error("recovering queue directory {}: {source}", path.display())]
    Recovery {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: StoreError,
    },
    /// The background sync thread could not be started.
    #[error("cannot start the queue's sync thread: {0}")]
    Thread(#[source] io::Error),
}

impl QueueError {
    pub(crate) fn from_open(path: PathBuf, source: sled::Error) -> Self {
        // sled reports a held flock as an `Io` error "could not acquire lock on ...".
        let locked = matches!(&source, sled::Error::Io(e)
            if e.to_string().contains("could not acquire lock")
                || e.kind() == io::ErrorKind::WouldBlock);
        if locked {
            Self::Locked { path, source }
        } else {
            Self::Open { path, source }
        }
    }
}

/// Whether an I/O error means the device is out of space.
pub(crate) fn is_full(e: &io::Error) -> bool {
    // sled clones stored errors through `io::Error::new(kind, ..)`, so the kind survives but the
    // raw OS code may not; check both and the message as a last resort.
    e.kind() == io::ErrorKind::StorageFull
        || e.raw_os_error() == Some(ENOSPC)
        || e.to_string().contains("No space left on device")
}

/// `ENOSPC` (28 on Linux, macOS and the BSDs).
const ENOSPC: i32 = 28;

/// Maps an engine error: out-of-space becomes [`StoreError::Full`], the rest
/// [`StoreError::Backend`].
pub(crate) fn backend(e: sled::Error) -> StoreError {
    match e {
        sled::Error::Io(io) if is_full(&io) => StoreError::Full(io),
        other => StoreError::Backend(Box::new(other)),
    }
}

/// A record under `key` that could not be decoded.
pub(crate) fn corrupt(key: &[u8], e: DecodeError) -> StoreError {
    StoreError::Corrupt {
        key: keys::describe(key),
        reason: e.0,
    }
}

/// A key that does not have the shape its prefix promises.
pub(crate) fn bad_key(key: &[u8], reason: &str) -> StoreError {
    StoreError::Corrupt {
        key: keys::describe(key),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_space_maps_to_full() {
        let e = sled::Error::Io(io::Error::from_raw_os_error(ENOSPC));
        assert!(matches!(backend(e), StoreError::Full(_)));
        // The shape sled produces after cloning its stored global error.
        let cloned = sled::Error::Io(io::Error::new(io::ErrorKind::StorageFull, "disk"));
        assert!(matches!(backend(cloned), StoreError::Full(_)));
        let other = sled::Error::Io(io::Error::other("boom"));
        assert!(matches!(backend(other), StoreError::Backend(_)));
    }

    #[test]
    fn lock_errors_name_the_path() {
        let source = sled::Error::Io(io::Error::other(
            "could not acquire lock on \"/x/db\": Os { code: 11 }",
        ));
        let e = QueueError::from_open("/x".into(), source);
        assert!(matches!(e, QueueError::Locked { .. }));
        let msg = e.to_string();
        assert!(msg.contains("/x") && msg.contains("locked"), "{msg}");
    }
}
