//! An in-memory disk that knows what was synced, for crash testing.
//!
//! Every file keeps the bytes that reached "the platter" (`durable`) apart
//! from the writes issued since its last `sync_data` (`pending`); every
//! directory keeps the entries made durable by its last `sync_dir` apart from
//! its current ones. [`SimDisk::crash`] builds the disk a machine would find
//! after power loss: synced bytes and entries survive, and each unsynced
//! write is lost, kept, torn or garbled as the [`CrashPlan`] decides.
//! [`SimDisk::fail_after`] makes the disk refuse every mutating operation
//! after the N-th, which is what a process killed at that point looks like
//! from the disk. [`SimDisk::set_full`] makes it a full disk.

use super::{LockGuard, Storage, StorageFile};
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How a crash treats the writes and directory changes that were never
/// synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPlan {
    /// Every unsynced write and directory change is lost.
    LoseAll,
    /// Every unsynced write and directory change reached the disk.
    KeepAll,
    /// Unsynced writes reached the disk in order up to a point chosen by the
    /// seed, the last of them only in part; directory changes are kept or
    /// lost per directory.
    Torn {
        /// Chooses the tear points.
        seed: u64,
    },
    /// Each unsynced write is kept, lost or kept with some bytes replaced by
    /// garbage, as the seed decides; directory changes are kept or lost per
    /// directory.
    Garbled {
        /// Chooses what happens to each write.
        seed: u64,
    },
}

/// A write or a length change since the last sync, in bytes of the file
/// (offsets and lengths are checked to fit in memory when issued).
#[derive(Debug, Clone)]
enum Pending {
    Write { offset: usize, data: Vec<u8> },
    SetLen(usize),
}

#[derive(Debug, Clone, Default)]
struct Inode {
    current: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<Pending>,
}

#[derive(Debug, Clone, Default)]
struct Dir {
    current: BTreeMap<String, u64>,
    durable: BTreeMap<String, u64>,
}

#[derive(Debug, Default)]
struct DiskState {
    next_inode: u64,
    inodes: HashMap<u64, Inode>,
    dirs: BTreeMap<PathBuf, Dir>,
    locks: HashSet<PathBuf>,
    mutations: u64,
    fail_after: Option<u64>,
    full: bool,
    /// Bytes whose cached pages the store advised dropping.
    cache_released: u64,
    /// Of those, bytes that were not yet synced when it did.
    unsynced_released: u64,
}

/// A simulated disk. Clones share the same disk.
#[derive(Debug, Clone, Default)]
pub struct SimDisk {
    state: Arc<Mutex<DiskState>>,
}

/// A small deterministic generator (`SplitMix64`), so a crash is reproducible
/// from its seed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    /// [`SplitMix::below`] for a length or an index.
    fn below_usize(&mut self, n: usize) -> usize {
        // Below a usize, so it fits one.
        usize::try_from(self.below(n as u64)).unwrap_or(n)
    }
}

/// A file offset or length as the simulated disk, which keeps files in
/// memory, can hold it.
fn in_memory(n: u64) -> io::Result<usize> {
    usize::try_from(n).map_err(|_| {
        io::Error::new(
            io::ErrorKind::FileTooLarge,
            "past what a simulated file can hold",
        )
    })
}

fn apply(content: &mut Vec<u8>, op: &Pending) {
    match op {
        Pending::Write { offset, data } => {
            let start = *offset;
            let end = start + data.len();
            if content.len() < end {
                content.resize(end, 0);
            }
            if let Some(slot) = content.get_mut(start..end) {
                slot.copy_from_slice(data);
            }
        }
        Pending::SetLen(len) => content.resize(*len, 0),
    }
}

fn split(path: &Path) -> io::Result<(PathBuf, String)> {
    let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    Ok((parent, name.to_string()))
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

impl DiskState {
    /// Counts a mutating operation; fails it once the disk is frozen.
    fn mutate(&mut self) -> io::Result<()> {
        if self.fail_after.is_some_and(|n| self.mutations >= n) {
            return Err(io::Error::other("simulated crash: the process is gone"));
        }
        self.mutations += 1;
        Ok(())
    }

    fn dir(&mut self, path: &Path) -> io::Result<&mut Dir> {
        self.dirs.get_mut(path).ok_or_else(|| not_found(path))
    }

    fn lookup(&self, path: &Path) -> io::Result<u64> {
        let (parent, name) = split(path)?;
        self.dirs
            .get(&parent)
            .and_then(|d| d.current.get(&name))
            .copied()
            .ok_or_else(|| not_found(path))
    }

    fn inode(&mut self, id: u64) -> io::Result<&mut Inode> {
        self.inodes
            .get_mut(&id)
            .ok_or_else(|| io::Error::other("simulated inode vanished"))
    }

    /// Fails with `StorageFull` if the disk is full and file `id` would have
    /// to grow to `end` bytes.
    fn room_for(&mut self, id: u64, end: u64) -> io::Result<()> {
        if self.full && end > self.inode(id)?.current.len() as u64 {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "simulated disk is full",
            ));
        }
        Ok(())
    }
}

impl SimDisk {
    /// An empty disk.
    #[must_use]
    pub fn new() -> Self {
        SimDisk::default()
    }

    /// From now on, the operation after the `n`-th mutating one (counted since
    /// the disk was made) and every later one fails, as if the process died
    /// there. `None` lifts the limit.
    pub fn fail_after(&self, n: Option<u64>) {
        self.state.lock().fail_after = n;
    }

    /// Makes the disk full (`true`) or gives it room again (`false`). While
    /// it is full, a write or allocation that would grow a file fails with
    /// [`io::ErrorKind::StorageFull`] and changes nothing; writes inside a
    /// file's length (space already allocated), syncs, creations of empty
    /// files, renames and removals still succeed.
    pub fn set_full(&self, full: bool) {
        self.state.lock().full = full;
    }

    /// Mutating operations (writes, syncs, allocations, creations, renames,
    /// removals) performed so far.
    #[must_use]
    pub fn mutations(&self) -> u64 {
        self.state.lock().mutations
    }

    /// Bytes whose cached pages the store advised the kernel to drop
    /// ([`StorageFile::release_cache`]), and how many of them had writes not
    /// yet synced at the time (a real kernel keeps dirty pages anyway; a
    /// store that asks for it drops pages it is still writing back).
    #[must_use]
    pub fn cache_released(&self) -> (u64, u64) {
        let state = self.state.lock();
        (state.cache_released, state.unsynced_released)
    }

    /// The disk as found after a power loss now: what was synced, plus what
    /// `plan` keeps of the rest. The new disk has no locks and no limit, and
    /// is not full.
    #[must_use]
    #[expect(
        clippy::too_many_lines,
        reason = "directories, then files, each under the same crash plan"
    )]
    pub fn crash(&self, plan: CrashPlan) -> SimDisk {
        let state = self.state.lock();
        let seed = match plan {
            CrashPlan::Torn { seed } | CrashPlan::Garbled { seed } => seed,
            _ => 0,
        };
        let mut rng = SplitMix(seed ^ 0xC0FF_EE00_D15C_0000);
        let mut dirs = BTreeMap::new();
        let mut live = HashSet::new();
        for (path, dir) in &state.dirs {
            let keep_current = match plan {
                CrashPlan::LoseAll => false,
                CrashPlan::KeepAll => true,
                _ => rng.below(2) == 0,
            };
            let entries = if keep_current {
                &dir.current
            } else {
                &dir.durable
            };
            live.extend(entries.values().copied());
            dirs.insert(
                path.clone(),
                Dir {
                    current: entries.clone(),
                    durable: entries.clone(),
                },
            );
        }
        let mut inodes = HashMap::new();
        let mut ids: Vec<u64> = live.into_iter().collect();
        ids.sort_unstable();
        for id in ids {
            let Some(inode) = state.inodes.get(&id) else {
                continue;
            };
            let mut content = inode.durable.clone();
            match plan {
                CrashPlan::LoseAll => {}
                CrashPlan::KeepAll => inode.pending.iter().for_each(|op| apply(&mut content, op)),
                CrashPlan::Torn { .. } => {
                    let keep = rng.below_usize(inode.pending.len() + 1);
                    for (i, op) in inode.pending.iter().enumerate().take(keep) {
                        match op {
                            Pending::Write { offset, data } if i + 1 == keep => {
                                let cut = rng.below_usize(data.len() + 1);
                                let torn = Pending::Write {
                                    offset: *offset,
                                    data: data.iter().take(cut).copied().collect(),
                                };
                                apply(&mut content, &torn);
                            }
                            _ => apply(&mut content, op),
                        }
                    }
                }
                CrashPlan::Garbled { .. } => {
                    for op in &inode.pending {
                        match (rng.below(3), op) {
                            (0, _) => {}
                            (1, _) | (_, Pending::SetLen(_)) => apply(&mut content, op),
                            (_, Pending::Write { offset, data }) => {
                                let mut garbled = data.clone();
                                let flips = 1 + rng.below(4);
                                for _ in 0..flips {
                                    let at = rng.below_usize(garbled.len());
                                    if let Some(b) = garbled.get_mut(at) {
                                        *b = rng.next().to_le_bytes()[0];
                                    }
                                }
                                apply(
                                    &mut content,
                                    &Pending::Write {
                                        offset: *offset,
                                        data: garbled,
                                    },
                                );
                            }
                        }
                    }
                }
            }
            inodes.insert(
                id,
                Inode {
                    current: content.clone(),
                    durable: content,
                    pending: Vec::new(),
                },
            );
        }
        SimDisk {
            state: Arc::new(Mutex::new(DiskState {
                next_inode: state.next_inode,
                inodes,
                dirs,
                locks: HashSet::new(),
                mutations: 0,
                fail_after: None,
                full: false,
                cache_released: 0,
                unsynced_released: 0,
            })),
        }
    }

    /// The current bytes of the file at `path`.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::NotFound`] if there is no file at `path`.
    pub fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        let state = self.state.lock();
        let id = state.lookup(path)?;
        state
            .inodes
            .get(&id)
            .map(|i| i.current.clone())
            .ok_or_else(|| io::Error::other("simulated inode vanished"))
    }

    /// Replaces the file's bytes, durably (as damage on the medium would).
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::NotFound`] if there is no file at `path`.
    pub fn write_file(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut state = self.state.lock();
        let id = state.lookup(path)?;
        let inode = state.inode(id)?;
        inode.current = bytes.to_vec();
        inode.durable = bytes.to_vec();
        inode.pending.clear();
        Ok(())
    }

    /// Every file path on the disk, sorted.
    #[must_use]
    pub fn files(&self) -> Vec<PathBuf> {
        let state = self.state.lock();
        let mut out: Vec<PathBuf> = state
            .dirs
            .iter()
            .flat_map(|(dir, d)| d.current.keys().map(move |name| dir.join(name)))
            .collect();
        out.sort();
        out
    }
}

impl Storage for SimDisk {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        let mut current = PathBuf::new();
        for part in path.components() {
            current.push(part);
            if !state.dirs.contains_key(&current) {
                state.mutate()?;
                // Directories are taken to be durable once made: the store
                // syncs their parents, and the model keeps to files.
                state.dirs.insert(current.clone(), Dir::default());
            }
        }
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.state.lock();
        let d = state.dirs.get(dir).ok_or_else(|| not_found(dir))?;
        Ok(d.current.keys().cloned().collect())
    }

    fn open_file(&self, path: &Path, create: bool) -> io::Result<Box<dyn StorageFile>> {
        let mut state = self.state.lock();
        let inode = match state.lookup(path) {
            Ok(id) => id,
            Err(e) if create && e.kind() == io::ErrorKind::NotFound => {
                state.mutate()?;
                let (parent, name) = split(path)?;
                let id = state.next_inode;
                state.next_inode += 1;
                state.inodes.insert(id, Inode::default());
                state.dir(&parent)?.current.insert(name, id);
                id
            }
            Err(e) => return Err(e),
        };
        Ok(Box::new(SimFile {
            disk: Arc::clone(&self.state),
            inode,
            path: path.to_path_buf(),
        }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.lookup(path)?;
        state.mutate()?;
        let (parent, name) = split(path)?;
        state.dir(&parent)?.current.remove(&name);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        let id = state.lookup(from)?;
        state.mutate()?;
        let (from_dir, from_name) = split(from)?;
        let (to_dir, to_name) = split(to)?;
        state.dir(&to_dir)?;
        state.dir(&from_dir)?.current.remove(&from_name);
        state.dir(&to_dir)?.current.insert(to_name, id);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.mutate()?;
        let d = state.dir(dir)?;
        d.durable = d.current.clone();
        Ok(())
    }

    fn lock_file(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        let mut state = self.state.lock();
        if !state.locks.insert(path.to_path_buf()) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "simulated lock is held",
            ));
        }
        Ok(Box::new(SimLock {
            disk: Arc::clone(&self.state),
            path: path.to_path_buf(),
        }))
    }
}

#[derive(Debug)]
struct SimLock {
    disk: Arc<Mutex<DiskState>>,
    path: PathBuf,
}

impl LockGuard for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        self.disk.lock().locks.remove(&self.path);
    }
}

#[derive(Debug)]
struct SimFile {
    disk: Arc<Mutex<DiskState>>,
    inode: u64,
    path: PathBuf,
}

impl StorageFile for SimFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn len(&self) -> io::Result<u64> {
        let mut state = self.disk.lock();
        Ok(state.inode(self.inode)?.current.len() as u64)
    }

    fn identity(&self) -> io::Result<Option<(u64, u64)>> {
        Ok(Some((0, self.inode)))
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        let mut state = self.disk.lock();
        state.room_for(self.inode, offset.saturating_add(buf.len() as u64))?;
        state.mutate()?;
        let op = Pending::Write {
            offset: in_memory(offset)?,
            data: buf.to_vec(),
        };
        let inode = state.inode(self.inode)?;
        apply(&mut inode.current, &op);
        inode.pending.push(op);
        Ok(buf.len())
    }

    fn release_cache(&self, offset: u64, len: u64) {
        let mut state = self.disk.lock();
        let end = offset.saturating_add(len);
        let unsynced = state.inode(self.inode).map_or(0, |inode| {
            inode
                .pending
                .iter()
                .map(|op| match op {
                    Pending::Write { offset: at, data } => {
                        let (at, data_end) = (*at as u64, (*at + data.len()) as u64);
                        data_end.min(end).saturating_sub(at.max(offset))
                    }
                    Pending::SetLen(_) => 0,
                })
                .sum()
        });
        state.cache_released += len;
        state.unsynced_released += unsynced;
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut state = self.disk.lock();
        state.mutate()?;
        let inode = state.inode(self.inode)?;
        for op in std::mem::take(&mut inode.pending) {
            apply(&mut inode.durable, &op);
        }
        Ok(())
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        let mut state = self.disk.lock();
        state.room_for(self.inode, len)?;
        state.mutate()?;
        let inode = state.inode(self.inode)?;
        if (inode.current.len() as u64) < len {
            let op = Pending::SetLen(in_memory(len)?);
            apply(&mut inode.current, &op);
            inode.pending.push(op);
        }
        Ok(())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut state = self.disk.lock();
        let inode = state.inode(self.inode)?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let available = inode.current.get(start..).unwrap_or_default();
        let n = available.len().min(buf.len());
        if let (Some(to), Some(from)) = (buf.get_mut(..n), available.get(..n)) {
            to.copy_from_slice(from);
        }
        Ok(n)
    }

    fn read_copy(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        self.read_view(offset, len)
    }

    /// Always a copy: nothing here is mapped.
    fn read_view(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let mut state = self.disk.lock();
        let inode = state.inode(self.inode)?;
        // An offset past `usize` is past the end of any simulated file.
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        inode
            .current
            .get(start..start.saturating_add(len))
            .map(Bytes::copy_from_slice)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "read past the end of a simulated file",
                )
            })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn synced_bytes_and_entries_survive_and_unsynced_ones_follow_the_plan() {
        let disk = SimDisk::new();
        let dir = Path::new("/d");
        disk.create_dir_all(dir).unwrap();
        let f = disk.open_file(&dir.join("a"), true).unwrap();
        f.write_all_at(b"hello", 0).unwrap();
        f.sync_data().unwrap();
        disk.sync_dir(dir).unwrap();
        f.write_all_at(b"world", 5).unwrap();
        let g = disk.open_file(&dir.join("b"), true).unwrap();
        g.write_all_at(b"never synced", 0).unwrap();

        let lost = disk.crash(CrashPlan::LoseAll);
        assert_eq!(lost.read_file(&dir.join("a")).unwrap(), b"hello");
        assert!(
            lost.read_file(&dir.join("b")).is_err(),
            "an unsynced directory entry vanishes"
        );

        let kept = disk.crash(CrashPlan::KeepAll);
        assert_eq!(kept.read_file(&dir.join("a")).unwrap(), b"helloworld");
        assert_eq!(kept.read_file(&dir.join("b")).unwrap(), b"never synced");

        for seed in 0..50 {
            let torn = disk.crash(CrashPlan::Torn { seed });
            let a = torn.read_file(&dir.join("a")).unwrap();
            assert!(
                a.starts_with(b"hello") && b"helloworld".starts_with(&a[..]),
                "{a:?}"
            );
        }
    }

    #[test]
    fn a_frozen_disk_refuses_mutations() {
        let disk = SimDisk::new();
        disk.create_dir_all(Path::new("/d")).unwrap();
        let f = disk.open_file(Path::new("/d/a"), true).unwrap();
        disk.fail_after(Some(disk.mutations()));
        assert!(f.write_at(b"x", 0).is_err());
        assert!(f.sync_data().is_err());
        assert!(disk.sync_dir(Path::new("/d")).is_err());
        disk.fail_after(None);
        f.write_all_at(b"x", 0).unwrap();
    }

    #[test]
    fn a_full_disk_refuses_growth_only() {
        let disk = SimDisk::new();
        disk.create_dir_all(Path::new("/d")).unwrap();
        let f = disk.open_file(Path::new("/d/a"), true).unwrap();
        f.write_all_at(b"abcd", 0).unwrap();
        disk.set_full(true);
        let full = |r: io::Result<()>| r.unwrap_err().kind() == io::ErrorKind::StorageFull;
        assert!(full(f.write_all_at(b"xyz", 2)));
        assert!(full(f.allocate(5)));
        f.write_all_at(b"wx", 2).unwrap();
        f.allocate(4).unwrap();
        f.sync_data().unwrap();
        let g = disk.open_file(Path::new("/d/b"), true).unwrap();
        assert!(full(g.write_all_at(b"y", 0)));
        disk.rename(Path::new("/d/b"), Path::new("/d/c")).unwrap();
        assert_eq!(disk.read_file(Path::new("/d/a")).unwrap(), b"abwx");
        disk.set_full(false);
        f.write_all_at(b"yz", 4).unwrap();
        assert_eq!(disk.read_file(Path::new("/d/a")).unwrap(), b"abwxyz");
    }
}
