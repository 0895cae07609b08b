//! Round trips and damage checks of the index file format.

use super::*;

fn sample() -> MemIndex {
    let mut mem = MemIndex::new(true);
    let a: Arc<str> = Arc::from("alpha");
    let b: Arc<str> = Arc::from("beta");
    mem.push(&a, 3, &[64, 200], &[10, 11]);
    mem.push(&b, 0, &[400], &[5]);
    mem.push(&a, 5, &[520], &[99]);
    mem
}

/// `alpha` came from two earlier segments; `beta` starts here.
fn sample_directories() -> Directories {
    let mut directories = Directories::none();
    let runs = vec![
        DirRun {
            segment: 1,
            slots_from: 4,
            first_version: 0,
        },
        DirRun {
            segment: 6,
            slots_from: 0,
            first_version: 2,
        },
    ];
    directories.insert(Arc::from("alpha"), runs);
    directories
}

#[test]
fn round_trips_every_section() {
    let mem = sample();
    let bytes = encode(&mem, 1000, 4096, HashKind::Xxh3, &sample_directories());
    let file = IndexFile::parse(Bytes::from(bytes), 1000).unwrap();
    assert!(file.verify_body());
    assert_eq!(file.len(), 4);
    assert_eq!(file.offsets(0, 4).unwrap(), vec![64, 200, 400, 520]);
    let alpha = file.stream(&StreamKey::new("alpha")).unwrap();
    assert_eq!((alpha.first_version, alpha.count), (3, 3));
    let slots: Vec<_> = (0..3).map(|i| file.slot(&alpha, i).unwrap()).collect();
    assert_eq!(slots, [(0, 64), (1, 200), (3, 520)]);
    assert_eq!(file.slot(&alpha, 3), None);
    let runs: Vec<_> = (0..alpha.runs())
        .map(|i| file.run(&alpha, i).unwrap())
        .collect();
    assert_eq!(runs, sample_directories().get("alpha"));
    assert_eq!(file.run(&alpha, 2), None);
    let beta = file.stream(&StreamKey::new("beta")).unwrap();
    assert_eq!((beta.first_version, beta.count, beta.runs()), (0, 1, 0));
    // Streams' slots are in name order: beta's follow alpha's.
    assert_eq!(beta.slots_from(), 3);
    assert_eq!(file.slot_at(beta.slots_from(), 0), Some((2, 400)));
    assert_eq!(file.slot_at(beta.slots_from(), 1), None);
    assert!(file.stream(&StreamKey::new("gamma")).is_none());
    assert_eq!(file.find_id(99, || id_hash(99)), Some(3));
    assert_eq!(file.find_id(5, || id_hash(5)), Some(2));
    assert_eq!(file.find_id(6, || id_hash(6)), None);
    let mut names: Vec<_> = file.streams().map(|s| s.unwrap().0.to_string()).collect();
    names.sort();
    assert_eq!(names, ["alpha", "beta"]);
}

#[test]
fn directories_hold_at_most_their_newest_runs() {
    let mut directories = Directories::none();
    let runs: Vec<DirRun> = (0..100u32)
        .map(|i| DirRun {
            segment: i,
            slots_from: i,
            first_version: u64::from(i),
        })
        .collect();
    directories.insert(Arc::from("alpha"), runs.clone());
    let bytes = encode(&sample(), 0, 4096, HashKind::Xxh3, &directories);
    let file = IndexFile::parse(Bytes::from(bytes), 0).unwrap();
    let alpha = file.stream(&StreamKey::new("alpha")).unwrap();
    assert_eq!(alpha.runs() as usize, DIRECTORY_RUNS);
    let stored: Vec<_> = (0..alpha.runs())
        .map(|i| file.run(&alpha, i).unwrap())
        .collect();
    assert_eq!(stored, runs[100 - DIRECTORY_RUNS..]);
}

#[test]
fn colliding_hashes_still_find_each_name() {
    let bytes = encode(
        &sample(),
        0,
        4096,
        HashKind::Constant,
        &sample_directories(),
    );
    let file = IndexFile::parse(Bytes::from(bytes), 0).unwrap();
    assert_eq!(file.stream(&StreamKey::new("beta")).unwrap().count, 1);
    let alpha = file.stream(&StreamKey::new("alpha")).unwrap();
    assert_eq!((alpha.count, alpha.runs()), (3, 2));
    assert!(file.stream(&StreamKey::new("zeta")).is_none());
}

#[test]
fn every_flipped_bit_is_caught_by_a_checksum() {
    let bytes = encode(&sample(), 7, 4096, HashKind::Xxh3, &sample_directories());
    for bit in 0..bytes.len() * 8 {
        let mut damaged = bytes.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        match IndexFile::parse(Bytes::from(damaged), 7) {
            Err(_) => {}
            Ok(file) => assert!(!file.verify_body(), "bit {bit} went unnoticed"),
        }
    }
    assert!(IndexFile::parse(Bytes::from(bytes.clone()), 8).is_err());
    assert!(IndexFile::parse(Bytes::from(bytes[..bytes.len() - 8].to_vec()), 7).is_err());
}

/// A stream record whose directory would run past the `streams`
/// section, or be longer than a directory may be, names no stream:
/// lookups never read past it.
#[test]
fn a_directory_past_its_section_is_not_read() {
    let bytes = encode(&sample(), 0, 4096, HashKind::Xxh3, &sample_directories());
    let header = IndexHeader::decode(&bytes).unwrap();
    let layout = Layout::of(&header).unwrap();
    let file = IndexFile::parse(Bytes::from(bytes.clone()), 0).unwrap();
    let key = StreamKey::new("alpha");
    let record = file.stream(&key).unwrap().record();
    assert_eq!(file.stream_at(&key, record).unwrap().runs(), 2);
    assert_eq!(file.stream_at(&StreamKey::new("beta"), record), None);
    assert_eq!(file.stream_at(&key, record + 8), None);
    for runs in [15u16, 200] {
        let mut damaged = bytes.clone();
        let at = layout.streams + record as usize + 18;
        damaged[at..at + 2].copy_from_slice(&runs.to_le_bytes());
        let file = IndexFile::parse(Bytes::from(damaged), 0).unwrap();
        assert!(!file.verify_body());
        assert_eq!(file.stream(&key), None);
        assert!(file.stream(&StreamKey::new("beta")).is_some());
    }
}

#[test]
fn a_streams_only_file_keeps_every_stream_and_directory_and_nothing_per_event() {
    let mem = sample();
    let whole = encode(&mem, 1000, 4096, HashKind::Xxh3, &sample_directories());
    let whole = IndexFile::parse(Bytes::from(whole), 1000).unwrap();
    let bytes = encode_streams_only(&whole);
    assert!(bytes.len() < whole.bytes.len(), "{} bytes", bytes.len());
    let file = IndexFile::parse(Bytes::from(bytes.clone()), 1000).unwrap();
    assert!(file.verify_body());
    assert!(file.header().streams_only() && !whole.header().streams_only());
    assert_eq!(file.len(), whole.len());
    for name in ["alpha", "beta"] {
        let key = StreamKey::new(name);
        let (kept, was) = (file.stream(&key).unwrap(), whole.stream(&key).unwrap());
        assert_eq!(
            (
                kept.first_version,
                kept.count,
                kept.slots_from(),
                kept.runs()
            ),
            (was.first_version, was.count, was.slots_from(), was.runs()),
            "{name}"
        );
        let runs =
            |f: &IndexFile, p: &StreamPart| (0..p.runs()).map(|i| f.run(p, i)).collect::<Vec<_>>();
        assert_eq!(runs(&file, &kept), runs(&whole, &was), "{name}");
    }
    assert!(file.stream(&StreamKey::new("gamma")).is_none());
    assert_eq!((file.offset(0), file.offsets(0, 1)), (None, None));
    assert_eq!(file.find_id(10, || id_hash(10)), None);
    // Every single bit flip is caught by a checksum or a check.
    for bit in 0..bytes.len() * 8 {
        let mut damaged = bytes.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        let caught =
            IndexFile::parse(Bytes::from(damaged), 1000).map_or(true, |f| !f.verify_body());
        assert!(caught, "bit {bit}");
    }
}
