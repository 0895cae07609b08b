//! eventcore's [`StreamPosition`], a UUID, for a position in evstore's
//! global log, a `u64`, and back.
//!
//! The position is written into a version 8 ("custom") UUID: the first
//! eight bytes are a fixed marker (`evstor` in ASCII, then the version
//! nibble), the last eight hold the position under the two variant bits.
//! UUIDs compare by their bytes, so two such positions compare as the log
//! positions they carry: the projection runner's "after this position"
//! means the same in both.

use eventcore_types::StreamPosition;
use evstore::Uuid;

/// The first eight bytes of every position UUID: `evstor`, then version 8.
const MARKER: u64 = 0x6576_7374_6f72_8000;
/// The RFC 9562 variant bits, `10`, at the top of the last eight bytes.
const VARIANT: u64 = 0b10 << 62;
const VARIANT_MASK: u64 = 0b11 << 62;

/// The largest log position a [`StreamPosition`] can carry: the variant
/// bits take the top two bits of the 64. No store reaches it (it is over
/// four billion billion events).
pub const MAX_LOG_POSITION: u64 = !VARIANT_MASK;

/// The [`StreamPosition`] of the event at `log_position` in the store's
/// global log, or `None` above [`MAX_LOG_POSITION`].
///
/// ```
/// use evstore_eventcore::{log_position, stream_position};
/// let position = stream_position(41).unwrap();
/// assert_eq!(log_position(position), Some(41));
/// assert!(stream_position(41) < stream_position(42));
/// ```
#[must_use]
pub fn stream_position(log_position: u64) -> Option<StreamPosition> {
    (log_position <= MAX_LOG_POSITION)
        .then(|| StreamPosition::new(Uuid::from_u64_pair(MARKER, VARIANT | log_position)))
}

/// The log position a [`StreamPosition`] stands for, or `None` if it was
/// not made by [`stream_position`] (one of another back end's positions,
/// say).
#[must_use]
pub fn log_position(position: StreamPosition) -> Option<u64> {
    let (marker, low) = position.into_inner().as_u64_pair();
    (marker == MARKER && low & VARIANT_MASK == VARIANT).then_some(low & !VARIANT_MASK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_keep_their_order() {
        let positions = [
            0,
            1,
            2,
            255,
            256,
            1 << 40,
            MAX_LOG_POSITION - 1,
            MAX_LOG_POSITION,
        ];
        let mut previous = None;
        for position in positions {
            let encoded = stream_position(position).unwrap();
            assert_eq!(log_position(encoded), Some(position));
            let uuid = encoded.into_inner();
            assert_eq!(uuid.get_version_num(), 8);
            assert_eq!(uuid.as_bytes()[8] >> 6, 0b10, "RFC 9562 variant");
            assert!(previous < Some(encoded));
            previous = Some(encoded);
        }
        assert_eq!(stream_position(MAX_LOG_POSITION + 1), None);
    }

    #[test]
    fn other_uuids_are_not_log_positions() {
        assert_eq!(log_position(StreamPosition::new(Uuid::nil())), None);
        assert_eq!(log_position(StreamPosition::new(Uuid::max())), None);
        let v4 = Uuid::from_u128(0x6576_7374_6f72_4000_0000_0000_0000_0001);
        assert_eq!(log_position(StreamPosition::new(v4)), None);
    }
}
