//! The `tracing` feature: spans around the store's long steps (open and
//! recovery, each group commit, rollovers, index-file writes, scavenges,
//! projection handler calls) and an event with each step's figures. Without
//! the feature the macros expand to nothing and their arguments are not
//! evaluated.

/// `enter_span!(guard = "name", field = value, ...)` enters a span at
/// `INFO` and binds `guard`, which leaves it when dropped;
/// `enter_span!(debug guard = ...)` at `DEBUG`, for spans as frequent as
/// appends, which a subscriber filtering at `INFO` then skips at the cost
/// of one cached check. Without `tracing`, nothing.
#[cfg(feature = "tracing")]
macro_rules! enter_span {
    (debug $guard:ident = $name:literal $(, $field:ident = $value:expr)* $(,)?) => {
        let $guard = ::tracing::debug_span!($name $(, $field = $value)*).entered();
    };
    ($guard:ident = $name:literal $(, $field:ident = $value:expr)* $(,)?) => {
        let $guard = ::tracing::info_span!($name $(, $field = $value)*).entered();
    };
}

/// `enter_span!(guard = "name", field = value, ...)` enters a span at
/// `INFO` and binds `guard`, which leaves it when dropped;
/// `enter_span!(debug guard = ...)` at `DEBUG`. Without `tracing`, nothing.
#[cfg(not(feature = "tracing"))]
macro_rules! enter_span {
    (debug $guard:ident = $name:literal $(, $field:ident = $value:expr)* $(,)?) => {};
    ($guard:ident = $name:literal $(, $field:ident = $value:expr)* $(,)?) => {};
}

/// Emits an event in the current span with fields.
#[cfg(feature = "tracing")]
macro_rules! trace_event {
    ($message:literal $(, $field:ident = $value:expr)* $(,)?) => {
        ::tracing::debug!($($field = $value,)* $message)
    };
}

/// Emits an event in the current span with fields.
#[cfg(not(feature = "tracing"))]
macro_rules! trace_event {
    ($message:literal $(, $field:ident = $value:expr)* $(,)?) => {
        ()
    };
}

pub(crate) use enter_span;
pub(crate) use trace_event;
