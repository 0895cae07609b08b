//! What makes a user's event type storable: a name for each kind of event,
//! beside the serde traits its codec needs.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// An event type of the user's domain, usually an enum with one variant per
/// kind of event. [`DomainEvent::event_type`] names the variant; the name is
/// stored with each event (for filters, tools and other languages) and
/// checked when the event is read back.
///
/// ```
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// enum CartEvent {
///     ItemAdded { sku: String, quantity: u32 },
///     CheckedOut,
/// }
///
/// impl evstore::DomainEvent for CartEvent {
///     fn event_type(&self) -> &str {
///         match self {
///             CartEvent::ItemAdded { .. } => "ItemAdded",
///             CartEvent::CheckedOut => "CheckedOut",
///         }
///     }
/// }
/// ```
pub trait DomainEvent: Serialize + DeserializeOwned {
    /// The name of this event's kind, such as its variant name. It must not
    /// be empty, and the same variant must always give the same name.
    fn event_type(&self) -> &str;
}
