//! eventcore's `CheckpointStore`, on evstore's durable checkpoints.
//!
//! eventcore saves the position of the last event a projector handled;
//! evstore's checkpoint is the position of the first event not yet
//! handled. The reader's position for log position `p` is therefore
//! saved as evstore checkpoint `p + 1`, under the projector's name, so
//! `Store::checkpoint_lags` and evstore's tools show how far each
//! eventcore projector is behind.
//!
//! A checkpoint store must give back any position it is given, and an
//! evstore checkpoint holds only a log position. A position that is not
//! one of the reader's (another back end's, say) is kept as a record (see
//! [`crate::records`]), and the evstore checkpoint is set to 0, which no
//! handled event gives (the first event's checkpoint is 1), to say "see
//! the record". The record is written first: a crash between the two
//! leaves the previous checkpoint.

use crate::blocking::off_executor;
use crate::error::Error;
use crate::event_store::EvstoreEventStore;
use crate::position::{log_position, stream_position};
use crate::records;
use crate::stream_names::checkpoint_stream;
use eventcore_types::{CheckpointStore, StreamPosition};
use evstore::{Store, Uuid};

/// The evstore checkpoint that sends a load to the checkpoint's record.
const SEE_RECORD: u64 = 0;

impl CheckpointStore for EvstoreEventStore {
    type Error = Error;

    async fn load(&self, name: &str) -> Result<Option<StreamPosition>, Error> {
        match self.store().load_checkpoint(name)? {
            Some(next) if next != SEE_RECORD => {
                let handled = next - 1;
                stream_position(handled)
                    .map(Some)
                    .ok_or(Error::PositionOutOfRange {
                        log_position: handled,
                    })
            }
            // No checkpoint, or one of another back end's positions. A
            // crash after writing a record and before pointing to it
            // leaves no checkpoint and a record: the record is the newer.
            _ => load_record(self.store(), name),
        }
    }

    async fn save(&self, name: &str, position: StreamPosition) -> Result<(), Error> {
        let store = self.store().clone();
        let shared = self.shared().clone();
        let name = name.to_string();
        off_executor("save a checkpoint", move || {
            let _one_save_at_a_time = shared.lock_record(&name);
            match log_position(position) {
                // At most MAX_LOG_POSITION: adding one cannot overflow.
                Some(handled) => store.save_checkpoint(&name, handled + 1)?,
                None => {
                    // Refuse a name evstore would refuse before writing
                    // the record.
                    store.load_checkpoint(&name)?;
                    let bytes = position.into_inner().into_bytes();
                    records::save(&store, &checkpoint_stream(&name), &bytes)?;
                    store.save_checkpoint(&name, SEE_RECORD)?;
                }
            }
            Ok(())
        })
        .await
    }
}

/// The position kept in checkpoint `name`'s record, if it has one.
fn load_record(store: &Store, name: &str) -> Result<Option<StreamPosition>, Error> {
    let Some(bytes) = records::load(store, &checkpoint_stream(name))? else {
        return Ok(None);
    };
    let uuid = Uuid::from_slice(&bytes).map_err(|_| Error::DamagedCheckpoint {
        name: name.to_string(),
        reason: format!("its record holds {} bytes, not a 16-byte UUID", bytes.len()),
    })?;
    Ok(Some(StreamPosition::new(uuid)))
}
