//! A read-only store following the log another process writes: it reads
//! whatever whole batches appeared since it last looked, indexes them and
//! moves the watermarks readers and subscriptions go by.

use super::state::StoreState;
use crate::error::{Error, Result};
use crate::index::continuity::check_next;
use crate::index::file::index_file_name;
use crate::index::recovery::{index_sealed_segment, load_index_file};
use crate::index::removed::load_removed_index;
use crate::index::{slot_offset, Persisted, SegmentIndex};
use crate::log::record::{BATCH_HEADER_LEN, SEGMENT_HEADER_LEN};
use crate::log::{
    all_zero, copy_batch, durable_batch_after_copied, read_batch_at, segment_file_name,
    BatchOutcome, Segment,
};
use crate::storage::{child, Storage};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a look past an unwritten batch that found no batch vouching
/// for it stands for the same offset (see [`Follower::read_new`]).
const LOOK_PAST_VALID_FOR: Duration = Duration::from_secs(1);

/// How often, at most, a read-only store looks for segment files a
/// scavenge replaced when no lifecycle event calls for it: each look opens
/// every sealed segment's file by name.
const LOOK_FOR_REPLACED_EVERY: Duration = Duration::from_secs(10);

/// Where a read-only store has read the log up to.
#[derive(Debug)]
pub struct Follower {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    /// The segment being followed; `None` once it was sealed, until the
    /// writer installs the next.
    active: Option<Arc<Segment>>,
    /// Where the next batch of `active` starts.
    offset: u64,
    /// The position of the next event.
    next_position: u64,
    /// Every position below this is known to be durable.
    durable: u64,
    /// Sealed segments indexed in memory, oldest first, until the writer's
    /// index file for each appears: then the memory is given back, so a
    /// reader that follows for days holds no more than the writer does.
    unindexed: VecDeque<(u32, Arc<Segment>)>,
    /// A failure that stopped following: reported on every later poll.
    failed: Option<Error>,
    /// Where the last look past an invalid batch that found none after it
    /// vouching for it was (segment base position and offset), and when.
    looked_past: Option<(u64, u64, Instant)>,
    /// When it last looked for segment files a scavenge replaced.
    replaced_looked_at: Instant,
}

impl Follower {
    /// Follows on from what a read-only recovery found. `unindexed` lists
    /// the sealed segments it indexed in memory, by ordinal.
    pub fn new(
        storage: Arc<dyn Storage>,
        dir: PathBuf,
        active: Option<Arc<Segment>>,
        offset: u64,
        next_position: u64,
        recorded_durable: u64,
        unindexed: Vec<(u32, Arc<Segment>)>,
    ) -> Self {
        // Segments before the last are sealed, and sealing syncs: all of
        // them are durable, whatever the marks in the last one say.
        let durable = match &active {
            Some(seg) => recorded_durable.max(seg.base_position()),
            None => next_position,
        }
        .min(next_position);
        Follower {
            storage,
            dir,
            active,
            offset,
            next_position,
            durable,
            unindexed: unindexed.into(),
            failed: None,
            looked_past: None,
            replaced_looked_at: Instant::now(),
        }
    }

    /// The position below which every event is durable.
    pub fn durable(&self) -> u64 {
        self.durable
    }

    /// [`Follower::poll`], then a look for segment files a scavenge
    /// replaced however recent the last one was: for questions about the
    /// files themselves (what a scavenge would take out), which must not
    /// count what the writer's scavenge already did.
    pub fn poll_and_look_for_replaced(&mut self, shared: &StoreState) -> Result<()> {
        self.poll(shared)?;
        self.adopt_replaced_segments(shared);
        self.replaced_looked_at = Instant::now();
        Ok(())
    }

    /// Reads the batches written since the last poll into `shared`'s index
    /// and raises its watermarks, waking subscribers. A batch still being
    /// written (or torn) is left for a later poll.
    pub fn poll(&mut self, shared: &StoreState) -> Result<()> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let rules_before = shared.index.read().last_lifecycle_position();
        let result = self.read_new(shared);
        self.adopt_index_files(shared);
        // Before new rules become visible (they may keep events again that
        // a scavenge has since taken out of their files), and now and then
        // besides, so that the old files' space goes back to the disk.
        if shared.index.read().last_lifecycle_position() != rules_before
            || self.replaced_looked_at.elapsed() >= LOOK_FOR_REPLACED_EVERY
        {
            self.adopt_replaced_segments(shared);
            self.replaced_looked_at = Instant::now();
        }
        let written = shared
            .written
            .fetch_max(self.next_position, Ordering::AcqRel);
        let durable = shared.durable.fetch_max(self.durable, Ordering::AcqRel);
        if written < self.next_position {
            shared.written_progress.advanced();
        }
        if durable < self.durable {
            shared.durable_progress.advanced();
        }
        if let Err(error) = &result {
            self.failed = Some(error.clone());
            shared.fail(error.clone());
        }
        result
    }

    #[expect(
        clippy::too_many_lines,
        reason = "one batch's outcomes, in the order the writer produces them"
    )]
    fn read_new(&mut self, shared: &StoreState) -> Result<()> {
        loop {
            let seg = match &self.active {
                Some(seg) => Arc::clone(seg),
                None => match self.open_next()? {
                    Some(seg) if seg.is_removed() => {
                        // Removed before this store reached it: nothing to
                        // follow there, only its streams' versions to count.
                        self.take_removed(&seg, shared)?;
                        continue;
                    }
                    Some(seg) => {
                        let mut index = shared.index.write();
                        let active = index.new_active(0);
                        index.push_segment(Arc::clone(&seg), active);
                        self.offset = SEGMENT_HEADER_LEN as u64;
                        self.active = Some(Arc::clone(&seg));
                        seg
                    }
                    None => return Ok(()),
                },
            };
            // The writer may be writing this segment as it is read: every
            // read of it is a copy (see `Segment`), one batch at a time.
            let mut end = seg.readable_len()?;
            loop {
                if self.offset + BATCH_HEADER_LEN as u64 > end {
                    return Ok(());
                }
                let data = copy_batch(&seg, self.offset, end)?;
                let read = |data: &bytes::Bytes| {
                    read_batch_at(&seg, data, self.offset, self.offset, self.next_position)
                };
                let outcome = match read(&data) {
                    Ok(outcome) => outcome,
                    Err(reason) => {
                        // Not written yet, or being written right now; unless
                        // a batch after it says it was synced: then it is
                        // damage, which waiting would never mend. The batch is
                        // read once more first, since the writer may have
                        // finished it since.
                        //
                        // The look reads the rest of the segment, by copy. A
                        // batch header of nothing but zeros is, nearly
                        // always, the end of what was written: there the
                        // look is repeated once a second, not at every poll,
                        // which delays only the report of damage that zeroed
                        // a whole header.
                        let unwritten = data.get(..BATCH_HEADER_LEN).is_some_and(all_zero);
                        if unwritten
                            && self.looked_past.is_some_and(|(base, offset, when)| {
                                (base, offset) == (seg.base_position(), self.offset)
                                    && when.elapsed() < LOOK_PAST_VALID_FOR
                            })
                        {
                            return Ok(());
                        }
                        let looked_at = Instant::now();
                        let Some(at) = durable_batch_after_copied(
                            &seg,
                            self.offset.saturating_add(8),
                            end,
                            self.next_position,
                        )?
                        else {
                            self.looked_past = Some((seg.base_position(), self.offset, looked_at));
                            return Ok(());
                        };
                        end = seg.readable_len()?;
                        match read(&copy_batch(&seg, self.offset, end)?) {
                            Ok(outcome) => outcome,
                            Err(_) => {
                                return Err(Error::corrupted(
                                    seg.path(),
                                    self.offset,
                                    format!(
                                        "{reason} at position {}, yet a batch at offset {at} was written after it was made durable",
                                        self.next_position
                                    ),
                                ))
                            }
                        }
                    }
                };
                match outcome {
                    BatchOutcome::Mark { durable_mark } => {
                        self.durable = self.durable.max(durable_mark.min(self.next_position));
                        self.offset += BATCH_HEADER_LEN as u64;
                    }
                    BatchOutcome::Events {
                        len,
                        records,
                        durable_mark,
                    } => {
                        let mut index = shared.index.write();
                        for (offset, event) in &records {
                            let next = index.last_version(&event.stream).map(|v| v + 1);
                            check_next(&event.stream, next, event.version).map_err(|gap| {
                                Error::corrupted(seg.path(), *offset, gap.to_string())
                            })?;
                            let slot = slot_offset(seg.path(), *offset)?;
                            index.push_events(
                                &event.stream,
                                event.position,
                                &[slot],
                                &[event.id.as_u128()],
                            );
                            index.push_keys(event.position, &event.event_type, &event.tags);
                        }
                        self.next_position += records.len() as u64;
                        self.durable = self.durable.max(durable_mark.min(self.next_position));
                        self.offset += len;
                    }
                    BatchOutcome::Seal { next_position } => {
                        // Written once the rest of the segment was; nothing
                        // writes the segment again: from now on it is read
                        // through its map.
                        seg.mark_sealed();
                        // The writer syncs a segment before sealing it.
                        self.next_position = next_position;
                        self.durable = self.durable.max(next_position);
                        // Kept in memory until the writer's index file is there.
                        if let Some(sealed) = shared.index.write().seal_active() {
                            self.unindexed.push_back((sealed.ordinal, sealed.segment));
                        }
                        self.active = None;
                        break;
                    }
                }
            }
        }
    }

    /// Serves sealed segments from the index files the writer has written
    /// since, in order, as a writer's open would. A file that does not
    /// match its segment is left alone: the memory index goes on serving.
    fn adopt_index_files(&mut self, shared: &StoreState) {
        while let Some((ordinal, seg)) = self.unindexed.front() {
            let path = child(&self.dir, &index_file_name(seg.base_position()));
            // Written in order, and renamed into place whole: until this one
            // is there, later ones are not either.
            if self.storage.open_read_only(&path).is_err() {
                return;
            }
            if let Ok(file) = load_index_file(self.storage.as_ref(), &path, seg) {
                let mut index = shared.index.write();
                let persisted = Persisted::new(file, path, Arc::clone(seg), None, index.repairs());
                index.install_persisted(*ordinal, persisted);
            }
            self.unindexed.pop_front();
        }
    }

    /// Serves from their new files the sealed segments a scavenge replaced
    /// since this store opened them: rewritten with redaction markers, or
    /// removed. Until then it reads the files it opened, which still hold
    /// the events the scavenge took out; that is harmless while the rules
    /// that made them dead hold, so this runs when new lifecycle events
    /// arrive, and otherwise every [`LOOK_FOR_REPLACED_EVERY`] to let the
    /// old files go. A segment whose new file cannot be read yet is left
    /// as it is, for the next time.
    fn adopt_replaced_segments(&self, shared: &StoreState) {
        let (sealed, repairs) = {
            let index = shared.index.read();
            (index.sealed_segments(), index.repairs())
        };
        for (ordinal, seg) in sealed {
            let Some((replacement, index_of_it)) = self.replacement_of(&seg, &repairs) else {
                continue;
            };
            let forgotten = {
                let mut index = shared.index.write();
                if !index.replace_segment(ordinal, &seg, replacement, index_of_it) {
                    continue;
                }
                // What subscriptions read from the old file is read again.
                shared.read_ahead.forget_all()
            };
            drop(forgotten);
        }
    }

    /// The file now under `seg`'s name and its index, if it is not the one
    /// `seg` holds open.
    fn replacement_of(
        &self,
        seg: &Arc<Segment>,
        repairs: &Arc<crate::index::Repairs>,
    ) -> Option<(Arc<Segment>, SegmentIndex)> {
        let storage = self.storage.as_ref();
        let on_disk = storage.open_read_only(seg.path()).ok()?;
        let (now, held) = (on_disk.identity().ok()??, seg.file().identity().ok()??);
        if now == held {
            return None;
        }
        drop(on_disk);
        let base = seg.base_position();
        let replacement =
            Arc::new(Segment::open_read_only(storage, seg.path().to_path_buf(), base).ok()?);
        replacement.mark_sealed();
        let path = child(&self.dir, &index_file_name(base));
        let served = |file| {
            let repairs = Arc::clone(repairs);
            Persisted::new(file, path.clone(), Arc::clone(&replacement), None, repairs)
        };
        let index = if replacement.is_removed() {
            let file = load_removed_index(storage, &path, &replacement).ok()?;
            SegmentIndex::Persisted(Arc::new(served(file).trusted()))
        } else if let Ok(file) = load_index_file(storage, &path, &replacement) {
            SegmentIndex::Persisted(Arc::new(served(file)))
        } else {
            // The writer writes its index file after the rename.
            let mem = index_sealed_segment(&replacement).ok()?;
            SegmentIndex::Sealed(Arc::new(mem))
        };
        Some((replacement, index))
    }

    /// Takes in `seg`, the next segment, which a scavenge removed before
    /// this store reached it: its streams' versions are counted from its
    /// index file, and following goes on after its positions, all long
    /// durable.
    fn take_removed(&mut self, seg: &Arc<Segment>, shared: &StoreState) -> Result<()> {
        let base = seg.base_position();
        let end = seg.removed_end().unwrap_or(base);
        let path = child(&self.dir, &index_file_name(base));
        let file = load_removed_index(self.storage.as_ref(), &path, seg)?;
        seg.mark_sealed();
        let mut index = shared.index.write();
        let (ordinal, _) = index.segment_counts();
        let ordinal = u32::try_from(ordinal)
            .map_err(|_| Error::corrupted(seg.path(), 0, "more segments than a store may have"))?;
        crate::index::removed::count_removed_streams(&mut index, &file, ordinal, &path)?;
        let persisted = Persisted::new(file, path, Arc::clone(seg), None, index.repairs());
        index.push_segment(
            Arc::clone(seg),
            SegmentIndex::Persisted(Arc::new(persisted.trusted())),
        );
        self.next_position = end;
        self.durable = self.durable.max(end);
        Ok(())
    }

    /// The segment that follows the sealed one, once the writer installed it.
    fn open_next(&self) -> Result<Option<Arc<Segment>>> {
        let name = segment_file_name(self.next_position);
        let names = self
            .storage
            .list_dir(&self.dir)
            .map_err(|e| Error::io(format!("listing {}", self.dir.display()), e))?;
        if !names.contains(&name) {
            return Ok(None);
        }
        // Installed by a rename after its header was written and synced, so
        // a file under its final name is whole.
        let seg = Segment::open_read_only(
            self.storage.as_ref(),
            child(&self.dir, &name),
            self.next_position,
        )?;
        Ok(Some(Arc::new(seg)))
    }
}
