//! Opening the log: finding its segments, indexing them (from their index
//! files when those are sound, by reading the records otherwise), bringing
//! the stream catalogue up to date, and writing the index file of a segment
//! just sealed.

use super::catalog::{self, CATALOG_FILE};
use super::directory::{self, Earlier};
use super::file::{self, index_file_name, parse_index_file_name, IndexFile};
use super::hash::HashKind;
use super::memory::MemIndex;
use super::{removed, Index, Persisted, SealedSegment, SegmentIndex};
use crate::error::{Error, Result};
use crate::log::{
    clear_torn_tail, parse_segment_file_name, record, scan_segment, segment_file_name, zero_fill,
    PreparedSegment, Segment, SegmentRole, TEMP_SUFFIX,
};
use crate::storage::{child, replace_file, write_and_rename, Storage};
use std::collections::{HashMap, HashSet};
use std::io;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// How the log is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// By the process that writes the store: the torn tail is cleared, index
    /// files and the catalogue are repaired, and there is always an active
    /// segment to append to.
    Write,
    /// Beside the writer, or on a copy: nothing is written.
    ReadOnly,
}

/// The last segment recovery read, and where it ends.
struct Tail {
    segment: Arc<Segment>,
    end_offset: u64,
    sealed: bool,
    recorded_durable: u64,
}

/// What opening the log found.
#[derive(Debug)]
pub struct Recovered {
    /// Both indexes, covering every recovered event.
    pub index: Index,
    /// The segment appends continue in. In a read-only open, the last
    /// segment, or `None` when it is sealed (or there is none) and the
    /// writer has not yet created the next.
    pub active: Option<Arc<Segment>>,
    /// Where in `active` the next batch goes.
    pub write_offset: u64,
    /// The next global position.
    pub next_position: u64,
    /// The highest durable watermark recorded in `active`.
    pub recorded_durable: u64,
    /// Statistics for the caller.
    pub stats: RecoveryStats,
}

/// What recovery did at open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryStats {
    /// Segment files found.
    pub segments: usize,
    /// Events in the store.
    pub events: u64,
    /// Bytes of segment data read and checked record by record: the
    /// unsealed tail, plus any sealed segment whose index file had to be
    /// rebuilt.
    pub bytes_scanned: u64,
    /// Bytes of a torn tail (an interrupted write) that were cleared.
    pub torn_bytes: u64,
    /// Sealed segments whose index file was used as is.
    pub index_files_loaded: usize,
    /// Sealed segments whose index file was missing or damaged and was
    /// rebuilt from the segment.
    pub index_files_rebuilt: usize,
    /// Sealed segments whose index file was missing or damaged and could
    /// not be written for want of disk space: served from memory until an
    /// open finds room for it.
    pub index_files_unwritten: usize,
    /// Whether the stream catalogue was missing, damaged or behind and was
    /// brought up to date from the segments' index files.
    pub catalog_rebuilt: bool,
}

/// Builds the index of a sealed segment by reading every record.
pub fn index_sealed_segment(seg: &Segment) -> Result<MemIndex> {
    let mut indexer = SegmentIndexer::new(seg);
    scan_segment(seg, SegmentRole::Sealed, |offset, event| {
        indexer.push(offset, event)
    })?;
    Ok(indexer.finish())
}

/// Builds the index of a sealed segment from its records, in order.
pub struct SegmentIndexer<'s> {
    segment: &'s Segment,
    mem: MemIndex,
    names: HashMap<String, Arc<str>>,
}

impl<'s> SegmentIndexer<'s> {
    /// An empty index of `segment`.
    pub fn new(segment: &'s Segment) -> Self {
        SegmentIndexer {
            segment,
            mem: MemIndex::new(true),
            names: HashMap::new(),
        }
    }

    /// Adds the record at `offset`, the segment's next.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Corrupted`] for an offset beyond 4 GiB.
    pub fn push(&mut self, offset: u64, event: &crate::types::RecordedEvent) -> Result<()> {
        // Looked up before an owned key is made: most records' streams
        // are already known.
        let name = match self.names.get(&*event.stream) {
            Some(name) => name,
            None => self
                .names
                .entry(event.stream.to_string())
                .or_insert_with(|| Arc::from(&*event.stream)),
        };
        let slot = super::slot_offset(self.segment.path(), offset)?;
        self.mem
            .push(name, event.version, &[slot], &[event.id.as_u128()]);
        push_keys(&mut self.mem, self.segment, event);
        Ok(())
    }

    /// The index.
    pub fn finish(self) -> MemIndex {
        self.mem
    }
}

/// Adds `event`, just pushed to `mem`, to the postings of `seg`.
fn push_keys(mem: &mut MemIndex, seg: &Segment, event: &crate::types::RecordedEvent) {
    // A segment holds fewer than 2^32 records.
    let slot =
        u32::try_from(event.position.saturating_sub(seg.base_position())).unwrap_or(u32::MAX);
    mem.postings.push(slot, &event.event_type, &event.tags);
}

/// Reads the index file of `seg` if it is usable: header intact, and the
/// segment really ends with a seal where the file says.
pub(crate) fn load_index_file(
    storage: &dyn Storage,
    path: &Path,
    seg: &Segment,
) -> std::result::Result<IndexFile, String> {
    let file = storage.open_read_only(path).map_err(|e| e.to_string())?;
    let len = file.len().map_err(|e| e.to_string())?;
    let len = usize::try_from(len).map_err(|e| e.to_string())?;
    let bytes = file.read_view(0, len).map_err(|e| e.to_string())?;
    let index = IndexFile::parse(bytes, seg.base_position()).map_err(|e| e.to_string())?;
    let header = index.header();
    if header.streams_only() {
        // Left by a removal a crash stopped before the segment's own
        // replacement was durable: it cannot locate records.
        return Err("the index file of a removed segment, beside one that holds records".into());
    }
    let seal_at = header.seal_offset;
    let seal = seg
        .read(seal_at, seal_at + record::BATCH_HEADER_LEN as u64)
        .map_err(|e| e.to_string())?;
    match record::BatchHeader::decode(&seal, seg.seed()) {
        Some(h)
            if h.kind == record::BatchKind::Seal
                && h.first_position == seg.base_position() + header.count =>
        {
            Ok(index)
        }
        _ => Err(format!("no seal at offset {seal_at} of the segment")),
    }
}

/// Writes the index file of a sealed segment and the catalogue as of its
/// end, then returns the index file, read in place.
///
/// The catalogue is the previous one (as of the end of the segment before)
/// merged with the sealed segment's streams, off the index lock: the cost
/// of a store with millions of streams falls on this thread, never on
/// appends or reads. If the previous one is not there to merge with (its
/// write failed), the catalogue is left behind; the next open brings it up
/// to date from the segments past it.
pub fn persist_sealed(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    sealed: &SealedSegment,
    seal_offset: u64,
    hash_kind: HashKind,
    repairs: Arc<super::Repairs>,
) -> io::Result<Persisted> {
    let base = sealed.segment.base_position();
    let path = child(dir, &index_file_name(base));
    // Every stream's previous segment was recorded as its events came.
    let earlier = Earlier::new(&sealed.earlier, storage.as_ref(), dir);
    let directories = directory::build(&sealed.index, sealed.ordinal, &earlier, &|_, _| None);
    let bytes = file::encode(&sealed.index, base, seal_offset, hash_kind, &directories);
    write_and_rename(storage.as_ref(), &path, &bytes)?;
    let previous = if sealed.ordinal == 0 {
        Some(Vec::new())
    } else {
        read_catalog(storage.as_ref(), dir)
            .filter(|c| c.covered_segments == sealed.ordinal && c.end_position == base)
            .map(|c| c.streams)
    };
    if let Some(Ok(streams)) =
        previous.map(|previous| catalog::merge(previous, &sealed.index, sealed.ordinal))
    {
        let catalog = catalog::encode(sealed.ordinal + 1, sealed.end_position, &streams);
        write_and_rename(storage.as_ref(), &child(dir, CATALOG_FILE), &catalog)?;
    }
    storage.sync_dir(dir)?;
    let file = storage.open_file(&path, false)?;
    let view = file.read_view(0, bytes.len())?;
    let index = IndexFile::parse(view, base)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    Ok(Persisted::new(
        index,
        path,
        Arc::clone(&sealed.segment),
        Some(Arc::clone(storage)),
        repairs,
    )
    .trusted())
}

/// Opens every segment in `dir`, indexes them (from their index files when
/// they are sealed and the files are sound, by reading them otherwise), and
/// makes sure there is an active segment to append to.
///
/// A [`OpenMode::ReadOnly`] recovery writes nothing: no torn tail cleared,
/// no index file or catalogue rewritten, no segment created. It may run
/// beside the process that writes the store.
#[expect(
    clippy::too_many_lines,
    reason = "one pass over the segments in order; each step feeds the next"
)]
pub fn recover(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    segment_size: u64,
    id_window: u64,
    hash_kind: HashKind,
    mode: OpenMode,
    zero_fill_new_segment: bool,
) -> Result<Recovered> {
    let read_only = mode == OpenMode::ReadOnly;
    let names = storage
        .list_dir(dir)
        .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
    let mut removed_temp = false;
    let mut bases = Vec::new();
    let mut index_files = HashSet::new();
    let mut has_catalog = false;
    for name in &names {
        if name.ends_with(TEMP_SUFFIX) {
            if read_only {
                continue;
            }
            // A file being prepared when the process stopped: never part of the store.
            storage
                .remove_file(&child(dir, name))
                .map_err(|e| Error::io(format!("removing {name}"), e))?;
            removed_temp = true;
        } else if let Some(base) = parse_segment_file_name(name) {
            bases.push(base);
        } else if let Some(base) = parse_index_file_name(name) {
            index_files.insert(base);
        } else if name == CATALOG_FILE {
            has_catalog = true;
        }
    }
    if removed_temp {
        storage
            .sync_dir(dir)
            .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))?;
    }
    bases.sort_unstable();

    let mut index = Index::new(hash_kind, id_window);
    let mut stats = RecoveryStats {
        segments: bases.len(),
        ..RecoveryStats::default()
    };
    // The catalogue is usable if it ends exactly where a segment starts.
    let catalog = has_catalog
        .then(|| read_catalog(storage.as_ref(), dir))
        .flatten()
        .filter(|c| c.fit(&bases) == catalog::Fit::Usable);
    let covered = match catalog {
        Some(c) => {
            let covered = c.covered_segments;
            index.set_streams(c.streams);
            covered
        }
        None => 0,
    };
    // The catalogue as of the end of the segment before the last, taken in
    // case the last turns out not to be sealed.
    let mut before_last = None;
    let mut next_position = 0u64;
    let mut tail: Option<Tail> = None;
    // Every segment's header is checked before any is read, so that a stray
    // file is named as such instead of making the segment before it look
    // damaged.
    let mut segments = Vec::with_capacity(bases.len());
    for &base in &bases {
        let path = child(dir, &segment_file_name(base));
        segments.push(Arc::new(if read_only {
            Segment::open_read_only(storage.as_ref(), path, base)?
        } else {
            Segment::open(storage.as_ref(), path, base)?
        }));
    }
    for (i, seg) in segments.iter().enumerate() {
        let ordinal = u32::try_from(i)
            .map_err(|_| Error::corrupted(seg.path(), 0, "more segments than a store may have"))?;
        let base = seg.base_position();
        if base != next_position {
            return Err(Error::corrupted(
                seg.path(),
                0,
                format!("segment starts at position {base}, expected {next_position}: a segment is missing or misnamed"),
            ));
        }
        let seg = Arc::clone(seg);
        let is_last = i + 1 == bases.len();
        if !is_last {
            // The writer seals and syncs a segment before it creates the
            // next, and never writes it again: it is read through its map.
            // (One that turns out not to be sealed fails the open.)
            seg.mark_sealed();
        }
        let idx_path = child(dir, &index_file_name(base));
        if let Some(end) = seg.removed_end() {
            // Its index file is all that is left of it, and must be whole.
            let file = removed::load_removed_index(storage.as_ref(), &idx_path, &seg)?;
            seg.mark_sealed();
            if ordinal >= covered {
                removed::count_removed_streams(&mut index, &file, ordinal, &idx_path)?;
            }
            next_position = end;
            let persisted = persisted_index(storage, &index, file, idx_path, &seg, mode).trusted();
            index.push_segment(
                Arc::clone(&seg),
                SegmentIndex::Persisted(Arc::new(persisted)),
            );
            stats.index_files_loaded += 1;
            tail = Some(Tail {
                segment: seg,
                end_offset: (record::SEGMENT_HEADER_LEN + record::BATCH_HEADER_LEN) as u64,
                sealed: true,
                recorded_durable: 0,
            });
            continue;
        }
        // Index files of segments the catalogue covers are used as they are.
        // Past it, each segment is read once more: the catalogue is rebuilt
        // from records, never from index files alone.
        let loaded = if ordinal < covered && index_files.contains(&base) {
            load_index_file(storage.as_ref(), &idx_path, &seg).ok()
        } else {
            None
        };
        if let Some(file) = loaded {
            // Its seal is where the index file says.
            seg.mark_sealed();
            let seal_offset = file.header().seal_offset;
            next_position = base + file.len() as u64;
            let persisted = persisted_index(storage, &index, file, idx_path, &seg, mode);
            index.push_segment(
                Arc::clone(&seg),
                SegmentIndex::Persisted(Arc::new(persisted)),
            );
            stats.index_files_loaded += 1;
            tail = Some(Tail {
                segment: seg,
                end_offset: seal_offset + record::BATCH_HEADER_LEN as u64,
                sealed: true,
                recorded_durable: 0,
            });
            continue;
        }
        if is_last && ordinal > covered {
            before_last = Some((ordinal, base, index.snapshot_streams()));
        }
        // No usable index file: read the segment record by record.
        let mut mem = MemIndex::new(id_window > 0);
        let mut names: HashMap<String, Arc<str>> = HashMap::new();
        let count_versions = ordinal >= covered;
        let scan = scan_segment(&seg, SegmentRole::of(is_last), |offset, event| {
            let mut previous = None;
            let name = if let Some(name) = names.get(&*event.stream) {
                Arc::clone(name)
            } else {
                // The stream's first event here: where its events were
                // before, while its summary still says so.
                if count_versions {
                    previous = index.previous_segment(&event.stream, ordinal);
                }
                let name = if count_versions {
                    Arc::from(&*event.stream)
                } else {
                    // Versions were counted by the catalogue; share its name.
                    index
                        .summary_name(&event.stream)
                        .unwrap_or_else(|| Arc::from(&*event.stream))
                };
                names.insert(event.stream.to_string(), Arc::clone(&name));
                name
            };
            if count_versions {
                index
                    .count_stream_events(&name, ordinal, event.version, 1)
                    .map_err(|gap| Error::corrupted(seg.path(), offset, gap.to_string()))?;
            }
            let slot = super::slot_offset(seg.path(), offset)?;
            mem.push_after(
                &name,
                event.version,
                previous,
                &[slot],
                &[event.id.as_u128()],
            );
            push_keys(&mut mem, &seg, event);
            Ok(())
        });
        let scan = match scan {
            Ok(scan) => scan,
            Err(error) if !is_last => {
                return Err(stray_after(&seg, segments.get(i + 1)).unwrap_or(error))
            }
            Err(error) => return Err(error),
        };
        if scan.sealed {
            seg.mark_sealed();
        } else {
            refuse_truncated(&seg)?;
        }
        if !read_only {
            clear_torn_tail(&seg, &scan)?;
        }
        stats.bytes_scanned += scan.end_offset;
        stats.torn_bytes += scan.torn_bytes;
        next_position = scan.next_position;
        if scan.sealed && read_only {
            // Served from memory: the index file is the writer's to repair.
            index.push_segment(Arc::clone(&seg), SegmentIndex::Sealed(Arc::new(mem)));
        } else if scan.sealed {
            // Sealed but without a usable index file: write one now.
            let sealed_at = scan.end_offset - record::BATCH_HEADER_LEN as u64;
            // Streams of a segment the catalogue covers did not record
            // their previous segments (their summaries are the catalogue's,
            // as of its end): those are searched for.
            let earlier_indexes = index.earlier(ordinal);
            let earlier = Earlier::new(&earlier_indexes, storage.as_ref(), dir);
            let directories = directory::build(&mem, ordinal, &earlier, &|stream, version| {
                index.segment_holding(stream, version, ordinal)
            });
            let bytes = file::encode(&mem, base, sealed_at, hash_kind, &directories);
            let existing = index_files
                .contains(&base)
                .then(|| read_whole(storage.as_ref(), &idx_path))
                .flatten();
            let on_disk = if existing.as_deref() == Some(&bytes[..]) {
                stats.index_files_loaded += 1;
                true
            } else {
                match replace_file(storage.as_ref(), &idx_path, &bytes) {
                    Ok(()) => {
                        stats.index_files_rebuilt += 1;
                        true
                    }
                    // A full disk (the state a failed background index
                    // write leaves): the segment is served from memory, as
                    // between a seal and its index file, so the store still
                    // opens to be read; the next open writes it.
                    Err(e) if e.kind() == io::ErrorKind::StorageFull => {
                        stats.index_files_unwritten += 1;
                        false
                    }
                    Err(e) => {
                        return Err(Error::io(format!("writing {}", idx_path.display()), e));
                    }
                }
            };
            if on_disk {
                let file = load_index_file(storage.as_ref(), &idx_path, &seg)
                    .map_err(|reason| Error::corrupted(&idx_path, 0, reason))?;
                let persisted =
                    persisted_index(storage, &index, file, idx_path, &seg, OpenMode::Write)
                        .trusted();
                index.push_segment(
                    Arc::clone(&seg),
                    SegmentIndex::Persisted(Arc::new(persisted)),
                );
            } else {
                index.push_segment(Arc::clone(&seg), SegmentIndex::Sealed(Arc::new(mem)));
            }
        } else {
            index.push_segment(Arc::clone(&seg), SegmentIndex::Active(mem));
        }
        tail = Some(Tail {
            segment: seg,
            end_offset: scan.end_offset,
            sealed: scan.sealed,
            recorded_durable: scan.recorded_durable,
        });
    }
    stats.events = next_position;
    if read_only {
        let (active, write_offset, recorded_durable) = match tail {
            Some(t) if !t.sealed => (Some(t.segment), t.end_offset, t.recorded_durable),
            _ => (None, 0, next_position),
        };
        return Ok(Recovered {
            index,
            active,
            write_offset,
            next_position,
            recorded_durable,
            stats,
        });
    }

    let catalog_update = match &tail {
        Some(t) if t.sealed && (covered as usize) < bases.len() => Some((
            u32::try_from(bases.len()).unwrap_or(u32::MAX),
            next_position,
            index.snapshot_streams(),
        )),
        Some(t) if !t.sealed => before_last,
        _ => None,
    };
    if let Some((covered, end_position, streams)) = catalog_update {
        // Bring the catalogue up to the last sealed segment, so the next open
        // does not merge stream tables again.
        let bytes = catalog::encode(covered, end_position, &streams);
        match replace_file(storage.as_ref(), &child(dir, CATALOG_FILE), &bytes) {
            Ok(()) => stats.catalog_rebuilt = true,
            // The catalogue only saves the next open some work: on a full
            // disk it is left behind, and the next open catches it up.
            Err(e) if e.kind() == io::ErrorKind::StorageFull => {}
            Err(e) => return Err(Error::io("writing the stream catalogue", e)),
        }
    }

    let (active, write_offset, recorded_durable) = if let Some(Tail {
        segment: seg,
        end_offset: end,
        sealed: false,
        recorded_durable: recorded,
    }) = tail
    {
        // What a killed process left in the page cache is made durable
        // before anyone reads it as such.
        // A file cut short (a lost allocation) gets its space back before
        // the writer relies on it.
        seg.file()
            .allocate(seg.capacity())
            .and_then(|()| seg.file().sync_data())
            .map_err(|e| Error::io_or_no_space(format!("syncing {}", seg.path().display()), e))?;
        // Scanned, its torn tail cleared, and synced: the writer goes on
        // past `end` and never writes below it again.
        seg.mark_synced(end);
        (seg, end, recorded)
    } else {
        // With no rate to judge by, a new store's first segment is
        // zero-filled if zero-filling is on at all: small appends are what
        // most stores start with (see `crate::log::zero_fill`).
        let seg = PreparedSegment::create(storage.as_ref(), dir, segment_size)
            .and_then(|p| {
                if zero_fill_new_segment {
                    // A failed fill leaves blocks merely reserved.
                    let _ = zero_fill::fill(p.file(), segment_size, &AtomicBool::new(false), false);
                }
                p.install(storage.as_ref(), dir, next_position)
            })
            .map_err(|e| Error::io_or_no_space("creating a segment", e))?;
        let seg = Arc::new(seg);
        let active = index.new_active(0);
        index.push_segment(Arc::clone(&seg), active);
        (seg, record::SEGMENT_HEADER_LEN as u64, 0)
    };
    Ok(Recovered {
        index,
        active: Some(active),
        write_offset,
        next_position,
        recorded_durable,
        stats,
    })
}

/// When a segment that is not the last fails its scan: if it reads as a
/// clean unsealed last segment (whole batches, then nothing but zeros), the
/// fault is not in it but in `next`, a segment file that follows a segment
/// never sealed. Names that file.
fn stray_after(seg: &Segment, next: Option<&Arc<Segment>>) -> Option<Error> {
    let next = next?;
    let scan = scan_segment(seg, SegmentRole::Last, |_, _| Ok(())).ok()?;
    if scan.sealed || scan.torn_bytes > 0 {
        return None;
    }
    Some(Error::corrupted(
        next.path(),
        0,
        format!(
            "segment {} was never sealed (it ends at position {}), so no segment can follow it: this file is not part of the log",
            seg.path().display(),
            scan.next_position
        ),
    ))
}

fn persisted_index(
    storage: &Arc<dyn Storage>,
    index: &Index,
    file: IndexFile,
    path: std::path::PathBuf,
    seg: &Arc<Segment>,
    mode: OpenMode,
) -> Persisted {
    Persisted::new(
        file,
        path,
        Arc::clone(seg),
        (mode == OpenMode::Write).then(|| Arc::clone(storage)),
        index.repairs(),
    )
}

fn read_whole(storage: &dyn Storage, path: &Path) -> Option<bytes::Bytes> {
    crate::storage::read_whole_file(storage, path).ok()
}

fn read_catalog(storage: &dyn Storage, dir: &Path) -> Option<catalog::Catalog> {
    catalog::decode(&read_whole(storage, &child(dir, CATALOG_FILE))?).ok()
}

/// Fails if the segment being written is shorter than the capacity its
/// header gives it. Such a file is allocated whole and synced before it
/// takes its name, so no crash shortens it: something cut it, and the
/// events it held past the cut, acknowledged ones included, are gone. The
/// scan would take the cut for a torn tail and the open would go on
/// without them.
fn refuse_truncated(seg: &Segment) -> Result<()> {
    let len = seg
        .file()
        .len()
        .map_err(|e| Error::io(format!("reading the size of {}", seg.path().display()), e))?;
    if len < seg.capacity() {
        return Err(Error::corrupted(
            seg.path(),
            len,
            format!(
                "the segment being written is {len} bytes, shorter than the {} its header \
                 allocated: the file was cut, and the events past the cut may have been \
                 acknowledged",
                seg.capacity()
            ),
        ));
    }
    Ok(())
}
