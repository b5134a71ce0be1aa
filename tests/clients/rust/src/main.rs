//! sqlite-cdc from Rust through rusqlite, the way README.md's "Load it" row
//! shows (run by tests/clients/client_test.sh as ctest's client.rust).
//!
//! usage: cdc_client_rust EXTENSION SQLITE3_SHELL DIR
//!
//! Opens DIR/app.db, loads the extension (rusqlite's `load_extension`
//! feature), captures a table, writes rows, reads them back with cdc_poll
//! (decoded with serde_json), acks, then consumes a change that the sqlite3
//! shell, another process that never loads the extension, commits while this
//! program blocks in cdc_wait. Any mismatch exits 1.

use rusqlite::{params, Connection};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{exit, Command};
use std::time::Duration;

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
