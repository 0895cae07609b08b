//! How typed events and snapshot states become bytes and back.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

/// Why a value did not encode or decode: the codec's own error (bincode's,
/// `serde_json`'s, or a message), kept whole so it can be inspected or
/// downcast. The typed layer wraps it in an [`crate::Error`] naming the
/// stream, version and event type, with the codec's error as its `source`.
///
/// It displays as the codec's error and passes on that error's own cause,
/// standing in for it.
///
/// ```
/// use evstore::CodecError;
/// let error = CodecError::new("3 trailing bytes after the value");
/// assert_eq!(error.to_string(), "3 trailing bytes after the value");
/// let parse = "x".parse::<u32>().unwrap_err();
/// let error = CodecError::new(parse.clone());
/// assert_eq!(error.get_ref().downcast_ref::<std::num::ParseIntError>(), Some(&parse));
/// ```
#[derive(Debug, Clone)]
pub struct CodecError(Arc<dyn StdError + Send + Sync>);

impl CodecError {
    /// Wraps a codec's error, or a message (a `&str` or `String`).
    pub fn new(error: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        CodecError(Arc::from(error.into()))
    }

    /// The codec's error.
    #[must_use]
    pub fn get_ref(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.0
    }

    /// The codec's error, as the typed layer's errors hold it.
    #[must_use]
    pub fn into_inner(self) -> Arc<dyn StdError + Send + Sync> {
        self.0
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl StdError for CodecError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0.source()
    }
}

/// Turns serde values into payload bytes and back.
///
/// The store itself only sees bytes; a codec is chosen when the typed layer
/// is made ([`crate::Store::typed`], [`crate::Store::typed_with`]). Every
/// process reading a stream must use the codec that wrote it.
pub trait Codec: Clone + Send + Sync + 'static {
    /// A short name for error messages.
    const NAME: &'static str;

    /// Encodes `value`.
    ///
    /// # Errors
    ///
    /// A [`CodecError`] if `value` cannot be represented in the codec's format.
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError>;

    /// Decodes all of `bytes` as a `T`: trailing bytes are an error.
    ///
    /// # Errors
    ///
    /// A [`CodecError`] if `bytes` are not exactly one `T` in the codec's
    /// format.
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError>;
}

/// The default codec: bincode 2 through serde, with its standard
/// configuration (little-endian, variable-length integers). Compact and
/// fast; enum variants are stored by index, so reordering the variants of a
/// stored enum changes what old events mean (the typed layer catches that by
/// comparing the decoded variant's type name with the one recorded).
///
/// Damaged bytes can claim a huge length; decoding refuses to reserve more
/// than 64 times the input size, so such input is an error, not an
/// allocation failure.
#[derive(Debug, Clone, Copy, Default)]
pub struct BincodeCodec;

impl BincodeCodec {
    fn decode_limited<T: DeserializeOwned, const LIMIT: usize>(
        bytes: &[u8],
    ) -> Result<T, CodecError> {
        let config = bincode::config::standard().with_limit::<LIMIT>();
        let (value, read) =
            bincode::serde::decode_from_slice(bytes, config).map_err(CodecError::new)?;
        if read != bytes.len() {
            return Err(CodecError::new(format!(
                "{} trailing bytes after the value",
                bytes.len() - read
            )));
        }
        Ok(value)
    }
}

impl Codec for BincodeCodec {
    const NAME: &'static str = "bincode";

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        bincode::serde::encode_to_vec(value, bincode::config::standard()).map_err(CodecError::new)
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        // bincode reserves a container's claimed length before reading it;
        // the limit (a constant, hence the steps) bounds what damaged input
        // can make it reserve, at 64 times the input's size or more.
        match bytes.len() {
            0..=0xFFFF => Self::decode_limited::<T, { 1 << 22 }>(bytes),
            0x1_0000..=0xF_FFFF => Self::decode_limited::<T, { 1 << 26 }>(bytes),
            0x10_0000..=0xFF_FFFF => Self::decode_limited::<T, { 1 << 30 }>(bytes),
            0x100_0000..=0xFFF_FFFF => Self::decode_limited::<T, { 1 << 34 }>(bytes),
            _ => Self::decode_limited::<T, { usize::MAX }>(bytes),
        }
    }
}

/// JSON through `serde_json` (cargo feature `json`): larger and slower than
/// bincode, but readable by other tools and tolerant of added fields and
/// reordered variants.
#[cfg(feature = "json")]
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonCodec;

#[cfg(feature = "json")]
impl Codec for JsonCodec {
    const NAME: &'static str = "json";

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        serde_json::to_vec(value).map_err(CodecError::new)
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        serde_json::from_slice(bytes).map_err(CodecError::new)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bincode_refuses_damaged_lengths_and_trailing_bytes() {
        // A string claiming 2^38 bytes, in 9 bytes of input.
        let mut bytes = vec![253u8];
        bytes.extend_from_slice(&(1u64 << 38).to_le_bytes());
        assert!(BincodeCodec.decode::<String>(&bytes).is_err());
        assert!(BincodeCodec.decode::<Vec<u64>>(&bytes).is_err());
        let mut value = BincodeCodec.encode(&(7u32, "seven".to_string())).unwrap();
        assert_eq!(
            BincodeCodec.decode::<(u32, String)>(&value).unwrap(),
            (7, "seven".to_string())
        );
        value.push(0);
        assert!(BincodeCodec.decode::<(u32, String)>(&value).is_err());
    }

    #[test]
    fn bincode_decodes_large_values_whose_decoded_size_exceeds_the_input() {
        // Small integers take one byte each encoded and eight decoded.
        let big: Vec<u64> = (0..300_000).map(|i| i % 100).collect();
        let bytes = BincodeCodec.encode(&big).unwrap();
        assert!(bytes.len() < 400_000);
        assert_eq!(BincodeCodec.decode::<Vec<u64>>(&bytes).unwrap(), big);
    }
}
