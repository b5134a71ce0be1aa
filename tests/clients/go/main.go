// Command cdc_client_go: sqlite-cdc from Go through mattn/go-sqlite3, the way
// README.md's "Load it" row shows (run by tests/clients/client_test.sh as
// ctest's client.go).
//
// usage: cdc_client_go EXTENSION SQLITE3_SHELL DIR
//
// Opens DIR/app.db with the driver's Extensions list, captures a table, writes
// rows, reads them back with cdc_poll (decoded with encoding/json), acks, then
// consumes a change that the sqlite3 shell, another process that never loads
// the extension, commits while this program blocks in cdc_wait. Then push
// delivery: a goroutine blocks in cdc_serve on a connection of its own, which
// calls a Go function registered on every connection (the driver's
// ConnectHook) once per batch, while the program keeps writing through its
// pool and the sqlite3 shell writes from another process; cdc_unlisten from
// the pool stops it. Any mismatch exits 1.
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"time"

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
	// on_changes is the push callback of cdc_serve (see servePush).
	sql.Register("sqlite3_cdc", &sqlite3.SQLiteDriver{
		Extensions: []string{ext},
		ConnectHook: func(c *sqlite3.SQLiteConn) error {
			return c.RegisterFunc("on_changes", onChanges, false)
		},
	})
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

	waitWithDeadline()
	servePush(shell, path)
	fmt.Println("client.go: ok")
}

// A context deadline cuts cdc_wait short: the driver calls sqlite3_interrupt
// when the context ends, and cdc_wait returns then with an error instead of
// blocking for its whole timeout.
func waitWithDeadline() {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	var n int64
	err := db.QueryRowContext(ctx, "SELECT cdc_wait('go', 90000)").Scan(&n)
	if err == nil {
		fail("cdc_wait past its context's deadline returned %d", n)
	}
	if took := time.Since(start); took > 60*time.Second {
		fail("cdc_wait returned %v after its context's deadline (300 ms)", took)
	}
	// The pool's connections keep working.
	expect("nothing pending", ids(poll("go")), []int64{})
}

// Batches cdc_serve hands to on_changes, decoded.
var pushed = make(chan []event, 64)

// The SQL function on_changes(batch): called by cdc_serve on the serving
// connection's thread. A true result acks the batch.
func onChanges(batch string) (int64, error) {
	var events []event
	if err := json.Unmarshal([]byte(batch), &events); err != nil {
		return 0, err // an error: the same batch again, later
	}
	pushed <- events
	return 1, nil
}

func servePush(shell, path string) {
	expect("cdc_consumer_add", scalar("SELECT cdc_consumer_add('go_push', 'latest')") != nil, true)
	ctx := context.Background()
	conn, err := db.Conn(ctx) // a connection of its own, kept out of the pool
	check(err, "db.Conn")
	served := make(chan int64, 1)
	go func() {
		var n int64
		check(conn.QueryRowContext(ctx, "SELECT cdc_serve('go_push', 'on_changes')").Scan(&n), "cdc_serve")
		served <- n
	}()

	// The program keeps writing through its pool while batches arrive, and
	// the sqlite3 shell writes from another process.
	want := []string{}
	for i := 10; i < 20; i++ {
		_, err := db.Exec("INSERT INTO items VALUES(?, ?, ?)", i, fmt.Sprintf("pushed %d", i), float64(i)/4)
		check(err, "INSERT while serving")
		want = append(want, fmt.Sprintf("pushed %d", i))
	}
	_, err = db.Exec("UPDATE items SET price = price * 2 WHERE id = 10")
	check(err, "UPDATE while serving")
	want = append(want, "pushed 10")
	writer := exec.Command(shell, path, ".timeout 10000", "INSERT INTO items(id, name, price) VALUES(30, 'shell, pushed', 1.25)")
	writer.Stderr = os.Stderr
	check(writer.Run(), "the sqlite3 shell")
	want = append(want, "shell, pushed")

	got := []string{}
	var last int64
	deadline := time.After(60 * time.Second)
	for len(got) < len(want) {
		select {
		case batch := <-pushed:
			for _, e := range batch {
				if e.ID <= last {
					fail("pushed ids not increasing: %d after %d", e.ID, last)
				}
				last = e.ID
				got = append(got, e.After["name"].(string))
			}
		case <-deadline:
			fail("pushed so far %v, want %v", got, want)
		}
	}
	expect("pushed in commit order", got, want)

	// cdc_unlisten from the pool: cdc_serve returns what it delivered.
	expect("cdc_unlisten", scalar("SELECT cdc_unlisten('go_push')"), int64(1))
	select {
	case n := <-served:
		expect("cdc_serve's count", n, int64(len(want)))
	case <-time.After(60 * time.Second):
		fail("cdc_serve did not return after cdc_unlisten")
	}
	check(conn.Close(), "closing the serving connection")
	// Acked as delivered (the acker commits a position at most once a second).
	var pos int64
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if pos = scalar("SELECT value ->> 'position' FROM json_each(cdc_status(), '$.consumers') " +
			"WHERE value ->> 'name' = 'go_push'").(int64); pos == last {
			break
		}
	}
	expect("go_push acked", pos, last)
}
