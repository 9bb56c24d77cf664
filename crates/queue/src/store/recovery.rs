//! Opening a store: the format marker and the recovery scan.

use std::path::Path;

use herald_core::{DeliveryId, EventId, StoreError, UnixMillis};
use tracing::warn;

use super::{OpenReport, SledStore, MAX_CORRUPT_LOGS};
use crate::error::{self, QueueError};
use crate::keys;
use crate::records::{self, Delivery, Status};

impl SledStore {
    /// The open-time scan: rebuilds the ready index and the counts from the `d` records and
    /// removes deliveries whose event is missing (an enqueue interrupted before its commit
    /// point). There are no leases after a restart: a delivery leased at the crash is pending
    /// on disk, due when it was.
    pub(super) fn recover(&self) -> Result<OpenReport, StoreError> {
        let mut report = OpenReport::default();
        let now = UnixMillis::now().0;
        let mut last_event: Option<(EventId, bool)> = None;
        for item in self.tree.scan_prefix([keys::DELIVERY]) {
            let (key, value) = item.map_err(error::backend)?;
            let Some(id) = keys::id_of(&key).map(DeliveryId::from_bytes) else {
                report.corrupt_records += 1;
                log_corrupt(
                    report.corrupt_records,
                    &key,
                    "delivery key has the wrong length",
                );
                continue;
            };
            let mut row = match Delivery::decode(&value) {
                Ok(row) => row,
                Err(e) => {
                    report.corrupt_records += 1;
                    log_corrupt(report.corrupt_records, &key, &e.0);
                    continue;
                }
            };
            let has_event = match last_event {
                Some((event, exists)) if event == row.event_id => exists,
                _ => {
                    let exists = self
                        .tree
                        .contains_key(keys::event(row.event_id))
                        .map_err(error::backend)?;
                    last_event = Some((row.event_id, exists));
                    exists
                }
            };
            if !has_event {
                // Written by an enqueue that crashed before its event record (so it was never
                // acknowledged), or left by a purge that removed the event first.
                self.tree.remove(&key).map_err(error::backend)?;
                report.orphans_removed += 1;
                continue;
            }
            report.deliveries += 1;
            let state = self.subscribers.get_or_create(&row.subscriber);
            match row.status {
                Status::InFlight => {
                    // Leases are never written, so this only appears if a future version
                    // persists them; treat it like any lease lost in a restart: pending again.
                    row.status = Status::Pending;
                    row.updated_at = now;
                    self.tree
                        .insert(&key, row.encode())
                        .map_err(error::backend)?;
                    state.add(Status::Pending);
                    state.make_ready(row.due, id, row.ready(), row.ordering_key.as_deref());
                }
                Status::Pending => {
                    state.add(Status::Pending);
                    state.make_ready(row.due, id, row.ready(), row.ordering_key.as_deref());
                }
                finished => state.add(finished),
            }
        }
        if report.corrupt_records > MAX_CORRUPT_LOGS {
            warn!(
                total = report.corrupt_records,
                "more corrupt delivery records than logged individually"
            );
        }
        Ok(report)
    }
}

pub(super) fn check_format(tree: &sled::Tree, path: &Path) -> Result<(), QueueError> {
    let open_err = |e| QueueError::from_open(path.to_path_buf(), e);
    match tree.get(keys::FORMAT_KEY).map_err(open_err)? {
        Some(v) if v.as_ref() == [records::FORMAT_VERSION] => Ok(()),
        Some(v) if v.len() == 1 && records::READABLE_FORMATS.contains(&v[0]) => {
            // An older format this build reads: mark the directory with the current one, so an
            // older build refuses it instead of misreading the records written from now on.
            tree.insert(keys::FORMAT_KEY, &[records::FORMAT_VERSION])
                .map_err(open_err)?;
            Ok(())
        }
        Some(v) => Err(QueueError::UnsupportedFormat {
            path: path.to_path_buf(),
            found: v.first().copied().unwrap_or(0),
            supported: records::FORMAT_VERSION,
        }),
        None if tree.is_empty() => {
            // Not flushed here: it is the first write, so any later flush carries it, and
            // sled recovers a prefix of its log (nothing after the marker without the marker).
            tree.insert(keys::FORMAT_KEY, &[records::FORMAT_VERSION])
                .map_err(open_err)?;
            Ok(())
        }
        None => Err(QueueError::NotAQueue {
            path: path.to_path_buf(),
        }),
    }
}

fn log_corrupt(n: u64, key: &[u8], reason: &str) {
    if n <= MAX_CORRUPT_LOGS {
        warn!(key = %keys::describe(key), reason, "corrupt queue record kept and skipped");
    }
}
