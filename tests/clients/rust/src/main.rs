//! sqlite-cdc from Rust through rusqlite, the way README.md's "Load it" row
//! shows (run by tests/clients/client_test.sh as ctest's client.rust).
//!
//! usage: cdc_client_rust EXTENSION SQLITE3_SHELL DIR
//!
//! Opens DIR/app.db, loads the extension (rusqlite's `load_extension`
//! feature), captures a table, writes rows, reads them back with cdc_poll
//! (decoded with serde_json), acks, then consumes a change that the sqlite3
//! shell, another process that never loads the extension, commits while this
//! program blocks in cdc_wait. Then push delivery: a thread with a
//! connection of its own blocks in cdc_serve, which calls a Rust closure
//! registered as an SQL function once per batch, while the main thread keeps
//! writing on its connection and the sqlite3 shell writes from another
//! process; cdc_unlisten from the main connection stops it. Any mismatch
//! exits 1.

use rusqlite::functions::FunctionFlags;
use rusqlite::{params, Connection};
use serde_json::{json, Value};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{exit, Command};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

fn fail(msg: String) -> ! {
    eprintln!("client.rust: {}", msg);
    exit(1)
}

fn expect(what: &str, got: &Value, want: &Value) {
    if got != want {
        fail(format!("{}: got {}, want {}", what, got, want));
    }
}

fn poll(db: &Connection, consumer: &str) -> Vec<Value> {
    let text: String = db
        .query_row("SELECT cdc_poll(?1, 100)", [consumer], |r| r.get(0))
        .unwrap_or_else(|e| fail(format!("cdc_poll: {}", e)));
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Array(events)) => events,
        other => fail(format!("cdc_poll returned {:?}: {}", other, text)),
    }
}

fn ids(events: &[Value]) -> Vec<i64> {
    events
        .iter()
        .map(|e| {
            e["id"]
                .as_i64()
                .unwrap_or_else(|| fail(format!("no id in {}", e)))
        })
        .collect()
}

fn int(db: &Connection, sql: &str, args: impl rusqlite::Params) -> i64 {
    db.query_row(sql, args, |r| r.get(0))
        .unwrap_or_else(|e| fail(format!("{}: {}", sql, e)))
}

fn run(ext: &str, shell: &str, dir: &Path) -> rusqlite::Result<()> {
    let path = dir.join("app.db");
    let db = Connection::open(&path)?;
    // README.md's row.
    unsafe {
        db.load_extension_enable()?;
        db.load_extension(ext, None)?;
    }
    db.load_extension_disable()?;
    db.busy_timeout(Duration::from_secs(10))?;
    if int(&db, "PRAGMA busy_timeout", []) != 10000 {
        fail("busy_timeout not set".into());
    }
    let version: String = db.query_row(
        "SELECT sqlite_version() || ', cdc ' || cdc_version()",
        [],
        |r| r.get(0),
    )?;
    println!("client.rust: SQLite {}", version);

    db.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, price REAL)")?;
    expect(
        "cdc_setup",
        &json!(int(&db, "SELECT cdc_setup('items')", [])),
        &json!(1),
    );
    expect(
        "cdc_consumer_add",
        &json!(int(&db, "SELECT cdc_consumer_add('rust')", [])),
        &json!(0),
    );

    // Two rows in one transaction, then an update and a delete.
    let mut db = db;
    let tx = db.transaction()?;
    tx.execute(
        "INSERT INTO items VALUES(?1, ?2, ?3)",
        params![1, "pen", 1.5],
    )?;
    tx.execute(
        "INSERT INTO items VALUES(?1, ?2, ?3)",
        params![2, "ink", 0.1 + 0.2],
    )?;
    tx.commit()?;
    db.execute("UPDATE items SET name = 'ink, blue' WHERE id = 2", [])?;
    db.execute("DELETE FROM items WHERE id = 1", [])?;

    let events = poll(&db, "rust");
    let ops: Vec<Value> = events.iter().map(|e| e["op"].clone()).collect();
    expect(
        "ops in commit order",
        &json!(ops),
        &json!(["INSERT", "INSERT", "UPDATE", "DELETE"]),
    );
    let all = ids(&events);
    if !all.windows(2).all(|w| w[0] < w[1]) {
        fail(format!("ids not increasing: {:?}", all));
    }
    for e in &events {
        expect("table", &e["table"], &json!("items"));
        if e["ts"].as_i64().unwrap_or(0) <= 0 {
            fail(format!("ts in {}", e));
        }
    }
    expect("first before", &events[0]["before"], &Value::Null);
    expect(
        "first after",
        &events[0]["after"],
        &json!({"id": 1, "name": "pen", "price": 1.5}),
    );
    // serde_json parses the extension's shortest round-trip double exactly.
    expect(
        "second price",
        &events[1]["after"]["price"],
        &json!(0.1 + 0.2),
    );
    expect("update before", &events[2]["before"]["name"], &json!("ink"));
    expect(
        "update after",
        &events[2]["after"],
        &json!({"id": 2, "name": "ink, blue", "price": 0.1 + 0.2}),
    );
    expect("delete before", &events[3]["before"]["id"], &json!(1));
    expect("delete after", &events[3]["after"], &Value::Null);

    // Ack the first two: the same poll returns only the rest; ack them all.
    expect(
        "cdc_ack",
        &json!(int(&db, "SELECT cdc_ack('rust', ?1)", [all[1]])),
        &json!(all[1]),
    );
    expect(
        "after ack",
        &json!(ids(&poll(&db, "rust"))),
        &json!(all[2..]),
    );
    expect(
        "cdc_ack",
        &json!(int(&db, "SELECT cdc_ack('rust', ?1)", [all[3]])),
        &json!(all[3]),
    );
    expect("nothing pending", &json!(poll(&db, "rust")), &json!([]));

    // Another process (the sqlite3 shell, without the extension) commits
    // while this connection blocks in cdc_wait.
    let mut writer = Command::new(shell)
        .arg(&path)
        .arg(".timeout 10000")
        .arg("INSERT INTO items(id, name, price) VALUES(3, 'from the shell', -2.5)")
        .spawn()
        .unwrap_or_else(|e| fail(format!("starting {}: {}", shell, e)));
    let pending = int(&db, "SELECT cdc_wait('rust', 60000)", []);
    let status = writer
        .wait()
        .unwrap_or_else(|e| fail(format!("{}: {}", shell, e)));
    if !status.success() {
        fail(format!("the sqlite3 shell: {}", status));
    }
    expect("cdc_wait", &json!(pending), &json!(1));
    let events = poll(&db, "rust");
    if events.len() != 1 || ids(&events)[0] <= all[3] || events[0]["op"] != "INSERT" {
        fail(format!("the shell's change: {:?}", events));
    }
    expect(
        "shell after",
        &events[0]["after"],
        &json!({"id": 3, "name": "from the shell", "price": -2.5}),
    );
    let id = ids(&events)[0];
    expect(
        "cdc_ack",
        &json!(int(&db, "SELECT cdc_ack('rust', ?1)", [id])),
        &json!(id),
    );
    expect("nothing pending", &json!(poll(&db, "rust")), &json!([]));

    serve_push(&db, ext, shell, &path)
}

fn open_with_extension(path: &Path, ext: &str) -> rusqlite::Result<Connection> {
    let db = Connection::open(path)?;
    unsafe {
        db.load_extension_enable()?;
        db.load_extension(ext, None)?;
    }
    db.load_extension_disable()?;
    db.busy_timeout(Duration::from_secs(10))?;
    Ok(db)
}

// cdc_serve on a thread with a connection of its own; its function
// on_changes(batch) is a closure that decodes the batch and hands it to the
// main thread. A true result acks the batch.
fn serve_push(db: &Connection, ext: &str, shell: &str, path: &PathBuf) -> rusqlite::Result<()> {
    int(db, "SELECT cdc_consumer_add('rust_push', 'latest')", []);
    let (tx, rx) = mpsc::channel::<Vec<Value>>();
    let tx = AssertUnwindSafe(tx);
    let (ext2, path2) = (ext.to_string(), path.clone());
    let server = thread::spawn(move || -> rusqlite::Result<i64> {
        let conn = open_with_extension(&path2, &ext2)?;
        conn.create_scalar_function("on_changes", 1, FunctionFlags::SQLITE_UTF8, move |ctx| {
            let tx = &tx; // the whole wrapper (a closure would capture only its field)
            let batch: String = ctx.get(0)?;
            match serde_json::from_str::<Value>(&batch) {
                Ok(Value::Array(events)) => {
                    let _ = tx.0.send(events);
                    Ok(1i64)
                }
                _ => Ok(0i64), // not handled: the same batch again, later
            }
        })?;
        conn.query_row("SELECT cdc_serve('rust_push', 'on_changes')", [], |r| r.get(0))
    });

    // The main thread keeps writing on its connection while batches arrive,
    // and the sqlite3 shell writes from another process.
    let mut want: Vec<String> = Vec::new();
    for i in 10..20 {
        let name = format!("pushed {}", i);
        db.execute("INSERT INTO items VALUES(?1, ?2, ?3)", params![i, name, i as f64 / 4.0])?;
        want.push(name);
    }
    db.execute("UPDATE items SET price = price * 2 WHERE id = 10", [])?;
    want.push("pushed 10".into());
    let status = Command::new(shell)
        .arg(path)
        .arg(".timeout 10000")
        .arg("INSERT INTO items(id, name, price) VALUES(30, 'shell, pushed', 1.25)")
        .status()
        .unwrap_or_else(|e| fail(format!("starting {}: {}", shell, e)));
    if !status.success() {
        fail(format!("the sqlite3 shell: {}", status));
    }
    want.push("shell, pushed".into());

    let mut got: Vec<String> = Vec::new();
    let mut last = 0i64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < want.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let batch = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| fail(format!("pushed so far {:?}, want {:?}", got, want)));
        for e in batch {
            let id = e["id"].as_i64().unwrap_or_else(|| fail(format!("no id in {}", e)));
            if id <= last {
                fail(format!("pushed ids not increasing: {} after {}", id, last));
            }
            last = id;
            got.push(e["after"]["name"].as_str().unwrap_or("?").to_string());
        }
    }
    expect("pushed in commit order", &json!(got), &json!(want));

    // cdc_unlisten from the main connection: cdc_serve returns what it delivered.
    expect("cdc_unlisten", &json!(int(db, "SELECT cdc_unlisten('rust_push')", [])), &json!(1));
    let served = server
        .join()
        .unwrap_or_else(|_| fail("the serving thread panicked".into()))?;
    expect("cdc_serve's count", &json!(served), &json!(want.len()));
    // Acked as delivered (the acker commits a position at most once a second).
    let position = "SELECT value ->> 'position' FROM json_each(cdc_status(), '$.consumers') \
                    WHERE value ->> 'name' = 'rust_push'";
    let end = Instant::now() + Duration::from_secs(30);
    let mut pos = int(db, position, []);
    while pos != last && Instant::now() < end {
        thread::sleep(Duration::from_millis(50));
        pos = int(db, position, []);
    }
    expect("rust_push acked", &json!(pos), &json!(last));
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: cdc_client_rust EXTENSION SQLITE3_SHELL DIR");
        exit(2);
    }
    if let Err(e) = run(&args[1], &args[2], Path::new(&args[3])) {
        fail(format!("{}", e));
    }
    println!("client.rust: ok");
}
