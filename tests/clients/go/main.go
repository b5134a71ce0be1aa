// Command cdc_client_go: sqlite-cdc from Go through mattn/go-sqlite3, the way
// README.md's "Load it" row shows (run by tests/clients/client_test.sh as
// ctest's client.go).
//
// usage: cdc_client_go EXTENSION SQLITE3_SHELL DIR
//
// Opens DIR/app.db with the driver's Extensions list, captures a table, writes
// rows, reads them back with cdc_poll (decoded with encoding/json), acks, then
// consumes a change that the sqlite3 shell, another process that never loads
// the extension, commits while this program blocks in cdc_wait. Any mismatch
// exits 1.
package main

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"

	sqlite3 "github.com/mattn/go-sqlite3"
)

type event struct {
	ID     int64                  `json:"id"`
	TS     int64                  `json:"ts"`
	Table  string                 `json:"table"`
	Op     string                 `json:"op"`
	Before map[string]interface{} `json:"before"`
	After  map[string]interface{} `json:"after"`
}

var db *sql.DB

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "client.go: "+format+"\n", args...)
	os.Exit(1)
}

func check(err error, what string) {
	if err != nil {
		fail("%s: %v", what, err)
	}
}

func scalar(query string, args ...interface{}) interface{} {
	var v interface{}
	check(db.QueryRow(query, args...).Scan(&v), query)
	return v
}

func poll(consumer string) []event {
	var text string
	check(db.QueryRow("SELECT cdc_poll(?, 100)", consumer).Scan(&text), "cdc_poll")
	var events []event
	check(json.Unmarshal([]byte(text), &events), "decoding "+text)
	return events
}

func ids(events []event) []int64 {
	out := []int64{}
	for _, e := range events {
		out = append(out, e.ID)
	}
	return out
}

func expect(what string, got, want interface{}) {
	if !reflect.DeepEqual(got, want) {
		fail("%s: got %#v, want %#v", what, got, want)
	}
}

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: cdc_client_go EXTENSION SQLITE3_SHELL DIR")
		os.Exit(2)
	}
	ext, shell, dir := os.Args[1], os.Args[2], os.Args[3]
	path := filepath.Join(dir, "app.db")

	// README.md's row: the driver loads the extension into every connection
	// it opens; the busy timeout goes in the DSN, so every pooled connection has it.
	sql.Register("sqlite3_cdc", &sqlite3.SQLiteDriver{Extensions: []string{ext}})
	var err error
	db, err = sql.Open("sqlite3_cdc", "file:"+path+"?_busy_timeout=10000&_journal_mode=WAL")
	check(err, "sql.Open")
	defer db.Close()
	expect("busy_timeout", scalar("PRAGMA busy_timeout"), int64(10000))
	version := scalar("SELECT sqlite_version()")
	fmt.Printf("client.go: SQLite %s, cdc %s\n", version, scalar("SELECT cdc_version()"))

	_, err = db.Exec("CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, price REAL)")
	check(err, "CREATE TABLE")
	expect("cdc_setup", scalar("SELECT cdc_setup('items')"), int64(1))
	expect("cdc_consumer_add", scalar("SELECT cdc_consumer_add('go')"), int64(0))

	// Two rows in one transaction, then an update and a delete.
	tx, err := db.Begin()
	check(err, "BEGIN")
	_, err = tx.Exec("INSERT INTO items VALUES(?, ?, ?)", 1, "pen", 1.5)
	check(err, "INSERT 1")
	_, err = tx.Exec("INSERT INTO items VALUES(?, ?, ?)", 2, "ink", 0.1+0.2)
	check(err, "INSERT 2")
	check(tx.Commit(), "COMMIT")
	_, err = db.Exec("UPDATE items SET name = 'ink, blue' WHERE id = 2")
	check(err, "UPDATE")
	_, err = db.Exec("DELETE FROM items WHERE id = 1")
	check(err, "DELETE")

	events := poll("go")
	ops := []string{}
	for _, e := range events {
		ops = append(ops, e.Op)
		expect("table", e.Table, "items")
		if e.TS <= 0 {
			fail("ts %d", e.TS)
		}
	}
	expect("ops in commit order", ops, []string{"INSERT", "INSERT", "UPDATE", "DELETE"})
	for i := 1; i < len(events); i++ {
		if events[i].ID <= events[i-1].ID {
			fail("ids not increasing: %v", ids(events))
		}
	}
	// encoding/json decodes numbers as float64; 0.1+0.2 comes back identical.
	expect("first after", events[0].After, map[string]interface{}{"id": 1.0, "name": "pen", "price": 1.5})
	expect("first before", events[0].Before, map[string]interface{}(nil))
	expect("second after", events[1].After["price"], 0.1+0.2)
	expect("update before", events[2].Before["name"], "ink")
	expect("update after", events[2].After, map[string]interface{}{"id": 2.0, "name": "ink, blue", "price": 0.1 + 0.2})
	expect("delete before", events[3].Before["id"], 1.0)
	expect("delete after", events[3].After, map[string]interface{}(nil))

	// Ack the first two: the same poll returns only the rest; ack them all.
	all := ids(events)
	expect("cdc_ack", scalar("SELECT cdc_ack('go', ?)", all[1]), all[1])
	expect("after ack", ids(poll("go")), all[2:])
	expect("cdc_ack", scalar("SELECT cdc_ack('go', ?)", all[3]), all[3])
	expect("nothing pending", ids(poll("go")), []int64{})

	// Another process (the sqlite3 shell, without the extension) commits
	// while this connection blocks in cdc_wait.
	writer := exec.Command(shell, path)
	writer.Args = append(writer.Args, ".timeout 10000", "INSERT INTO items(id, name, price) VALUES(3, 'from the shell', -2.5)")
	writer.Stderr = os.Stderr
	check(writer.Start(), "starting "+shell)
	pending := scalar("SELECT cdc_wait('go', 60000)")
	check(writer.Wait(), "the sqlite3 shell")
	expect("cdc_wait", pending, int64(1))
	events = poll("go")
	if len(events) != 1 || events[0].ID <= all[3] || events[0].Op != "INSERT" {
		fail("the shell's change: %#v", events)
	}
	expect("shell after", events[0].After, map[string]interface{}{"id": 3.0, "name": "from the shell", "price": -2.5})
	expect("cdc_ack", scalar("SELECT cdc_ack('go', ?)", events[0].ID), events[0].ID)
	expect("nothing pending", ids(poll("go")), []int64{})
	fmt.Println("client.go: ok")
}
