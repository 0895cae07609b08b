//! `docs/format.md` checked against the code and against the files of a real
//! store.
//!
//! The document's constants block is compared with `evstore::format`, and
//! each layout table is checked for consistency (fields that tile the
//! structure, sizes that match their types). Then a store is written with the
//! public API and every documented field is read, at its documented offset,
//! from the segments, index files, catalogue, snapshot, checkpoint and lock
//! file, and compared with what was appended; every checksum is recomputed
//! the way the document defines it. A change to the document or to the
//! format that the other does not follow fails here.

use evstore::{format, Direction, Error, EventData, ExpectedVersion, Options, Store, Uuid};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};
use xxhash_rust::xxh3::{xxh3_128, xxh3_64};

type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

const DOC: &str = include_str!("../docs/format.md");

const SEGMENT_SIZE: u64 = 4096;
const STREAMS: [&str; 3] = ["order-1", "Account/7 Ünï", "order-2"];
const SNAPSHOT_STREAM: &str = "Account/7 Ünï";
const SNAPSHOT_VERSION: u64 = 2;
const SNAPSHOT_DATA: &[u8] = b"state of account 7 at version 2";
const CHECKPOINT: &str = "Balances (EUR)";
const CHECKPOINT_POSITION: u64 = 5;

fn fail<T>(message: impl Into<String>) -> TestResult<T> {
    Err(message.into().into())
}

fn slice(bytes: &[u8], at: usize, len: usize) -> TestResult<&[u8]> {
    match bytes.get(at..at + len) {
        Some(part) => Ok(part),
        None => fail(format!(
            "{len} bytes at offset {at} run past the end ({} bytes)",
            bytes.len()
        )),
    }
}

fn le(bytes: &[u8]) -> TestResult<u64> {
    if ![1, 2, 4, 8].contains(&bytes.len()) {
        return fail(format!("{} bytes are not an integer field", bytes.len()));
    }
    Ok(bytes
        .iter()
        .rev()
        .fold(0u64, |value, &byte| value << 8 | u64::from(byte)))
}

fn tail(bytes: &[u8], at: usize) -> TestResult<&[u8]> {
    match bytes.get(at..) {
        Some(rest) => Ok(rest),
        None => fail(format!(
            "offset {at} is past the end ({} bytes)",
            bytes.len()
        )),
    }
}

fn u32_le(bytes: &[u8], at: usize) -> TestResult<u32> {
    Ok(u32::try_from(le(slice(bytes, at, 4)?)?)?)
}

fn align8(n: usize) -> usize {
    n.next_multiple_of(8)
}

fn now_nanos() -> TestResult<u64> {
    Ok(u64::try_from(
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos(),
    )?)
}

/// The checksum as the document defines it: CRC-32, reflected polynomial
/// `0xEDB88320`, continued from `seed` (register `seed XOR 0xFFFFFFFF`,
/// result XOR `0xFFFFFFFF`), over the parts one after the other.
fn crc32(seed: u32, parts: &[&[u8]]) -> u32 {
    let mut register = seed ^ 0xFFFF_FFFF;
    for part in parts {
        for &byte in *part {
            register ^= u32::from(byte);
            for _ in 0..8 {
                register = if register & 1 == 1 {
                    (register >> 1) ^ 0xEDB8_8320
                } else {
                    register >> 1
                };
            }
        }
    }
    register ^ 0xFFFF_FFFF
}

/// A file-name stem as the document describes it.
fn stem(name: &str) -> String {
    let readable: String = name
        .chars()
        .take(48)
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '_' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '_',
        })
        .collect();
    format!("{readable}.{:032x}", xxh3_128(name.as_bytes()))
}

// ---------------------------------------------------------------------------
// Reading the document
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Int(u64),
    Bytes(Vec<u8>),
}

fn parse_value(text: &str) -> TestResult<Value> {
    if let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        let mut out = Vec::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                continue;
            }
            match chars.next() {
                Some('0') => out.push(0),
                Some('\\') => out.push(b'\\'),
                Some('x') => {
                    let hex: String = chars.by_ref().take(2).collect();
                    out.push(u8::from_str_radix(&hex, 16)?);
                }
                other => return fail(format!("unknown escape {other:?} in {text}")),
            }
        }
        return Ok(Value::Bytes(out));
    }
    let digits = text.replace('_', "");
    let value = match digits.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16)?,
        None => digits.parse()?,
    };
    Ok(Value::Int(value))
}

/// The constants block and every table of the document, each table under the
/// heading it follows.
struct Doc {
    constants: BTreeMap<String, Value>,
    tables: HashMap<String, Vec<Vec<String>>>,
}

impl Doc {
    fn parse(text: &str) -> TestResult<Doc> {
        let mut constants = BTreeMap::new();
        let mut tables: HashMap<String, Vec<Vec<String>>> = HashMap::new();
        let mut heading = String::new();
        let mut fence: Option<bool> = None;
        let mut table: Vec<Vec<String>> = Vec::new();
        for line in text.lines().chain(std::iter::once("")) {
            if line.starts_with("```") {
                fence = match fence {
                    Some(_) => None,
                    None => Some(heading == "Constants" && constants.is_empty()),
                };
                continue;
            }
            if let Some(in_constants) = fence {
                if in_constants {
                    if let Some((name, value)) = line.split_once(" = ") {
                        constants.insert(name.trim().to_string(), parse_value(value.trim())?);
                    }
                }
                continue;
            }
            if line.starts_with('|') {
                let cells: Vec<String> = line
                    .trim()
                    .trim_matches('|')
                    .split('|')
                    .map(|cell| cell.trim().replace('`', ""))
                    .collect();
                let separator = cells
                    .iter()
                    .all(|c| !c.is_empty() && c.chars().all(|ch| ch == '-' || ch == ':'));
                if !separator {
                    table.push(cells);
                }
                continue;
            }
            if !table.is_empty() {
                let rows = std::mem::take(&mut table);
                tables.entry(heading.clone()).or_insert(rows);
            }
            if line.starts_with('#') {
                heading = line.trim_start_matches('#').trim().to_string();
            }
        }
        if constants.is_empty() {
            return fail("docs/format.md has no constants block under 'Constants'");
        }
        Ok(Doc { constants, tables })
    }

    fn value(&self, name: &str) -> TestResult<&Value> {
        match self.constants.get(name) {
            Some(value) => Ok(value),
            None => fail(format!("docs/format.md does not define {name}")),
        }
    }

    fn int(&self, name: &str) -> TestResult<u64> {
        match self.value(name)? {
            Value::Int(n) => Ok(*n),
            Value::Bytes(_) => fail(format!("{name} is a string in docs/format.md")),
        }
    }

    fn usize(&self, name: &str) -> TestResult<usize> {
        Ok(usize::try_from(self.int(name)?)?)
    }

    fn u32(&self, name: &str) -> TestResult<u32> {
        Ok(u32::try_from(self.int(name)?)?)
    }

    fn bytes(&self, name: &str) -> TestResult<&[u8]> {
        match self.value(name)? {
            Value::Bytes(b) => Ok(b),
            Value::Int(_) => fail(format!("{name} is a number in docs/format.md")),
        }
    }

    /// The table under `heading`, header row first.
    fn table(&self, heading: &str) -> TestResult<&[Vec<String>]> {
        match self.tables.get(heading) {
            Some(rows) if !rows.is_empty() => Ok(rows),
            _ => fail(format!("docs/format.md has no table under '{heading}'")),
        }
    }

    /// The field layout under `heading`, which must describe exactly
    /// `fixed_len` bytes of fixed fields, then any variable ones.
    fn layout(&self, heading: &str, fixed_len: usize) -> TestResult<Layout> {
        let rows = self.table(heading)?;
        let columns = ["offset", "size", "type", "field", "meaning"];
        if rows.first().map(|r| r.as_slice()) != Some(&columns.map(String::from)[..]) {
            return fail(format!(
                "'{heading}': columns are not {columns:?}: {:?}",
                rows.first()
            ));
        }
        let mut fixed = BTreeMap::new();
        let mut variable = Vec::new();
        let mut end = 0usize;
        for row in rows.iter().skip(1) {
            let [offset, size, ty, name, _meaning] = row.as_slice() else {
                return fail(format!("'{heading}': malformed row {row:?}"));
            };
            let type_size = match ty.as_str() {
                "u8" => Some(1),
                "u16" => Some(2),
                "u32" => Some(4),
                "u64" => Some(8),
                "u128" => Some(16),
                "bytes" => None,
                array => {
                    let n = array
                        .strip_prefix("[u8; ")
                        .and_then(|t| t.strip_suffix(']'))
                        .and_then(|n| n.parse::<usize>().ok());
                    match n {
                        Some(n) => Some(n),
                        None => return fail(format!("'{heading}': unknown type {array}")),
                    }
                }
            };
            if fixed.contains_key(name) || variable.contains(name) {
                return fail(format!("'{heading}': field {name} appears twice"));
            }
            let Some(type_size) = type_size else {
                // Variable fields follow the fixed ones, the first of them
                // right where the fixed part ends.
                if variable.is_empty() && offset.parse::<usize>().is_ok_and(|at| at != end) {
                    return fail(format!(
                        "'{heading}': {name} starts at {offset}, the fixed part ends at {end}"
                    ));
                }
                variable.push(name.clone());
                continue;
            };
            let (Ok(offset), Ok(size)) = (offset.parse::<usize>(), size.parse::<usize>()) else {
                return fail(format!("'{heading}': {name} has no fixed place"));
            };
            if !variable.is_empty() {
                return fail(format!("'{heading}': {name} follows a variable field"));
            }
            if offset != end {
                return fail(format!(
                    "'{heading}': {name} starts at {offset}, the field before ends at {end}"
                ));
            }
            if size != type_size {
                return fail(format!(
                    "'{heading}': {name} is {size} bytes but of type {ty}"
                ));
            }
            end = offset + size;
            fixed.insert(name.clone(), (offset, size));
        }
        if end != fixed_len {
            return fail(format!(
                "'{heading}': fixed fields cover {end} bytes, the format says {fixed_len}"
            ));
        }
        Ok(Layout {
            heading: heading.to_string(),
            fixed,
            variable,
            len: fixed_len,
        })
    }
}

/// A documented structure: fixed fields by name, then variable ones in
/// order.
struct Layout {
    heading: String,
    fixed: BTreeMap<String, (usize, usize)>,
    variable: Vec<String>,
    len: usize,
}

impl Layout {
    fn span(&self, name: &str) -> TestResult<(usize, usize)> {
        match self.fixed.get(name) {
            Some(span) => Ok(*span),
            None => fail(format!("'{}' documents no field {name}", self.heading)),
        }
    }

    fn raw<'a>(&self, bytes: &'a [u8], name: &str) -> TestResult<&'a [u8]> {
        let (offset, size) = self.span(name)?;
        slice(bytes, offset, size)
    }

    fn uint(&self, bytes: &[u8], name: &str) -> TestResult<u64> {
        le(self.raw(bytes, name)?)
    }

    fn u128(&self, bytes: &[u8], name: &str) -> TestResult<u128> {
        let raw: [u8; 16] = self.raw(bytes, name)?.try_into()?;
        Ok(u128::from_le_bytes(raw))
    }

    fn zero(&self, bytes: &[u8], name: &str) -> TestResult {
        let raw = self.raw(bytes, name)?;
        assert!(
            raw.iter().all(|&b| b == 0),
            "'{}': {name} is not zero: {raw:?}",
            self.heading
        );
        Ok(())
    }

    /// The bytes a CRC field at the end of the fixed part covers: all of
    /// the fixed part before it.
    fn before<'a>(&self, bytes: &'a [u8], name: &str) -> TestResult<&'a [u8]> {
        let (offset, _) = self.span(name)?;
        slice(bytes, 0, offset)
    }

    /// Checks the variable fields that follow the fixed part, in the
    /// documented order, against `expected` (by field name); returns where
    /// they end.
    fn check_variable(&self, bytes: &[u8], expected: &[(&str, &[u8])]) -> TestResult<usize> {
        let mut at = self.len;
        for name in &self.variable {
            let Some((_, want)) = expected.iter().find(|(n, _)| n == name) else {
                return fail(format!(
                    "'{}': variable field {name} is not known to this test",
                    self.heading
                ));
            };
            assert_eq!(
                slice(bytes, at, want.len())?,
                *want,
                "'{}': {name} at offset {at}",
                self.heading
            );
            at += want.len();
        }
        assert_eq!(
            self.variable.len(),
            expected.len(),
            "'{}': variable fields {:?}",
            self.heading,
            self.variable
        );
        Ok(at)
    }
}

fn segment_seed(doc: &Doc, base: u64) -> TestResult<u32> {
    let mixed = base ^ doc.int("CRC_SEED_MIX")?;
    Ok((mixed as u32) ^ ((mixed >> 32) as u32) ^ doc.u32("CRC_SEED_XOR")?)
}

// ---------------------------------------------------------------------------
// The document against the code
// ---------------------------------------------------------------------------

#[test]
fn constants_and_tables_agree_with_the_code() -> TestResult {
    let doc = Doc::parse(DOC)?;
    assert_eq!(
        crc32(0, &[b"123456789"]),
        0xCBF4_3926,
        "the CRC-32 check value"
    );

    let ints: [(&str, u64); 18] = [
        ("FORMAT_VERSION", u64::from(format::FORMAT_VERSION)),
        (
            "REMOVED_FORMAT_VERSION",
            u64::from(format::REMOVED_FORMAT_VERSION),
        ),
        (
            "OLDEST_FORMAT_VERSION",
            u64::from(format::OLDEST_FORMAT_VERSION),
        ),
        ("SEGMENT_HEADER_LEN", format::SEGMENT_HEADER_LEN as u64),
        ("BATCH_HEADER_LEN", format::BATCH_HEADER_LEN as u64),
        ("RECORD_HEADER_LEN", format::RECORD_HEADER_LEN as u64),
        (
            "INDEX_FORMAT_VERSION",
            u64::from(format::INDEX_FORMAT_VERSION),
        ),
        ("INDEX_HEADER_LEN", format::INDEX_HEADER_LEN as u64),
        (
            "INDEX_FLAG_STREAMS_ONLY",
            u64::from(format::INDEX_FLAG_STREAMS_ONLY),
        ),
        (
            "CATALOG_FORMAT_VERSION",
            u64::from(format::CATALOG_FORMAT_VERSION),
        ),
        ("CATALOG_HEADER_LEN", format::CATALOG_HEADER_LEN as u64),
        (
            "SNAPSHOT_FORMAT_VERSION",
            u64::from(format::SNAPSHOT_FORMAT_VERSION),
        ),
        ("SNAPSHOT_HEADER_LEN", format::SNAPSHOT_HEADER_LEN as u64),
        (
            "POSTINGS_FORMAT_VERSION",
            u64::from(format::POSTINGS_FORMAT_VERSION),
        ),
        ("POSTINGS_HEADER_LEN", format::POSTINGS_HEADER_LEN as u64),
        (
            "POSTINGS_KEY_ENTRY_LEN",
            format::POSTINGS_KEY_ENTRY_LEN as u64,
        ),
        ("POSTINGS_KIND_TYPE", u64::from(format::POSTINGS_KIND_TYPE)),
        ("POSTINGS_KIND_TAG", u64::from(format::POSTINGS_KIND_TAG)),
    ];
    for (name, value) in ints {
        assert_eq!(doc.int(name)?, value, "{name}");
    }
    assert_eq!(
        doc.usize("INDEX_DIRECTORY_RUNS")?,
        format::INDEX_DIRECTORY_RUNS
    );
    assert_eq!(
        doc.usize("INDEX_DIRECTORY_ENTRY_LEN")?,
        format::INDEX_DIRECTORY_ENTRY_LEN
    );
    assert_eq!(
        doc.int("CHECKPOINT_FORMAT_VERSION")?,
        u64::from(format::CHECKPOINT_FORMAT_VERSION)
    );
    assert_eq!(
        doc.usize("CHECKPOINT_HEADER_LEN")?,
        format::CHECKPOINT_HEADER_LEN
    );
    let magics: [(&str, &[u8]); 6] = [
        ("SEGMENT_MAGIC", &format::SEGMENT_MAGIC),
        ("INDEX_MAGIC", &format::INDEX_MAGIC),
        ("POSTINGS_MAGIC", &format::POSTINGS_MAGIC),
        ("CATALOG_MAGIC", &format::CATALOG_MAGIC),
        ("SNAPSHOT_MAGIC", &format::SNAPSHOT_MAGIC),
        ("CHECKPOINT_MAGIC", &format::CHECKPOINT_MAGIC),
    ];
    for (name, value) in magics {
        assert_eq!(doc.bytes(name)?, value, "{name}");
    }
    assert_eq!(
        doc.usize("TAIL_RESERVE")?,
        2 * doc.usize("BATCH_HEADER_LEN")?,
        "the tail reserve is room for a mark and the seal"
    );

    // Every layout table tiles its structure with fields whose sizes match
    // their types.
    for (heading, len) in [
        ("Segment header", format::SEGMENT_HEADER_LEN),
        ("Batch header", format::BATCH_HEADER_LEN),
        ("Record", format::RECORD_HEADER_LEN),
        ("Index file header", format::INDEX_HEADER_LEN),
        ("Stream table entry", doc.usize("INDEX_TABLE_ENTRY_LEN")?),
        ("Stream record", doc.usize("INDEX_STREAM_RECORD_LEN")?),
        ("Directory entry", doc.usize("INDEX_DIRECTORY_ENTRY_LEN")?),
        ("Catalogue header", format::CATALOG_HEADER_LEN),
        ("Catalogue entry", doc.usize("CATALOG_ENTRY_HEADER_LEN")?),
        ("Snapshot file", format::SNAPSHOT_HEADER_LEN),
        ("Checkpoint file", format::CHECKPOINT_HEADER_LEN),
    ] {
        doc.layout(heading, len)?;
    }

    // The directory table names what the code calls its files.
    let paths: BTreeSet<&str> = doc
        .table("Directory layout")?
        .iter()
        .skip(1)
        .filter_map(|row| row.first().map(String::as_str))
        .collect();
    for path in [
        evstore::LOCK_FILE.to_string(),
        format!("{}/", evstore::SEGMENTS_DIR),
        format!("{}/{}", evstore::SEGMENTS_DIR, format::CATALOG_FILE),
        format!("{}/<stream stem>/<20 digits>.snap", evstore::SNAPSHOTS_DIR),
        format!("{}/<name stem>.ckpt", evstore::CHECKPOINTS_DIR),
    ] {
        assert!(
            paths.contains(path.as_str()),
            "the directory table has no row {path}: {paths:?}"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The document against a real store
// ---------------------------------------------------------------------------

/// One appended event, by position.
#[derive(Debug, Clone)]
struct Sent {
    stream: String,
    version: u64,
    id: Uuid,
    event_type: String,
    /// The tags section as the record must hold it.
    tags: Vec<u8>,
    metadata: Vec<u8>,
    payload: Vec<u8>,
}

fn options() -> Options {
    Options::default()
        .segment_size(SEGMENT_SIZE)
        .background_preallocation(false)
        .background_index_writes(false)
}

fn tag_section(tags: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for tag in tags {
        out.extend_from_slice(&(tag.len() as u16).to_le_bytes());
        out.extend_from_slice(tag.as_bytes());
    }
    out
}

/// Appends 79 events of varied sizes over three streams: enough for several
/// sealed segments, with records whose lengths need padding.
fn fill(store: &Store) -> TestResult<Vec<Sent>> {
    let mut sent: Vec<Sent> = Vec::new();
    for i in 0..40u64 {
        let stream = STREAMS.get((i % 3) as usize).copied().unwrap_or("order-1");
        let mut events = Vec::new();
        let mut batch = Vec::new();
        for j in 0..1 + i % 3 {
            let n = sent.len() as u64 + j;
            // Ids not in position order, so that sorting them in the index
            // file changes their order.
            let id = Uuid::from_u128(u128::from(xxh3_64(&n.to_le_bytes())) << 64 | u128::from(n));
            let event_type = if n.is_multiple_of(2) {
                "Placed"
            } else {
                "Shipped"
            };
            let metadata = if n.is_multiple_of(4) {
                format!("m{n}").into_bytes()
            } else {
                Vec::new()
            };
            let payload: Vec<u8> = (0..20 + n * 13 % 90).map(|k| (n + k) as u8).collect();
            // Some events carry tags, given out of order: stored sorted,
            // each as its length (u16) and its bytes.
            let (given, section): (Vec<String>, Vec<u8>) = match n % 3 {
                0 => (Vec::new(), Vec::new()),
                1 => (
                    vec![format!("order:{n}")],
                    tag_section(&[&format!("order:{n}")]),
                ),
                _ => (
                    vec!["zone:eu".to_string(), format!("customer:{}", n % 5)],
                    tag_section(&[&format!("customer:{}", n % 5), "zone:eu"]),
                ),
            };
            events.push(
                EventData::new(event_type, payload.clone())
                    .with_id(id)
                    .with_tags(given)
                    .with_metadata(metadata.clone()),
            );
            batch.push((id, event_type.to_string(), section, metadata, payload));
        }
        let result = store.append(stream, ExpectedVersion::Any, &events)?;
        assert_eq!(result.first_position, sent.len() as u64);
        for (j, (id, event_type, tags, metadata, payload)) in batch.into_iter().enumerate() {
            sent.push(Sent {
                stream: stream.to_string(),
                version: result.first_version + j as u64,
                id,
                event_type,
                tags,
                metadata,
                payload,
            });
        }
    }
    Ok(sent)
}

/// What walking one segment found.
struct Walked {
    base: u64,
    /// The offset of each record, by position minus base.
    offsets: Vec<u32>,
    /// The seal's offset and the position it names, if sealed.
    seal: Option<(u64, u64)>,
    /// The last mark, its first position and its durable mark.
    last_mark: Option<(u64, u64)>,
    /// The position after the segment's last event.
    end: u64,
}

struct Layouts {
    segment: Layout,
    batch: Layout,
    record: Layout,
}

fn check_record(
    doc: &Doc,
    layout: &Layout,
    record: &[u8],
    seed: u32,
    position: u64,
    sent: &Sent,
    times: (u64, u64),
) -> TestResult<usize> {
    let len = usize::try_from(layout.uint(record, "len")?)?;
    let (crc_at, crc_len) = layout.span("crc")?;
    let covered = match record.get(crc_at + crc_len..len) {
        Some(covered) => covered,
        None => return fail(format!("record length {len} at position {position}")),
    };
    assert_eq!(
        layout.uint(record, "crc")?,
        u64::from(crc32(seed, &[covered])),
        "record checksum at position {position}"
    );
    assert_eq!(layout.uint(record, "position")?, position);
    assert_eq!(layout.uint(record, "version")?, sent.version);
    let timestamp = layout.uint(record, "timestamp_nanos")?;
    assert!(
        (times.0..=times.1).contains(&timestamp),
        "timestamp {timestamp} at position {position}"
    );
    assert_eq!(layout.raw(record, "event_id")?, sent.id.as_bytes());
    let stream_len = layout.uint(record, "stream_len")?;
    let type_len = layout.uint(record, "event_type_len")?;
    let metadata_len = layout.uint(record, "metadata_len")?;
    let payload_len = layout.uint(record, "payload_len")?;
    let tags_len = layout.uint(record, "tags_len")?;
    assert_eq!(stream_len, sent.stream.len() as u64);
    assert_eq!(type_len, sent.event_type.len() as u64);
    assert_eq!(metadata_len, sent.metadata.len() as u64);
    assert_eq!(payload_len, sent.payload.len() as u64);
    assert_eq!(tags_len, sent.tags.len() as u64);
    assert_eq!(
        len as u64,
        doc.int("RECORD_HEADER_LEN")?
            + stream_len
            + type_len
            + tags_len
            + metadata_len
            + payload_len,
        "record length at position {position}"
    );
    let padding = vec![0u8; align8(len) - len];
    let end = layout.check_variable(
        record,
        &[
            ("stream", sent.stream.as_bytes()),
            ("event_type", sent.event_type.as_bytes()),
            ("tags", &sent.tags),
            ("metadata", &sent.metadata),
            ("payload", &sent.payload),
            ("padding", &padding),
        ],
    )?;
    assert_eq!(end, align8(len));
    Ok(len)
}

fn walk_segment(
    doc: &Doc,
    layouts: &Layouts,
    bytes: &[u8],
    base: u64,
    sent: &[Sent],
    times: (u64, u64),
) -> TestResult<Walked> {
    let header = &layouts.segment;
    assert_eq!(header.raw(bytes, "magic")?, doc.bytes("SEGMENT_MAGIC")?);
    assert_eq!(
        header.uint(bytes, "format_version")?,
        doc.int("FORMAT_VERSION")?
    );
    assert_eq!(
        header.uint(bytes, "header_len")?,
        doc.int("SEGMENT_HEADER_LEN")?
    );
    assert_eq!(header.uint(bytes, "base_position")?, base);
    assert_eq!(header.uint(bytes, "capacity")?, SEGMENT_SIZE);
    assert_eq!(bytes.len() as u64, SEGMENT_SIZE, "preallocated to capacity");
    let created = header.uint(bytes, "created_nanos")?;
    assert!((times.0..=times.1).contains(&created), "created {created}");
    header.zero(bytes, "reserved")?;
    assert_eq!(
        header.uint(bytes, "header_crc")?,
        u64::from(crc32(0, &[header.before(bytes, "header_crc")?])),
        "segment header checksum"
    );

    let seed = segment_seed(doc, base)?;
    let batch = &layouts.batch;
    let (events_kind, seal_kind, mark_kind) = (
        doc.int("BATCH_KIND_EVENTS")?,
        doc.int("BATCH_KIND_SEAL")?,
        doc.int("BATCH_KIND_MARK")?,
    );
    let mut walked = Walked {
        base,
        offsets: Vec::new(),
        seal: None,
        last_mark: None,
        end: base,
    };
    let mut at = header.len;
    while at + batch.len <= bytes.len() {
        let head = slice(bytes, at, batch.len)?;
        if head.iter().all(|&b| b == 0) {
            break;
        }
        let (crc_at, crc_len) = batch.span("crc")?;
        assert_eq!(crc_at, 0, "the batch checksum leads the header");
        assert_eq!(
            batch.uint(head, "crc")?,
            u64::from(crc32(seed, &[slice(head, crc_len, batch.len - crc_len)?])),
            "batch checksum at offset {at} of the segment at {base}"
        );
        let len = usize::try_from(batch.uint(head, "len")?)?;
        let kind = batch.uint(head, "kind")?;
        let count = batch.uint(head, "count")?;
        let first = batch.uint(head, "first_position")?;
        let durable = batch.uint(head, "durable_mark")?;
        assert_eq!(len % 8, 0);
        assert_eq!(first, walked.end, "batch at offset {at}");
        assert!(durable <= first, "durable mark {durable} above {first}");
        walked.last_mark = None;
        if kind == events_kind {
            assert!(count > 0);
            let mut record_at = at + batch.len;
            for _ in 0..count {
                let position = walked.end;
                let Some(expected) = sent.get(usize::try_from(position)?) else {
                    return fail(format!(
                        "a record at position {position} was never appended"
                    ));
                };
                let record = tail(bytes, record_at)?;
                let record_len = check_record(
                    doc,
                    &layouts.record,
                    record,
                    seed,
                    position,
                    expected,
                    times,
                )?;
                walked.offsets.push(u32::try_from(record_at)?);
                record_at += align8(record_len);
                walked.end += 1;
            }
            assert_eq!(record_at, at + len, "batch length at offset {at}");
            at += len;
        } else if kind == seal_kind || kind == mark_kind {
            assert_eq!((count, len), (0, batch.len), "kind {kind} at offset {at}");
            at += len;
            if kind == seal_kind {
                walked.seal = Some(((at - len) as u64, first));
                break;
            }
            walked.last_mark = Some((first, durable));
        } else {
            return fail(format!("batch kind {kind} at offset {at}"));
        }
    }
    let rest = bytes.get(at..).unwrap_or_default();
    assert!(
        rest.iter().all(|&b| b == 0),
        "bytes after the last batch of the segment at {base} are not zero"
    );
    Ok(walked)
}

/// The streams of a segment in name order, each with (version, slot) of
/// its events there.
fn segment_streams<'a>(
    walked: &Walked,
    sent: &'a [Sent],
) -> TestResult<BTreeMap<&'a str, Vec<(u64, u32)>>> {
    let mut streams: BTreeMap<&str, Vec<(u64, u32)>> = BTreeMap::new();
    for slot in 0..walked.offsets.len() {
        let Some(event) = sent.get(usize::try_from(walked.base)? + slot) else {
            return fail(format!("no event at slot {slot}"));
        };
        streams
            .entry(event.stream.as_str())
            .or_default()
            .push((event.version, u32::try_from(slot)?));
    }
    Ok(streams)
}

/// A directory entry: (ordinal, slots_from, first_version).
type Run = (u64, u64, u64);

/// The directory of each stream of segment `k`: its runs in the segments
/// before, the newest `INDEX_DIRECTORY_RUNS`, oldest first.
fn directories<'a>(
    doc: &Doc,
    walked: &[Walked],
    k: usize,
    sent: &'a [Sent],
) -> TestResult<BTreeMap<&'a str, Vec<Run>>> {
    let mut runs: BTreeMap<&str, Vec<Run>> = BTreeMap::new();
    for (ordinal, walk) in walked.iter().enumerate().take(k) {
        let mut slots_from = 0u64;
        for (name, events) in segment_streams(walk, sent)? {
            let first = events.first().map_or(0, |e| e.0);
            runs.entry(name)
                .or_default()
                .push((ordinal as u64, slots_from, first));
            slots_from += events.len() as u64;
        }
    }
    let most = doc.usize("INDEX_DIRECTORY_RUNS")?;
    for list in runs.values_mut() {
        let excess = list.len().saturating_sub(most);
        list.drain(..excess);
    }
    Ok(runs)
}

/// The tags of a tags section.
fn tags_of(section: &[u8]) -> TestResult<Vec<Vec<u8>>> {
    let mut tags = Vec::new();
    let mut at = 0;
    while at < section.len() {
        let len = usize::from(u16::from_le_bytes(slice(section, at, 2)?.try_into()?));
        tags.push(slice(section, at + 2, len)?.to_vec());
        at += 2 + len;
    }
    Ok(tags)
}

/// Checks a sealed segment's postings file against the events sent to it.
fn check_postings_file(doc: &Doc, bytes: &[u8], walked: &Walked, sent: &[Sent]) -> TestResult {
    let seed = segment_seed(doc, walked.base)?;
    // (kind, key) -> slots, in the documented order.
    let mut lists: BTreeMap<(u64, Vec<u8>), Vec<u32>> = BTreeMap::new();
    for slot in 0..walked.offsets.len() {
        let Some(event) = sent.get(walked.base as usize + slot) else {
            return fail(format!("no event at slot {slot}"));
        };
        let slot = u32::try_from(slot)?;
        lists
            .entry((
                doc.int("POSTINGS_KIND_TYPE")?,
                event.event_type.as_bytes().to_vec(),
            ))
            .or_default()
            .push(slot);
        for tag in tags_of(&event.tags)? {
            lists
                .entry((doc.int("POSTINGS_KIND_TAG")?, tag))
                .or_default()
                .push(slot);
        }
    }
    let header_len = doc.usize("POSTINGS_HEADER_LEN")?;
    let header = doc.layout("Postings file header", header_len)?;
    assert_eq!(header.raw(bytes, "magic")?, doc.bytes("POSTINGS_MAGIC")?);
    assert_eq!(
        header.uint(bytes, "format_version")?,
        doc.int("POSTINGS_FORMAT_VERSION")?
    );
    assert_eq!(header.uint(bytes, "header_len")?, header_len as u64);
    assert_eq!(header.uint(bytes, "base_position")?, walked.base);
    assert_eq!(header.uint(bytes, "slots")?, walked.offsets.len() as u64);
    assert_eq!(header.uint(bytes, "keys")?, lists.len() as u64);
    let key_bytes: usize = lists.keys().map(|k| k.1.len()).sum();
    let postings: usize = lists.values().map(Vec::len).sum();
    assert_eq!(header.uint(bytes, "key_bytes")?, key_bytes as u64);
    assert_eq!(header.uint(bytes, "postings")?, postings as u64);
    header.zero(bytes, "reserved")?;
    let body = bytes.get(header_len..).unwrap_or_default();
    assert_eq!(
        header.uint(bytes, "body_crc")?,
        u64::from(crc32(seed, &[body]))
    );
    assert_eq!(
        header.uint(bytes, "header_crc")?,
        u64::from(crc32(seed, &[slice(bytes, 0, 60)?]))
    );
    let entry_len = doc.usize("POSTINGS_KEY_ENTRY_LEN")?;
    let entry = doc.layout("Postings key entry", entry_len)?;
    let keys_at = header_len + lists.len() * entry_len;
    let postings_at = keys_at + key_bytes.next_multiple_of(4);
    assert_eq!(bytes.len(), postings_at + 4 * postings, "file length");
    let (mut key_offset, mut first_posting) = (0usize, 0usize);
    for (i, ((kind, key), slots)) in lists.iter().enumerate() {
        let at = header_len + i * entry_len;
        let bytes_of_entry = slice(bytes, at, entry_len)?;
        assert_eq!(entry.uint(bytes_of_entry, "kind")?, *kind, "entry {i}");
        entry.zero(bytes_of_entry, "reserved")?;
        assert_eq!(entry.uint(bytes_of_entry, "key_len")?, key.len() as u64);
        assert_eq!(entry.uint(bytes_of_entry, "key_offset")?, key_offset as u64);
        assert_eq!(
            entry.uint(bytes_of_entry, "first_posting")?,
            first_posting as u64
        );
        assert_eq!(entry.uint(bytes_of_entry, "count")?, slots.len() as u64);
        assert_eq!(slice(bytes, keys_at + key_offset, key.len())?, &key[..]);
        for (j, slot) in slots.iter().enumerate() {
            let at = postings_at + 4 * (first_posting + j);
            assert_eq!(
                slice(bytes, at, 4)?,
                slot.to_le_bytes(),
                "entry {i} slot {j}"
            );
        }
        key_offset += key.len();
        first_posting += slots.len();
    }
    Ok(())
}

fn check_index_file(
    doc: &Doc,
    bytes: &[u8],
    walked_all: &[Walked],
    k: usize,
    sent: &[Sent],
) -> TestResult {
    let Some(walked) = walked_all.get(k) else {
        return fail(format!("no segment {k}"));
    };
    let base = walked.base;
    let seed = segment_seed(doc, base)?;
    let n = walked.offsets.len();
    // The segment's streams in name order, each with (version, slot).
    let streams = segment_streams(walked, sent)?;
    let stream_count = streams.len();
    let directories = directories(doc, walked_all, k, sent)?;
    let fields_len = doc.usize("INDEX_STREAM_RECORD_LEN")?;
    let run_len = doc.usize("INDEX_DIRECTORY_ENTRY_LEN")?;
    let runs_of = |name: &str| directories.get(name).map_or(0, Vec::len);
    let streams_len: usize = streams
        .keys()
        .map(|name| fields_len + align8(name.len()) + run_len * runs_of(name))
        .sum();

    let header = doc.layout("Index file header", format::INDEX_HEADER_LEN)?;
    assert_eq!(header.raw(bytes, "magic")?, doc.bytes("INDEX_MAGIC")?);
    assert_eq!(
        header.uint(bytes, "format_version")?,
        doc.int("INDEX_FORMAT_VERSION")?
    );
    assert_eq!(
        header.uint(bytes, "hash_kind")?,
        doc.int("INDEX_HASH_XXH3")?
    );
    header.zero(bytes, "flags")?;
    assert_eq!(header.uint(bytes, "base_position")?, base);
    assert_eq!(header.uint(bytes, "count")?, n as u64);
    let Some((seal_offset, _)) = walked.seal else {
        return fail(format!(
            "the segment at {base} has an index file but no seal"
        ));
    };
    assert_eq!(header.uint(bytes, "seal_offset")?, seal_offset);
    let t = usize::try_from(header.uint(bytes, "table_len")?)?;
    assert_eq!(
        t,
        (stream_count + stream_count / 3 + 1).next_power_of_two(),
        "stream table size"
    );
    assert_eq!(header.uint(bytes, "stream_count")?, stream_count as u64);
    let block_len = doc.usize("INDEX_BLOOM_BLOCK_LEN")?;
    let b = usize::try_from(header.uint(bytes, "bloom_blocks")?)?;
    assert_eq!(
        b,
        (n * doc.usize("INDEX_BLOOM_BITS_PER_ID")?)
            .div_ceil(block_len * 8)
            .max(1),
        "Bloom blocks"
    );
    assert_eq!(header.uint(bytes, "streams_len")?, streams_len as u64);
    assert_eq!(
        header.uint(bytes, "header_crc")?,
        u64::from(crc32(seed, &[header.before(bytes, "header_crc")?])),
        "index header checksum"
    );
    let body = tail(bytes, header.len)?;
    assert_eq!(
        header.uint(bytes, "body_crc")?,
        u64::from(crc32(seed, &[body])),
        "index body checksum"
    );

    // The sections, in documented order, each padded to a multiple of 8.
    let rows = doc.table("Index file body")?;
    let columns = ["section", "entry size", "entries", "content"].map(String::from);
    assert_eq!(rows.first().map(|r| r.as_slice()), Some(&columns[..]));
    let mut sections: HashMap<&str, (usize, usize, usize)> = HashMap::new();
    let mut at = header.len;
    for row in rows.iter().skip(1) {
        let [name, entry_size, entries, _content] = row.as_slice() else {
            return fail(format!("malformed index body row {row:?}"));
        };
        let entry_size: usize = entry_size.parse()?;
        let entries = match entries.as_str() {
            "n" => n,
            "t" => t,
            "b" => b,
            "streams_len" => streams_len,
            other => return fail(format!("index section count {other}")),
        };
        let len = entry_size * entries;
        let padding = slice(bytes, at + len, align8(len) - len)?;
        assert!(padding.iter().all(|&b| b == 0), "padding of {name}");
        sections.insert(name.as_str(), (at, entry_size, entries));
        at += align8(len);
    }
    assert_eq!(at, bytes.len(), "index file length");
    let section = |name: &str, size: usize| -> TestResult<usize> {
        match sections.get(name) {
            Some(&(start, entry_size, _)) if entry_size == size => Ok(start),
            Some(&(_, entry_size, _)) => fail(format!(
                "section {name} has {entry_size}-byte entries, expected {size}"
            )),
            None => fail(format!("no index section {name}")),
        }
    };

    let offsets = section("offsets", 4)?;
    for (i, offset) in walked.offsets.iter().enumerate() {
        assert_eq!(
            u32_le(bytes, offsets + 4 * i)?,
            *offset,
            "offset of slot {i}"
        );
    }

    let slots = section("slots", 8)?;
    let mut k = 0;
    for events in streams.values() {
        for &(_, slot) in events {
            let offset = walked.offsets.get(usize::try_from(slot)?).copied();
            assert_eq!(u32_le(bytes, slots + 8 * k)?, slot, "slots entry {k}");
            assert_eq!(
                Some(u32_le(bytes, slots + 8 * k + 4)?),
                offset,
                "slots entry {k}"
            );
            k += 1;
        }
    }

    let entry_len = doc.usize("INDEX_TABLE_ENTRY_LEN")?;
    let table = section("stream_table", entry_len)?;
    let entry = doc.layout("Stream table entry", entry_len)?;
    // Insert in name order with linear probing, as the document says.
    let mut placed: Vec<Option<&str>> = vec![None; t];
    for name in streams.keys() {
        let mut i = xxh3_64(name.as_bytes()) as usize & (t - 1);
        while placed.get(i).is_some_and(Option::is_some) {
            i = (i + 1) & (t - 1);
        }
        if let Some(free) = placed.get_mut(i) {
            *free = Some(name);
        }
    }
    let streams_at = section("streams", 1)?;
    let record = doc.layout("Stream record", fields_len)?;
    let run = doc.layout("Directory entry", run_len)?;
    let mut slots_from = 0u64;
    let mut records: HashMap<&str, (u64, u64)> = HashMap::new();
    let mut record_at = 0u64;
    for (name, events) in &streams {
        records.insert(name, (slots_from, record_at));
        slots_from += events.len() as u64;
        record_at += (fields_len + align8(name.len()) + run_len * runs_of(name)) as u64;
    }
    for (i, owner) in placed.iter().enumerate() {
        let raw = slice(bytes, table + entry_len * i, entry_len)?;
        let Some(name) = owner else {
            assert!(raw.iter().all(|&b| b == 0), "unused table entry {i}");
            continue;
        };
        let (events, (from, at)) = match (streams.get(name), records.get(name)) {
            (Some(events), Some(found)) => (events, *found),
            _ => return fail(format!("lost stream {name}")),
        };
        assert_eq!(
            entry.uint(raw, "name_hash")?,
            xxh3_64(name.as_bytes()),
            "{name}"
        );
        assert_eq!(entry.uint(raw, "record_offset")?, at, "{name}");
        assert_eq!(entry.uint(raw, "occupied")?, 1, "{name}");

        let fields = slice(bytes, streams_at + usize::try_from(at)?, fields_len)?;
        let first_version = events.first().map(|e| e.0);
        assert_eq!(Some(record.uint(fields, "first_version")?), first_version);
        assert_eq!(record.uint(fields, "slots_from")?, from, "{name}");
        assert_eq!(record.uint(fields, "count")?, events.len() as u64, "{name}");
        assert_eq!(
            record.uint(fields, "name_len")?,
            name.len() as u64,
            "{name}"
        );
        let runs = directories.get(name).cloned().unwrap_or_default();
        assert_eq!(record.uint(fields, "runs")?, runs.len() as u64, "{name}");
        record.zero(fields, "reserved")?;
        assert_eq!(
            record.variable,
            ["name", "padding", "directory"],
            "the stream record's variable fields"
        );
        let name_at = streams_at + usize::try_from(at)? + fields_len;
        assert_eq!(slice(bytes, name_at, name.len())?, name.as_bytes(), "name");
        let padding = slice(bytes, name_at + name.len(), align8(name.len()) - name.len())?;
        assert!(padding.iter().all(|&b| b == 0), "padding after {name}");
        let runs_at = name_at + align8(name.len());
        for (j, (segment, slots_from, first_version)) in runs.iter().enumerate() {
            let raw = slice(bytes, runs_at + run_len * j, run_len)?;
            assert_eq!(run.uint(raw, "segment")?, *segment, "{name} run {j}");
            assert_eq!(run.uint(raw, "slots_from")?, *slots_from, "{name} run {j}");
            assert_eq!(
                run.uint(raw, "first_version")?,
                *first_version,
                "{name} run {j}"
            );
        }
    }

    let ids = section("ids", 16)?;
    let id_slots = section("id_slots", 4)?;
    let mut sorted: Vec<(u128, u32)> = Vec::new();
    for slot in 0..n {
        if let Some(event) = sent.get(usize::try_from(base)? + slot) {
            sorted.push((event.id.as_u128(), u32::try_from(slot)?));
        }
    }
    sorted.sort_unstable();
    for (i, (id, slot)) in sorted.iter().enumerate() {
        let stored = slice(bytes, ids + 16 * i, 16)?;
        assert_eq!(stored, id.to_le_bytes(), "id {i}");
        let mut reversed = stored.to_vec();
        reversed.reverse();
        assert_eq!(reversed, Uuid::from_u128(*id).as_bytes(), "id {i}");
        assert_eq!(u32_le(bytes, id_slots + 4 * i)?, *slot, "slot of id {i}");
    }

    let bloom = section("bloom", block_len)?;
    let mut expected = vec![0u8; b * block_len];
    let multiplier = doc.int("INDEX_BLOOM_MULTIPLIER")?;
    for (id, _) in &sorted {
        let hash = xxh3_64(&id.to_le_bytes());
        let block = ((hash >> 32) * b as u64) >> 32;
        let mut x = hash;
        for i in 0..doc.int("INDEX_BLOOM_PROBES")? {
            x = x.wrapping_mul(multiplier).wrapping_add(i + 1);
            let bit = usize::try_from(x >> 55)?;
            let byte = usize::try_from(block)? * block_len + bit / 8;
            if let Some(target) = expected.get_mut(byte) {
                *target |= 1 << (bit % 8);
            }
        }
    }
    assert_eq!(
        slice(bytes, bloom, b * block_len)?,
        &expected[..],
        "Bloom filter"
    );

    Ok(())
}

fn check_catalog(doc: &Doc, bytes: &[u8], walked: &[Walked], sent: &[Sent]) -> TestResult {
    let sealed: Vec<&Walked> = walked.iter().filter(|w| w.seal.is_some()).collect();
    let Some(end_position) = sealed.last().map(|w| w.end) else {
        return fail("no sealed segment");
    };
    // Per stream: first and last ordinal, events in the covered segments.
    let mut expected: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
    for (ordinal, segment) in sealed.iter().enumerate() {
        for position in segment.base..segment.end {
            let Some(event) = sent.get(usize::try_from(position)?) else {
                return fail(format!("no event at {position}"));
            };
            let entry = expected.entry(event.stream.as_str()).or_insert((
                ordinal as u64,
                ordinal as u64,
                0,
            ));
            entry.1 = ordinal as u64;
            entry.2 += 1;
        }
    }
    let seed = doc.u32("CATALOG_CRC_SEED")?;
    let header = doc.layout("Catalogue header", format::CATALOG_HEADER_LEN)?;
    assert_eq!(header.raw(bytes, "magic")?, doc.bytes("CATALOG_MAGIC")?);
    assert_eq!(
        header.uint(bytes, "format_version")?,
        doc.int("CATALOG_FORMAT_VERSION")?
    );
    assert_eq!(header.uint(bytes, "covered_segments")?, sealed.len() as u64);
    assert_eq!(header.uint(bytes, "end_position")?, end_position);
    assert_eq!(header.uint(bytes, "stream_count")?, expected.len() as u64);
    let body = tail(bytes, header.len)?;
    assert_eq!(header.uint(bytes, "body_len")?, body.len() as u64);
    assert_eq!(
        header.uint(bytes, "body_crc")?,
        u64::from(crc32(seed, &[body])),
        "catalogue body checksum"
    );
    header.zero(bytes, "reserved")?;
    assert_eq!(
        header.uint(bytes, "header_crc")?,
        u64::from(crc32(seed, &[header.before(bytes, "header_crc")?])),
        "catalogue header checksum"
    );

    let entry = doc.layout("Catalogue entry", doc.usize("CATALOG_ENTRY_HEADER_LEN")?)?;
    let mut at = 0;
    for (name, (first, last, count)) in &expected {
        let bytes = tail(body, at)?;
        assert_eq!(entry.uint(bytes, "name_len")?, name.len() as u64, "{name}");
        entry.zero(bytes, "reserved_2")?;
        assert_eq!(entry.uint(bytes, "first_segment")?, *first, "{name}");
        assert_eq!(entry.uint(bytes, "last_segment")?, *last, "{name}");
        entry.zero(bytes, "reserved_12")?;
        assert_eq!(entry.uint(bytes, "next_version")?, *count, "{name}");
        let unpadded = entry.len + name.len();
        let padding = vec![0u8; align8(unpadded) - unpadded];
        let end =
            entry.check_variable(bytes, &[("name", name.as_bytes()), ("padding", &padding)])?;
        at += end;
    }
    assert_eq!(at, body.len(), "catalogue body length");
    Ok(())
}

fn check_snapshot(doc: &Doc, bytes: &[u8], sent: &[Sent], times: (u64, u64)) -> TestResult {
    let Some(event) = sent
        .iter()
        .find(|e| e.stream == SNAPSHOT_STREAM && e.version == SNAPSHOT_VERSION)
    else {
        return fail("the snapshot's event was never appended");
    };
    let layout = doc.layout("Snapshot file", format::SNAPSHOT_HEADER_LEN)?;
    assert_eq!(layout.raw(bytes, "magic")?, doc.bytes("SNAPSHOT_MAGIC")?);
    assert_eq!(
        layout.uint(bytes, "format_version")?,
        doc.int("SNAPSHOT_FORMAT_VERSION")?
    );
    assert_eq!(
        layout.uint(bytes, "name_len")?,
        SNAPSHOT_STREAM.len() as u64
    );
    assert_eq!(layout.uint(bytes, "version")?, SNAPSHOT_VERSION);
    assert_eq!(layout.u128(bytes, "event_id")?, event.id.as_u128());
    let saved = layout.uint(bytes, "saved_at_nanos")?;
    assert!((times.0..=times.1).contains(&saved), "saved at {saved}");
    assert_eq!(layout.uint(bytes, "data_len")?, SNAPSHOT_DATA.len() as u64);
    assert_eq!(
        layout.uint(bytes, "header_crc")?,
        u64::from(crc32(0, &[layout.before(bytes, "header_crc")?])),
        "snapshot header checksum"
    );
    assert_eq!(
        layout.uint(bytes, "body_crc")?,
        u64::from(crc32(0, &[SNAPSHOT_STREAM.as_bytes(), SNAPSHOT_DATA])),
        "snapshot body checksum"
    );
    let end = layout.check_variable(
        bytes,
        &[
            ("name", SNAPSHOT_STREAM.as_bytes()),
            ("data", SNAPSHOT_DATA),
        ],
    )?;
    assert_eq!(end, bytes.len(), "snapshot file length");
    Ok(())
}

fn check_checkpoint(doc: &Doc, bytes: &[u8], sent: &[Sent], times: (u64, u64)) -> TestResult {
    let Some(before) = sent.get(usize::try_from(CHECKPOINT_POSITION - 1)?) else {
        return fail("the event before the checkpoint was never appended");
    };
    let layout = doc.layout("Checkpoint file", format::CHECKPOINT_HEADER_LEN)?;
    assert_eq!(layout.raw(bytes, "magic")?, doc.bytes("CHECKPOINT_MAGIC")?);
    assert_eq!(
        layout.uint(bytes, "format_version")?,
        doc.int("CHECKPOINT_FORMAT_VERSION")?
    );
    assert_eq!(layout.uint(bytes, "name_len")?, CHECKPOINT.len() as u64);
    assert_eq!(layout.uint(bytes, "position")?, CHECKPOINT_POSITION);
    let saved = layout.uint(bytes, "saved_at_nanos")?;
    assert!((times.0..=times.1).contains(&saved), "saved at {saved}");
    assert_eq!(layout.u128(bytes, "event_id")?, before.id.as_u128());
    assert_eq!(
        layout.uint(bytes, "crc")?,
        u64::from(crc32(
            0,
            &[layout.before(bytes, "crc")?, CHECKPOINT.as_bytes()]
        )),
        "checkpoint checksum"
    );
    let end = layout.check_variable(bytes, &[("name", CHECKPOINT.as_bytes())])?;
    assert_eq!(end, bytes.len(), "checkpoint file length");
    Ok(())
}

/// Every file under `dir`, as a path relative to it with `/` separators.
fn files_under(dir: &Path, prefix: &str, out: &mut Vec<String>) -> TestResult {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            return fail("a file name that is not UTF-8");
        };
        let path = format!("{prefix}{name}");
        if entry.file_type()?.is_dir() {
            files_under(&entry.path(), &format!("{path}/"), out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// A file's path in the directory table's terms: 20-digit numbers and
/// stems replaced by their placeholders.
fn generic(path: &str) -> String {
    let streams = STREAMS.map(stem);
    path.split('/')
        .map(|part| {
            if streams.iter().any(|s| s == part) {
                return "<stream stem>".to_string();
            }
            if part == format!("{}.ckpt", stem(CHECKPOINT)) {
                return "<name stem>.ckpt".to_string();
            }
            match part.get(..20) {
                Some(digits) if digits.bytes().all(|b| b.is_ascii_digit()) => {
                    format!("<20 digits>{}", part.get(20..).unwrap_or_default())
                }
                _ => part.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn a_real_store_matches_the_documented_layouts() -> TestResult {
    let doc = Doc::parse(DOC)?;
    let layouts = Layouts {
        segment: doc.layout("Segment header", format::SEGMENT_HEADER_LEN)?,
        batch: doc.layout("Batch header", format::BATCH_HEADER_LEN)?,
        record: doc.layout("Record", format::RECORD_HEADER_LEN)?,
    };
    let dir = tempfile::tempdir()?;
    let t0 = now_nanos()?;
    let store = Store::open(dir.path(), options())?;
    let sent = fill(&store)?;

    // LOCK holds the writer's pid while the store is open.
    let lock = fs::read_to_string(dir.path().join(evstore::LOCK_FILE))?;
    assert_eq!(lock, std::process::id().to_string());

    store.save_snapshot(SNAPSHOT_STREAM, SNAPSHOT_VERSION, SNAPSHOT_DATA)?;
    store.save_checkpoint(CHECKPOINT, CHECKPOINT_POSITION)?;
    let info = store.log_info();
    store.close()?;
    let times = (t0, now_nanos()?);

    // The files are the ones the directory table names, and every kind of
    // file it names is there.
    let mut files = Vec::new();
    files_under(dir.path(), "", &mut files)?;
    let documented: BTreeSet<String> = doc
        .table("Directory layout")?
        .iter()
        .skip(1)
        .filter_map(|row| row.first().cloned())
        .collect();
    let found: BTreeSet<String> = files.iter().map(|f| generic(f)).collect();
    for path in &found {
        assert!(
            documented.contains(path),
            "{path} is not in the directory table"
        );
    }
    for path in &documented {
        if !path.ends_with('/') && !path.contains('*') {
            assert!(found.contains(path), "no file of the kind {path}");
        }
    }

    // Segments: every record, batch, mark and seal.
    let segments_dir = dir.path().join(evstore::SEGMENTS_DIR);
    let mut walked: Vec<Walked> = Vec::new();
    for segment in &info.segments {
        let name = format!("{:020}.log", segment.base_position);
        assert_eq!(segment.path, segments_dir.join(&name));
        let bytes = fs::read(segments_dir.join(&name))?;
        let expected_base = walked.last().map_or(0, |w: &Walked| w.end);
        assert_eq!(
            segment.base_position, expected_base,
            "segments follow one another"
        );
        let walk = walk_segment(&doc, &layouts, &bytes, segment.base_position, &sent, times)?;
        assert_eq!(walk.seal.is_some(), segment.sealed, "{name}");
        if let Some((_, next)) = walk.seal {
            assert_eq!(next, walk.end, "the seal names the next position");
        }
        walked.push(walk);
    }
    let Some(last) = walked.last() else {
        return fail("no segment");
    };
    assert!(walked.len() >= 3, "the workload spans several segments");
    assert!(last.seal.is_none(), "the last segment is not sealed");
    assert_eq!(last.end, sent.len() as u64, "every event is in a segment");
    assert_eq!(
        last.last_mark,
        Some((last.end, last.end)),
        "a clean close leaves a mark vouching for every event"
    );

    // Index files of the sealed segments.
    for (k, (segment, walk)) in info.segments.iter().zip(&walked).enumerate() {
        let path = segments_dir.join(format!("{:020}.idx", walk.base));
        if walk.seal.is_none() {
            assert!(!path.exists(), "an unsealed segment has no index file");
            continue;
        }
        assert_eq!(segment.index_file.as_deref(), Some(path.as_path()));
        check_index_file(&doc, &fs::read(&path)?, &walked, k, &sent)?;
        let postings = segments_dir.join(format!("{:020}.tags", walk.base));
        check_postings_file(&doc, &fs::read(&postings)?, walk, &sent)?;
    }

    let catalog = fs::read(segments_dir.join(format::CATALOG_FILE))?;
    check_catalog(&doc, &catalog, &walked, &sent)?;

    let snapshot = dir
        .path()
        .join(evstore::SNAPSHOTS_DIR)
        .join(stem(SNAPSHOT_STREAM))
        .join(format!("{SNAPSHOT_VERSION:020}.snap"));
    check_snapshot(&doc, &fs::read(snapshot)?, &sent, times)?;

    let checkpoint = dir
        .path()
        .join(evstore::CHECKPOINTS_DIR)
        .join(format!("{}.ckpt", stem(CHECKPOINT)));
    check_checkpoint(&doc, &fs::read(checkpoint)?, &sent, times)?;

    check_temporary_files(&doc, dir.path(), &sent)
}

/// Leaves a file under every temporary name the document lists, then does
/// what the document says removes it, and checks that it is gone and the
/// store unharmed.
fn check_temporary_files(doc: &Doc, dir: &Path, sent: &[Sent]) -> TestResult {
    let rows = doc.table("Temporary files")?;
    let mut left = Vec::new();
    for row in rows.iter().skip(1) {
        let Some(name) = row.first() else {
            continue;
        };
        let path = name
            .replace("<base>", &format!("{:020}", 0))
            .replace(
                "<stem>",
                &if name.starts_with(evstore::SNAPSHOTS_DIR) {
                    stem(SNAPSHOT_STREAM)
                } else {
                    stem(CHECKPOINT)
                },
            )
            .replace("<version>", &format!("{:020}", SNAPSHOT_VERSION + 5));
        let path = dir.join(path);
        fs::write(&path, b"left by an interrupted write")?;
        left.push(path);
    }
    assert!(left.len() >= 5, "temporary files {left:?}");

    let store = Store::open(dir, options())?;
    store.save_snapshot(SNAPSHOT_STREAM, SNAPSHOT_VERSION + 1, SNAPSHOT_DATA)?;
    store.save_checkpoint(CHECKPOINT, CHECKPOINT_POSITION + 1)?;
    for path in &left {
        assert!(!path.exists(), "{} was not removed", path.display());
    }
    let all = store.read_all(0, Direction::Forward, usize::MAX)?;
    assert_eq!(all.len(), sent.len());
    for (event, expected) in all.iter().zip(sent) {
        assert_eq!(event.id, expected.id);
        assert_eq!(&event.payload[..], &expected.payload[..]);
    }
    assert_eq!(
        store.load_checkpoint(CHECKPOINT)?,
        Some(CHECKPOINT_POSITION + 1)
    );
    store.close()?;
    Ok(())
}

#[test]
fn the_largest_append_leaves_room_for_a_mark_and_the_seal() -> TestResult {
    let doc = Doc::parse(DOC)?;
    let batch = doc.layout("Batch header", format::BATCH_HEADER_LEN)?;
    let room = usize::try_from(SEGMENT_SIZE)?
        - doc.usize("SEGMENT_HEADER_LEN")?
        - doc.usize("TAIL_RESERVE")?;
    // One event of stream "x", type "T": a batch of exactly `room` bytes.
    let payload = room - doc.usize("BATCH_HEADER_LEN")? - doc.usize("RECORD_HEADER_LEN")? - 2;
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path(), options())?;
    let too_large = EventData::new("T", vec![7u8; payload + 1]);
    match store.append("x", ExpectedVersion::Any, &[too_large]) {
        Err(Error::EventTooLarge { .. } | Error::BatchTooLarge { .. }) => {}
        other => return fail(format!("an append past the room was {other:?}")),
    }
    store.append(
        "x",
        ExpectedVersion::Any,
        &[EventData::new("T", vec![7u8; payload])],
    )?;
    store.append("x", ExpectedVersion::Any, &[EventData::new("T", &b"y"[..])])?;
    store.close()?;

    let bytes = fs::read(
        dir.path()
            .join(evstore::SEGMENTS_DIR)
            .join(format!("{:020}.log", 0)),
    )?;
    let header_len = doc.usize("SEGMENT_HEADER_LEN")?;
    let first = slice(&bytes, header_len, batch.len)?;
    assert_eq!(batch.uint(first, "len")?, room as u64);
    assert_eq!(batch.uint(first, "kind")?, doc.int("BATCH_KIND_EVENTS")?);
    // Then a mark and the seal fill the segment to the last byte.
    let mark = slice(&bytes, header_len + room, batch.len)?;
    assert_eq!(batch.uint(mark, "kind")?, doc.int("BATCH_KIND_MARK")?);
    let seal = slice(&bytes, header_len + room + batch.len, batch.len)?;
    assert_eq!(batch.uint(seal, "kind")?, doc.int("BATCH_KIND_SEAL")?);
    assert_eq!(batch.uint(seal, "first_position")?, 1);
    assert_eq!(
        header_len + room + 2 * batch.len,
        usize::try_from(SEGMENT_SIZE)?
    );
    Ok(())
}
