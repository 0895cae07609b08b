//! What the store holds: its streams, its segments and watermarks, and the
//! counters of index maintenance.

use super::Store;
#[cfg(doc)]
use crate::error::Error;
use crate::error::Result;
use crate::index::deferred_check::read_checked;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

impl Store {
    /// In a read-only store, reads the events the writing process appended
    /// since the last look, now rather than at the next poll, and returns
    /// the end of what readers see (the last visible position plus one).
    /// A store that writes is always up to date: it just returns that end.
    ///
    /// # Errors
    ///
    /// In a read-only store, the error that stopped it following the log
    /// ([`Error::Corrupted`], [`Error::Io`]), now or at an earlier poll.
    pub fn refresh(&self) -> Result<u64> {
        if let Some(follower) = &self.inner.follower {
            self.inner.state.check_poison()?;
            follower.lock().poll(&self.inner.state)?;
            // The writer may have forgotten subjects since.
            self.inner.keys.reload()?;
        }
        Ok(self.visible_end())
    }

    /// The segments of the log and its watermarks: what `evstore info`
    /// shows.
    ///
    /// ```
    /// use evstore::{EventData, ExpectedVersion, Options, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), Options::default()).unwrap();
    /// store.append("a", ExpectedVersion::Any, &[EventData::new("E", &b"x"[..])]).unwrap();
    /// let info = store.log_info();
    /// assert_eq!(info.segments.len(), 1);
    /// assert_eq!((info.segments[0].events, info.durable_end), (1, 1));
    /// ```
    #[must_use]
    pub fn log_info(&self) -> LogInfo {
        let state = &self.inner.state;
        let (summaries, stream_count) = {
            let index = state.index.read();
            (index.segment_summaries(), index.stream_count())
        };
        let segments = summaries
            .into_iter()
            .map(|summary| SegmentInfo {
                path: summary.segment.path().to_path_buf(),
                base_position: summary.segment.base_position(),
                events: if summary.segment.is_removed() {
                    0
                } else {
                    summary.events
                },
                removed: summary.segment.is_removed(),
                capacity: summary.segment.capacity(),
                file_len: summary.segment.file().len().unwrap_or(0),
                sealed: summary.sealed,
                index_file: summary.index_file,
            })
            .collect();
        LogInfo {
            segments,
            written_end: state.written.load(Ordering::Acquire),
            durable_end: state.durable.load(Ordering::Acquire),
            stream_count,
        }
    }

    /// The number of streams with at least one written event.
    #[must_use]
    pub fn stream_count(&self) -> usize {
        self.inner.state.index.read().stream_count()
    }

    /// Every stream with at least one visible event, in name order, with
    /// its version. The catalogue is read a page at a time, so iterating a
    /// store with millions of streams holds only one page of names; streams
    /// created meanwhile appear if their name sorts after the current page.
    ///
    /// ```
    /// use evstore::{EventData, ExpectedVersion, Options, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), Options::default()).unwrap();
    /// for stream in ["order-2", "order-1", "order-2"] {
    ///     store.append(stream, ExpectedVersion::Any, &[EventData::new("E", &b""[..])]).unwrap();
    /// }
    /// let streams: Vec<_> = store.streams().collect::<evstore::Result<_>>().unwrap();
    /// assert_eq!(streams[0].name, "order-1");
    /// assert_eq!((streams[1].name.as_str(), streams[1].version), ("order-2", 1));
    /// ```
    #[must_use]
    pub fn streams(&self) -> Streams {
        Streams {
            store: self.clone(),
            page: std::collections::VecDeque::new(),
            after: None,
            done: false,
        }
    }

    /// Index files found damaged after open and rebuilt from their segments.
    /// (Those found at open are counted in [`Store::recovery_stats`].)
    #[must_use]
    pub fn index_repairs(&self) -> u64 {
        self.inner
            .state
            .index
            .read()
            .repairs()
            .count
            .load(Ordering::Relaxed)
    }

    /// Sealed segments whose index file could not be written (their index
    /// stays in memory until the next open rebuilds the file).
    #[must_use]
    pub fn index_write_failures(&self) -> u64 {
        self.inner
            .state
            .index_write_failures
            .load(Ordering::Relaxed)
    }
}

/// The log's segments and watermarks, from [`Store::log_info`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LogInfo {
    /// Every segment, oldest first.
    pub segments: Vec<SegmentInfo>,
    /// Every position below this is written (and indexed).
    pub written_end: u64,
    /// Every position below this is durable.
    pub durable_end: u64,
    /// Streams with at least one written event.
    pub stream_count: usize,
}

/// One segment file, in [`LogInfo`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SegmentInfo {
    /// The segment file.
    pub path: PathBuf,
    /// The position of its first event.
    pub base_position: u64,
    /// Events it holds (written ones, in the active segment; none once
    /// removed).
    pub events: u64,
    /// Whether a scavenge removed it: none of its events was read any
    /// more, and only its header, seal and index file remain.
    pub removed: bool,
    /// The bytes its header allows the writer to fill.
    pub capacity: u64,
    /// The file's length (0 if it could not be read).
    pub file_len: u64,
    /// Whether it is sealed: complete, never written again.
    pub sealed: bool,
    /// The index file serving it, once one is written and in use.
    pub index_file: Option<PathBuf>,
}

/// A stream and its version, from [`Store::streams`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamInfo {
    /// The stream name.
    pub name: String,
    /// The version of its last visible event: its event count minus one,
    /// unless its metadata or a deletion drops its oldest events (a read
    /// of the stream from version 0 starts at the first it keeps).
    pub version: u64,
}

/// Iterator over a store's streams; see [`Store::streams`].
#[derive(Debug)]
pub struct Streams {
    store: Store,
    page: std::collections::VecDeque<StreamInfo>,
    after: Option<String>,
    done: bool,
}

/// Streams fetched per look at the catalogue.
const STREAMS_PAGE: usize = 512;

impl Iterator for Streams {
    type Item = Result<StreamInfo>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.page.is_empty() && !self.done {
            let end = self.store.visible_end();
            let page = read_checked(&self.store.inner.state.index, |index| {
                index.streams_page(self.after.as_deref(), STREAMS_PAGE, end)
            });
            let page = match page {
                Ok(page) => page,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            self.done = page.len() < STREAMS_PAGE;
            self.after = page.last().map(|(name, _)| name.to_string());
            self.page
                .extend(page.into_iter().filter_map(|(name, visible)| {
                    Some(StreamInfo {
                        name: name.to_string(),
                        version: visible.checked_sub(1)?,
                    })
                }));
        }
        self.page.pop_front().map(Ok)
    }
}
