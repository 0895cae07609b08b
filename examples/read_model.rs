//! A read model of orders per customer, fed by projections while writers
//! append, kept correct across a crash and a restart in both of the ways a
//! projection can be.
//!
//! * **At least once**: `Store::run_projection` with its durable
//!   checkpoint. The handler upserts each order into SQLite (one committed,
//!   synced transaction per event), keyed by the order's stream and guarded
//!   by its version, so an event handled again after a restart changes
//!   nothing. The checkpoint trails the handler, so after a crash the events
//!   since the last checkpoint are delivered again.
//! * **Exactly once**: a model held in memory whose saved form is a single
//!   file, written through a temporary file, synced and renamed into place,
//!   holding the totals per customer *and* the position they include. On
//!   restart it loads the file and starts the projection with
//!   `ProjectionStart::At(position)`, so the events after the save are
//!   applied once, to the state as it was at the save.
//!
//! The run: a child process runs the writers and both projections and is
//! killed with SIGKILL in the middle; the store is reopened, both
//! projections resume (from the checkpoint, from the saved position) while
//! writers append more, and then stop cleanly; the store is reopened again,
//! both resume exactly where they stopped and catch up with a last round of
//! appends. Both models are then compared with the totals recomputed from a
//! full `read_all`; the process exits with status 1 if either differs.
//!
//! `cargo run --release --example read_model [DIR]` (a temporary directory
//! when DIR is not given; an existing DIR is carried on from where it was).

use evstore::{
    Direction, EventData, ExpectedVersion, Filter, HandlerError, Options, ProjectionHandle,
    ProjectionOptions, ProjectionStart, RecordedEvent, Store,
};
use rusqlite::{params, Connection};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const AT_LEAST_ONCE: &str = "orders-sqlite";
const EXACTLY_ONCE: &str = "orders-file";
const WRITERS: usize = 2;
const CUSTOMERS: u64 = 12;
/// The exactly-once model saves its file after this many events.
const SAVE_EVERY: u64 = 250;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// What the read model knows about one customer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Totals {
    /// Orders placed and not cancelled.
    open: u64,
    cancelled: u64,
    /// Cents of the open orders.
    cents: u64,
}

type Model = BTreeMap<String, Totals>;

/// The events the read model handles: orders placed and cancelled.
fn order_filter() -> Filter {
    Filter::stream_prefix("order-").with_event_types(["OrderPlaced", "OrderCancelled"])
}

/// An order event's customer and amount (the payload is
/// `customer=<name> cents=<amount>`).
fn parse(event: &RecordedEvent) -> Result<(String, u64), Error> {
    let text = std::str::from_utf8(&event.payload)?;
    let mut customer = None;
    let mut cents = None;
    for field in text.split(' ') {
        match field.split_once('=') {
            Some(("customer", value)) => customer = Some(value.to_string()),
            Some(("cents", value)) => cents = Some(value.parse::<u64>()?),
            _ => {}
        }
    }
    match (customer, cents) {
        (Some(customer), Some(cents)) => Ok((customer, cents)),
        _ => Err(format!("bad payload at position {}: {text:?}", event.position).into()),
    }
}

/// Folds one order event into `model`.
fn apply(model: &mut Model, event: &RecordedEvent) -> Result<(), Error> {
    let (customer, cents) = parse(event)?;
    let totals = model.entry(customer).or_default();
    match &*event.event_type {
        "OrderPlaced" => {
            totals.open += 1;
            totals.cents += cents;
        }
        "OrderCancelled" => {
            totals.open -= 1;
            totals.cancelled += 1;
            totals.cents -= cents;
        }
        other => return Err(format!("unexpected event type {other}").into()),
    }
    Ok(())
}

// ---------------------------------------------------------------- writers

/// Appends orders from [`WRITERS`] threads: each places orders in new
/// streams, cancels every fourth order it placed, and appends an event the
/// read model ignores, `orders` times per thread.
fn write_orders(store: &Store, run: &str, phase: u32, orders: u64) {
    std::thread::scope(|scope| {
        for t in 0..WRITERS {
            scope.spawn(move || {
                for n in 0..orders {
                    let order = |n: u64| format!("order-{run}-{phase}-{t}-{n:05}");
                    let details = |n: u64| {
                        format!(
                            "customer=customer-{:02} cents={}",
                            (n * 7 + t as u64 * 5) % CUSTOMERS,
                            100 + (n * 337 + t as u64 * 101) % 9_900
                        )
                    };
                    store
                        .append(
                            &order(n),
                            ExpectedVersion::NoStream,
                            &[EventData::new("OrderPlaced", details(n))],
                        )
                        .expect("placing an order");
                    if n % 4 == 3 {
                        store
                            .append(
                                &order(n - 1),
                                ExpectedVersion::Exact(0),
                                &[EventData::new("OrderCancelled", details(n - 1))],
                            )
                            .expect("cancelling an order");
                    }
                    store
                        .append(
                            &format!("session-{run}-{t}"),
                            ExpectedVersion::Any,
                            &[EventData::new("PageViewed", "page=/orders")],
                        )
                        .expect("appending a page view");
                    std::thread::sleep(Duration::from_micros(300));
                }
            });
        }
    });
}

// ---------------------------------------------------------------- at least once

/// The at-least-once model: one row per order, in SQLite.
struct SqliteModel {
    conn: Connection,
}

impl SqliteModel {
    fn open(path: &Path) -> Result<Self, Error> {
        let conn = Connection::open(path)?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if mode != "wal" {
            return Err(format!("SQLite refused WAL mode ({mode})").into());
        }
        // Each upsert must be durable before the checkpoint can pass it.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS orders (
                 stream TEXT PRIMARY KEY,
                 customer TEXT NOT NULL,
                 cents INTEGER NOT NULL,
                 cancelled INTEGER NOT NULL,
                 version INTEGER NOT NULL
             )",
        )?;
        Ok(SqliteModel { conn })
    }

    /// Upserts the order `event` is about; false if the row already
    /// reflected it (the event was handled before).
    fn handle(&self, event: &RecordedEvent) -> Result<bool, Error> {
        let (customer, cents) = parse(event)?;
        let cancelled = &*event.event_type == "OrderCancelled";
        let changed = self.conn.execute(
            "INSERT INTO orders (stream, customer, cents, cancelled, version)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (stream) DO UPDATE
                 SET cancelled = excluded.cancelled, version = excluded.version
                 WHERE excluded.version > orders.version",
            params![
                &*event.stream,
                customer,
                cents as i64,
                cancelled,
                event.version as i64
            ],
        )?;
        Ok(changed > 0)
    }

    fn totals(&self) -> Result<Model, Error> {
        let mut stmt = self.conn.prepare(
            "SELECT customer, SUM(cancelled = 0), SUM(cancelled),
                    SUM(CASE WHEN cancelled THEN 0 ELSE cents END)
             FROM orders GROUP BY customer",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                Totals {
                    open: r.get::<_, i64>(1)? as u64,
                    cancelled: r.get::<_, i64>(2)? as u64,
                    cents: r.get::<_, i64>(3)? as u64,
                },
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn orders(&self) -> Result<u64, Error> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM orders", [], |r| r.get::<_, i64>(0))?
            as u64)
    }
}

/// Starts the at-least-once projection; `repeats` counts events it was
/// given again.
fn start_at_least_once(
    store: &Store,
    path: &Path,
    repeats: Arc<AtomicU64>,
) -> Result<ProjectionHandle, Error> {
    let model = SqliteModel::open(path)?;
    let options = ProjectionOptions::default()
        .filter(order_filter())
        .checkpoint_every(200)
        .checkpoint_interval(Duration::from_millis(200));
    Ok(store.run_projection(AT_LEAST_ONCE, options, move |event| {
        if !model.handle(event)? {
            repeats.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    })?)
}

// ---------------------------------------------------------------- exactly once

/// The exactly-once model: totals per customer and the position of the
/// first event they do not include, saved together.
#[derive(Debug, Default)]
struct FileModel {
    totals: Model,
    position: u64,
    unsaved: u64,
}

impl FileModel {
    const HEADER: &'static str = "orders per customer v1";

    fn load(path: &Path) -> Result<Self, Error> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e.into()),
        };
        let mut lines = text.lines();
        let bad = || format!("{} is not a saved model", path.display());
        if lines.next() != Some(Self::HEADER) {
            return Err(bad().into());
        }
        let position = lines
            .next()
            .and_then(|l| l.strip_prefix("position "))
            .ok_or_else(bad)?
            .parse()?;
        let mut totals = Model::new();
        for line in lines {
            let fields: Vec<&str> = line.split(' ').collect();
            let [customer, open, cancelled, cents] = fields[..] else {
                return Err(bad().into());
            };
            totals.insert(
                customer.to_string(),
                Totals {
                    open: open.parse()?,
                    cancelled: cancelled.parse()?,
                    cents: cents.parse()?,
                },
            );
        }
        Ok(FileModel {
            totals,
            position,
            unsaved: 0,
        })
    }

    /// Replaces the file atomically: written beside it, synced, renamed
    /// over it, and the directory synced.
    fn save(&mut self, path: &Path) -> std::io::Result<()> {
        let mut text = format!("{}\nposition {}\n", Self::HEADER, self.position);
        for (customer, t) in &self.totals {
            text.push_str(&format!(
                "{customer} {} {} {}\n",
                t.open, t.cancelled, t.cents
            ));
        }
        let temp = path.with_extension("tmp");
        let mut file = File::create(&temp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()?;
        self.unsaved = 0;
        Ok(())
    }
}

/// Loads the exactly-once model and starts its projection at the position
/// saved with it.
fn start_exactly_once(
    store: &Store,
    path: &Path,
) -> Result<(ProjectionHandle, Arc<Mutex<FileModel>>), Error> {
    let model = Arc::new(Mutex::new(FileModel::load(path)?));
    let from = model.lock().map_err(|_| "poisoned")?.position;
    let shared = Arc::clone(&model);
    let path = path.to_path_buf();
    let options = ProjectionOptions::default()
        .filter(order_filter())
        .checkpoint_interval(Duration::from_millis(200))
        .start(ProjectionStart::At(from));
    let handle = store.run_projection(EXACTLY_ONCE, options, move |event| {
        let mut model = shared.lock().map_err(|_| "poisoned")?;
        apply(&mut model.totals, event)?;
        model.position = event.position + 1;
        model.unsaved += 1;
        if model.unsaved >= SAVE_EVERY {
            model.save(&path)?;
        }
        Ok::<(), HandlerError>(())
    })?;
    Ok((handle, model))
}

/// Stops the exactly-once projection and saves its model with the position
/// the projection stopped at (events it skipped after the last one it
/// applied included).
fn stop_exactly_once(
    handle: ProjectionHandle,
    model: &Mutex<FileModel>,
    path: &Path,
) -> Result<u64, Error> {
    let stats = handle.stop()?;
    let mut model = model.lock().map_err(|_| "poisoned")?;
    model.position = stats.position;
    model.save(path)?;
    Ok(stats.position)
}

// ---------------------------------------------------------------- the run

struct Paths {
    store: PathBuf,
    sqlite: PathBuf,
    file: PathBuf,
}

impl Paths {
    fn new(root: &Path) -> Self {
        Paths {
            store: root.join("store"),
            sqlite: root.join("orders.sqlite"),
            file: root.join("orders-per-customer.model"),
        }
    }
}

fn end_of(store: &Store) -> u64 {
    store.last_position().map_or(0, |p| p + 1)
}

/// Waits until `handle` has gone past every event below `end`.
fn wait_caught_up(handle: &ProjectionHandle, end: u64) -> Result<(), Error> {
    let started = Instant::now();
    while handle.position() < end {
        if handle.is_finished() {
            return Err("a projection ended on its own".into());
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err(format!("a projection is stuck at {}", handle.position()).into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// The child: writers and both projections, until it is killed.
fn crash_child(root: &Path, run: &str) -> Result<(), Error> {
    let paths = Paths::new(root);
    let store = Store::open(&paths.store, Options::default())?;
    let repeats = Arc::new(AtomicU64::new(0));
    let at_least_once = start_at_least_once(&store, &paths.sqlite, repeats)?;
    let (exactly_once, model) = start_exactly_once(&store, &paths.file)?;
    let writers = {
        let store = store.clone();
        let run = run.to_string();
        std::thread::spawn(move || write_orders(&store, &run, 1, u64::MAX))
    };
    let start = at_least_once.position().min(exactly_once.position());
    let started = Instant::now();
    loop {
        let saves = model.lock().map_err(|_| "poisoned")?.position;
        if at_least_once.position() > start + 2_000 && saves > start + 1_000 {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) || writers.is_finished() {
            return Err("the child's projections made no progress".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    println!("running");
    std::io::stdout().flush()?;
    // The parent kills this process; nothing here ever returns.
    std::thread::sleep(Duration::from_secs(600));
    Err("not killed".into())
}

fn run(root: &Path) -> Result<bool, Error> {
    let paths = Paths::new(root);
    let run = format!(
        "{:x}",
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs()
    );
    println!("store in {}", paths.store.display());

    // 1. A child process appends and projects, and is killed mid-run.
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--crash-child")
        .arg(root)
        .arg(&run)
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    if let Some(stdout) = child.stdout.take() {
        // Whatever happens here, the child is killed below.
        let _ = BufReader::new(stdout).read_line(&mut line);
    }
    if line.trim() == "running" {
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill()?;
    let status = child.wait()?;
    if line.trim() != "running" {
        return Err(format!("the child failed ({status}): {line:?}").into());
    }

    // 2. Reopen; both projections resume while writers append more, then
    //    stop cleanly.
    let store = Store::open(&paths.store, Options::default())?;
    let checkpoint = store.load_checkpoint(AT_LEAST_ONCE)?.unwrap_or(0);
    let sqlite_orders = SqliteModel::open(&paths.sqlite)?.orders()?;
    let saved = FileModel::load(&paths.file)?.position;
    println!(
        "killed the child ({status}) while appending and projecting; reopened: {} events",
        end_of(&store)
    );
    println!(
        "  at-least-once: checkpoint {checkpoint}, {sqlite_orders} orders in SQLite; \
         exactly-once: file saved at position {saved}"
    );
    let repeats = Arc::new(AtomicU64::new(0));
    let at_least_once = start_at_least_once(&store, &paths.sqlite, Arc::clone(&repeats))?;
    let (exactly_once, model) = start_exactly_once(&store, &paths.file)?;
    write_orders(&store, &run, 2, 1_000);
    let end = end_of(&store);
    wait_caught_up(&at_least_once, end)?;
    wait_caught_up(&exactly_once, end)?;
    let stats = at_least_once.stop()?;
    let stopped_at = stop_exactly_once(exactly_once, &model, &paths.file)?;
    println!(
        "resumed both and caught up with 2,000 more orders: at-least-once handled {} events, \
         {} of them again (no effect); exactly-once restarted At({saved})",
        stats.events_handled,
        repeats.load(Ordering::Relaxed)
    );
    let checkpoint = store.load_checkpoint(AT_LEAST_ONCE)?.unwrap_or(0);
    println!("stopped cleanly at position {end}: checkpoint {checkpoint}, file at {stopped_at}");
    store.close()?;

    // 3. Reopen; both resume where they stopped and catch up once more.
    let store = Store::open(&paths.store, Options::default())?;
    let checkpoint = store.load_checkpoint(AT_LEAST_ONCE)?.unwrap_or(0);
    let saved = FileModel::load(&paths.file)?.position;
    let repeats = Arc::new(AtomicU64::new(0));
    let at_least_once = start_at_least_once(&store, &paths.sqlite, Arc::clone(&repeats))?;
    let (exactly_once, model) = start_exactly_once(&store, &paths.file)?;
    write_orders(&store, &run, 3, 250);
    let end = end_of(&store);
    wait_caught_up(&at_least_once, end)?;
    wait_caught_up(&exactly_once, end)?;
    let stats = at_least_once.stop()?;
    stop_exactly_once(exactly_once, &model, &paths.file)?;
    println!(
        "reopened: at-least-once resumed at checkpoint {checkpoint}, exactly-once At({saved}); \
         500 more orders, {} events handled, {} again",
        stats.events_handled,
        repeats.load(Ordering::Relaxed)
    );

    // Check both models against the totals recomputed from the whole log.
    let mut expected = Model::new();
    let filter = order_filter();
    let mut from = 0;
    loop {
        let page = store.read_all(from, Direction::Forward, 10_000)?;
        let Some(last) = page.last() else { break };
        from = last.position + 1;
        for event in page.iter().filter(|e| filter.matches(e)) {
            apply(&mut expected, event)?;
        }
    }
    let sqlite = SqliteModel::open(&paths.sqlite)?.totals()?;
    let file = FileModel::load(&paths.file)?.totals;
    let open: u64 = expected.values().map(|t| t.open).sum();
    let cancelled: u64 = expected.values().map(|t| t.cancelled).sum();
    let verdict = |model: &Model| {
        if *model == expected {
            "equal"
        } else {
            "DIFFERENT"
        }
    };
    println!(
        "{} events in the log; {open} open and {cancelled} cancelled orders of {} customers; \
         against a full read_all: at-least-once {}, exactly-once {}",
        end_of(&store),
        expected.len(),
        verdict(&sqlite),
        verdict(&file)
    );
    store.close()?;
    Ok(sqlite == expected && file == expected)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--crash-child") {
        let (Some(root), Some(run)) = (args.get(1), args.get(2)) else {
            eprintln!("usage: read_model --crash-child DIR RUN");
            std::process::exit(2);
        };
        if let Err(e) = crash_child(Path::new(root), run) {
            eprintln!("child: {e}");
        }
        std::process::exit(1);
    }
    let temp = tempfile::tempdir().expect("creating a temporary directory");
    let root = args
        .first()
        .map(PathBuf::from)
        .unwrap_or_else(|| temp.path().to_path_buf());
    if let Err(e) = fs::create_dir_all(&root) {
        eprintln!("creating {}: {e}", root.display());
        std::process::exit(1);
    }
    match run(&root) {
        Ok(true) => {}
        Ok(false) => {
            eprintln!("a read model differs from the recomputation");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
