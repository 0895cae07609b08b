//! What the append path does to make writes cheap, checked for what it must
//! not break: default ids, segment preallocation and zero-filling, and the
//! page cache the writer hands back.

use evstore::storage::{OsStorage, SimDisk, Storage};
use evstore::{Direction, Durability, EventData, ExpectedVersion, Options, Store};
use std::path::Path;
use std::sync::Arc;

#[test]
fn default_ids_are_version_7_and_increase_within_a_thread() {
    let ids: Vec<_> = (0..10_000)
        .map(|_| EventData::new("Made", &b""[..]).id())
        .collect();
    assert!(ids.iter().all(|id| id.get_version_num() == 7));
    assert!(
        ids.windows(2).all(|pair| pair[0] < pair[1]),
        "ids made one after another must increase"
    );
}

#[test]
fn default_ids_made_by_concurrent_threads_are_all_distinct() {
    let ids: Vec<_> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    (0..5_000)
                        .map(|_| EventData::new("Made", &b""[..]).id())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("worker"))
            .collect()
    });
    let distinct: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len());
}

#[test]
fn allocating_a_file_keeps_its_bytes_and_reads_zero_beyond() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("grown");
    let file = OsStorage.open_file(&path, true).expect("create");
    // An end that is not a multiple of the 4 KiB blocks zeroed beyond it.
    let written = vec![0xAB; 5_000];
    file.write_all_at(&written, 0).expect("write");
    file.allocate(1 << 20).expect("allocate");
    file.sync_data().expect("sync");
    assert_eq!(file.len().expect("len"), 1 << 20);
    let mut back = vec![0u8; 1 << 20];
    assert_eq!(file.read_at(&mut back, 0).expect("read"), 1 << 20);
    assert_eq!(&back[..5_000], &written[..]);
    assert!(back[5_000..].iter().all(|&b| b == 0));
    // Growing again keeps what the first allocation made.
    file.write_all_at(&[0xCD; 3], (1 << 20) - 3)
        .expect("write at end");
    file.allocate(3 << 20).expect("allocate more");
    let mut tail = vec![0u8; 2 << 20];
    file.read_at(&mut tail, (1 << 20) - 3).expect("read tail");
    assert_eq!(&tail[..3], &[0xCD; 3]);
    assert!(tail[3..].iter().all(|&b| b == 0));
}

/// Appends about 3 MiB of 1 KiB events with `durability`; returns the store
/// and the events' payloads.
fn fill(store: &Store, durability: Durability) -> Vec<Vec<u8>> {
    let mut payloads = Vec::new();
    for n in 0u32..3_000 {
        let payload: Vec<u8> = n.to_le_bytes().iter().copied().cycle().take(1024).collect();
        store
            .append_with_durability(
                "filled",
                ExpectedVersion::Any,
                &[EventData::new("Filled", payload.clone())],
                durability,
            )
            .expect("append");
        payloads.push(payload);
    }
    store.flush().expect("flush");
    payloads
}

fn read_all(store: &Store) -> Vec<Vec<u8>> {
    store
        .read_stream("filled", 0, Direction::Forward, usize::MAX)
        .expect("read")
        .iter()
        .map(|e| e.payload.to_vec())
        .collect()
}

#[test]
fn the_writer_hands_back_only_synced_pages_and_reads_still_see_everything() {
    for durability in [Durability::Sync, Durability::Buffered] {
        let disk = SimDisk::new();
        let storage: Arc<dyn Storage> = Arc::new(disk.clone());
        let options = || {
            Options::default()
                .storage(Arc::clone(&storage))
                .segment_size(16 << 20)
                .page_cache_window(Some(1 << 20))
        };
        let store = Store::open(Path::new("/store"), options()).expect("open");
        let payloads = fill(&store, durability);
        let (released, unsynced) = disk.cache_released();
        assert!(
            released >= 1 << 20,
            "{durability:?}: released only {released} bytes of about 3 MiB synced"
        );
        assert_eq!(unsynced, 0, "{durability:?}: released pages not yet synced");
        assert_eq!(read_all(&store), payloads);
        store.close().expect("close");
        let store = Store::open(Path::new("/store"), options()).expect("reopen");
        assert_eq!(read_all(&store), payloads);
    }
}

#[test]
fn without_a_window_the_writer_keeps_every_page() {
    let disk = SimDisk::new();
    let storage: Arc<dyn Storage> = Arc::new(disk.clone());
    let options = Options::default().storage(storage).page_cache_window(None);
    let store = Store::open(Path::new("/store"), options).expect("open");
    fill(&store, Durability::Sync);
    assert_eq!(disk.cache_released(), (0, 0));
}

#[test]
fn writes_padded_to_their_page_never_grow_a_segment_past_its_size() {
    // A size that is not a whole number of pages, so the last writes of a
    // segment end in a page that runs past the segment's end.
    const SEGMENT: u64 = 3 * 4096 + 2048;
    let disk = SimDisk::new();
    let storage: Arc<dyn Storage> = Arc::new(disk.clone());
    let options = || {
        Options::default()
            .storage(Arc::clone(&storage))
            .segment_size(SEGMENT)
    };
    let store = Store::open(Path::new("/store"), options()).expect("open");
    let mut payloads = Vec::new();
    for n in 0u32..400 {
        let len = usize::try_from(n * 37 % 300 + 1).expect("small");
        let payload = vec![u8::try_from(n % 251).expect("small"); len];
        store
            .append(
                "filled",
                ExpectedVersion::Any,
                &[EventData::new("Filled", payload.clone())],
            )
            .expect("append");
        payloads.push(payload);
    }
    store.close().expect("close");
    let segments: Vec<_> = disk
        .files()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    assert!(segments.len() > 3, "the appends span several segments");
    for path in &segments {
        let bytes = disk.read_file(path).expect("read segment");
        assert_eq!(bytes.len() as u64, SEGMENT, "{}", path.display());
    }
    let store = Store::open(Path::new("/store"), options()).expect("reopen");
    assert_eq!(read_all(&store), payloads);
}

/// Whether `dir` is on a tmpfs, which before Linux 6.6 refuses the direct
/// I/O that zero-filling uses.
fn on_tmpfs(dir: &Path) -> bool {
    const TMPFS_MAGIC: u64 = 0x0102_1994;
    rustix::fs::statfs(dir).is_ok_and(|s| u64::try_from(s.f_type).is_ok_and(|t| t == TMPFS_MAGIC))
}

#[test]
fn an_idle_writers_next_segment_is_zero_filled_and_then_takes_events_intact() {
    let dir = tempfile::tempdir().expect("temp dir");
    if on_tmpfs(dir.path()) {
        return;
    }
    let options = || Options::default().segment_size(1 << 20);
    let store = Store::open(dir.path(), options()).expect("open");
    store
        .append(
            "filled",
            ExpectedVersion::Any,
            &[EventData::new("Filled", &b"first"[..])],
        )
        .expect("append");
    // The preparer watches the idle segment for a second, finds it slow
    // enough, and zero-fills the next one in paced chunks.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while store.metrics().segments.zero_filled == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the next segment of an idle store was not zero-filled"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut payloads = vec![b"first".to_vec()];
    payloads.extend(fill(&store, Durability::Sync));
    assert!(
        store.metrics().segments.sealed >= 2,
        "the zero-filled segment was not used"
    );
    assert_eq!(read_all(&store), payloads);
    store.close().expect("close");
    let store = Store::open(dir.path(), options()).expect("reopen");
    assert_eq!(read_all(&store), payloads);
}
