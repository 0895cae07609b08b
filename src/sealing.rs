//! Sealing payloads and metadata with their subject's key (XChaCha20-Poly1305,
//! the `chacha20poly1305` crate), so that forgetting the key erases them.
//!
//! A sealed field, in place of the bytes appended:
//!
//! | offset | size | field |
//! |--:|--:|---|
//! | 0 | 1 | envelope version (1) |
//! | 1 | 8 | key id (little-endian): which key of the subject sealed it |
//! | 9 | 24 | nonce, random |
//! | 33 | n + 16 | the sealed bytes and their tag |
//!
//! The associated data is the event's id and which field it is, so a sealed
//! payload cannot be passed off as another event's, or as metadata. An empty
//! field is left empty.

use crate::key_store::SubjectKey;
use bytes::Bytes;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// The prefix of the tag that marks an event as sealed and names its
/// subject.
pub const SUBJECT_TAG_PREFIX: &str = "$subject:";
const ENVELOPE_VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const HEAD_LEN: usize = 1 + 8 + NONCE_LEN;
/// Bytes sealing adds to a non-empty field.
pub(crate) const SEALING_OVERHEAD: usize = HEAD_LEN + 16;

/// Which field of an event is sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The payload.
    Payload,
    /// The metadata.
    Metadata,
}

fn associated(id: &[u8; 16], field: Field) -> [u8; 17] {
    let mut aad = [0u8; 17];
    aad[..16].copy_from_slice(id);
    aad[16] = match field {
        Field::Payload => 0,
        Field::Metadata => 1,
    };
    aad
}

/// `plain` sealed with `key` for the event with id `id`.
///
/// # Errors
///
/// If the cipher refuses (a field too large for it), with why.
pub fn seal(
    key: &SubjectKey,
    id: &[u8; 16],
    field: Field,
    plain: &[u8],
) -> Result<Bytes, &'static str> {
    if plain.is_empty() {
        return Ok(Bytes::new());
    }
    let mut nonce = [0u8; NONCE_LEN];
    rand::fill(&mut nonce);
    let cipher = XChaCha20Poly1305::new((&key.key).into());
    let aad = associated(id, field);
    let sealed = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plain,
                aad: &aad,
            },
        )
        .map_err(|_| "the field cannot be sealed")?;
    let mut out = Vec::with_capacity(HEAD_LEN + sealed.len());
    out.push(ENVELOPE_VERSION);
    out.extend_from_slice(&key.id.to_le_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(Bytes::from(out))
}

/// What opening a sealed field found.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    /// The bytes appended.
    Plain(Bytes),
    /// Sealed with a key that is gone: erased.
    Erased,
}

/// The id of the key that sealed `sealed`, if it is a sealed field.
pub fn key_id(sealed: &[u8]) -> Option<u64> {
    let id = sealed.get(1..9)?;
    (sealed.first() == Some(&ENVELOPE_VERSION))
        .then(|| u64::from_le_bytes(id.try_into().unwrap_or_default()))
}

/// Opens a field sealed by [`seal`], given its subject's key if it still
/// has one.
///
/// # Errors
///
/// Why the field is not a sealed field that `key` opens, when `key` is the
/// key it names.
pub fn open(
    key: Option<&SubjectKey>,
    id: &[u8; 16],
    field: Field,
    sealed: &[u8],
) -> Result<Opened, &'static str> {
    if sealed.is_empty() {
        return Ok(Opened::Plain(Bytes::new()));
    }
    let (head, body) = sealed
        .split_at_checked(HEAD_LEN)
        .ok_or("sealed field cut short")?;
    let (version, rest) = head.split_first().ok_or("sealed field cut short")?;
    if *version != ENVELOPE_VERSION {
        return Err("unknown sealed field version");
    }
    let (key_id, nonce) = rest.split_at(8);
    let key_id = u64::from_le_bytes(key_id.try_into().map_err(|_| "sealed field cut short")?);
    let Some(key) = key.filter(|k| k.id == key_id) else {
        return Ok(Opened::Erased);
    };
    let cipher = XChaCha20Poly1305::new((&key.key).into());
    let aad = associated(id, field);
    let plain = cipher
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: body,
                aad: &aad,
            },
        )
        .map_err(|_| "sealed field does not open with its subject's key")?;
    Ok(Opened::Plain(Bytes::from(plain)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const KEY: SubjectKey = SubjectKey {
        id: 7,
        key: [9; 32],
    };
    const ID: [u8; 16] = [1; 16];

    #[test]
    fn a_sealed_field_opens_with_its_key_only_and_reads_as_erased_without_it() {
        let sealed = seal(&KEY, &ID, Field::Payload, b"alice@example.com").unwrap();
        assert!(!sealed.windows(5).any(|w| w == b"alice"));
        assert_eq!(sealed.len(), 17 + SEALING_OVERHEAD);
        let opened = open(Some(&KEY), &ID, Field::Payload, &sealed).unwrap();
        assert_eq!(
            opened,
            Opened::Plain(Bytes::from_static(b"alice@example.com"))
        );
        assert_eq!(open(None, &ID, Field::Payload, &sealed), Ok(Opened::Erased));
        let newer = SubjectKey {
            id: 8,
            key: [9; 32],
        };
        assert_eq!(
            open(Some(&newer), &ID, Field::Payload, &sealed),
            Ok(Opened::Erased)
        );
        // Bound to its event and field.
        assert!(open(Some(&KEY), &[2; 16], Field::Payload, &sealed).is_err());
        assert!(open(Some(&KEY), &ID, Field::Metadata, &sealed).is_err());
        let mut flipped = sealed.to_vec();
        flipped[40] ^= 1;
        assert!(open(Some(&KEY), &ID, Field::Payload, &flipped).is_err());
        assert!(open(Some(&KEY), &ID, Field::Payload, &sealed[..20]).is_err());
        // Two seals of the same bytes differ (random nonces).
        assert_ne!(
            seal(&KEY, &ID, Field::Payload, b"x").unwrap(),
            seal(&KEY, &ID, Field::Payload, b"x").unwrap()
        );
        assert!(seal(&KEY, &ID, Field::Payload, b"").unwrap().is_empty());
    }
}
