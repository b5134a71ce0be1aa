// drift.cc — schema changes on captured tables (DESIGN §8).
//
//   SELECT cdc_setup('orders', '{"on_schema_change": "error"}');  -- default "resync"
//   SELECT json_extract(value, '$.state') FROM json_each(cdc_status(), '$.tables');
//
// Any connection may change a captured table: ORMs rebuild tables (create a
// copy, move the rows, drop the original, rename), migrations add or rename
// columns, someone drops the table. DROP TABLE drops our triggers with it;
// ALTER TABLE leaves them writing the old column list. Capture would end, or
// go stale, without anyone noticing. So every reader of the log (cdc_poll,
// cdc_changes, cdc_wait, listeners) first calls CheckCapture:
//
//   1. PRAGMA schema_version. Unchanged since this connection last checked:
//      nothing to do (one pragma per read).
//   2. Otherwise classify each captured table (ClassifyTables): intact;
//      columns changed; UNIQUE constraints changed; triggers missing (rebuilt
//      or re-created); renamed; dropped.
//   3. Heal, under the write lock, after classifying again there (so however
//      many connections and processes notice at once, one heals, once):
//        changed / missing  re-install capture (cdc_setup), then resync: a
//                           BOOTSTRAP marker with a reason, then the table's
//                           rows as INSERT events;
//        renamed            a DROP event for the old name, capture moves to
//                           the new name, and a resync of it;
//        dropped            a DROP event; capture of it ends.
//      With the table's policy 'error' nothing is healed: the read fails with
//      the table, what changed and the remedy.
//   4. A resync is written in chunks (kResyncChunk rows per short write
//      transaction, by the chunked cdc_bootstrap machinery, which keeps the
//      stream exact while writers go on): each read writes the next chunk of
//      every unfinished resync, so no reader holds the write lock long.
//
// A consumer applying events in id order therefore converges on the table:
// writes logged by stale triggers are superseded by the marker ("drop what
// you hold for this table") and the snapshot that follows; rows an ORM copied
// into a rebuilt table (no triggers yet) come with the snapshot only.
//
// cdc_setup re-run by the migration itself, in the transaction of its ALTER
// (the README's recipe), needs no resync: no other connection could write in
// between. PrepareSetup tells the two apart by reading the table's committed
// state through a second, read-only connection: if it is still intact there,
// the change is this transaction's own.
#include "drift.h"

#include <mutex>
#include <set>
#include <unordered_map>

#include "capture.h"

namespace cdc {

namespace {

// Rows per resync chunk: a chunk is one short write transaction.
constexpr int64_t kResyncChunk = 2000;

std::string TriggerPrefix(int64_t tid) { return "__cdc_" + std::to_string(tid) + "_"; }

Status SchemaVersion(sqlite3* db, int64_t* v) { return QueryInt(db, "PRAGMA main.schema_version", v); }

// Classifies one captured table whose entry is in `c` (id, shape, name,
// columns filled in); `sig`/`width`: what cdc_setup recorded (0: unknown).
Status Classify(sqlite3* db, int64_t sig, int64_t width, CapturedTable* c) {
  // The capture triggers of this table id, and the tables they sit on.
  Stmt st;
  CDC_RETURN_IF_ERROR(st.Prepare(
      db, "SELECT substr(name, length(?1) + 1), tbl_name FROM main.sqlite_schema "
          "WHERE type = 'trigger' AND substr(name, 1, length(?1)) = ?1"));
  st.Bind(1, TriggerPrefix(c->id));
  int main3 = 0;
  std::set<std::string> on;
  bool on_other = false;
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) {
    std::string suffix = st.Text(0), tbl = st.Text(1);
    if (suffix == "insert" || suffix == "update" || suffix == "delete") main3++;
    on.insert(tbl);
    if (sqlite3_stricmp(tbl.c_str(), c->name.c_str()) != 0) on_other = true;
  }
  if (rc != SQLITE_DONE) return Status::FromDb(db, "classify " + c->name);
  st = Stmt();

  TableInfo t;
  Status ins = InspectTable(db, "cdc", c->name, &t);
  if (!ins.ok() && (ins.code() & 0xff) != SQLITE_ERROR) return ins;  // out of memory, I/O: not drift
  if (ins.ok()) {
    if (main3 != 3 || on_other) {
      c->drift = Drift::kTriggersMissing;
      c->detail = "capture triggers are missing: the table was rebuilt, or dropped and created again";
    } else if (ColumnsJson(t) != c->columns) {
      c->drift = Drift::kColumnsChanged;
      c->detail = "columns changed: captured " + c->columns + ", now " + ColumnsJson(t);
    } else if (sig != 0 && width > 0 &&
               CaptureSig(CaptureSql(t, c->id, c->shape, static_cast<int>(width))) != sig) {
      c->drift = Drift::kConstraintsChanged;
      c->detail = "UNIQUE constraints changed since cdc_setup: REPLACE conflicts are not captured as they are";
    }
    return Status();
  }
  // No table of that name (or no longer an ordinary table).
  if (main3 > 0 && on.size() == 1) {
    TableInfo moved;
    Status mv = InspectTable(db, "cdc", *on.begin(), &moved);
    if (!mv.ok() && (mv.code() & 0xff) != SQLITE_ERROR) return mv;
    if (mv.ok()) {
      c->drift = Drift::kRenamed;
      c->renamed_to = moved.name;
      c->detail = "renamed to " + Literal(moved.name);
      return Status();
    }
  }
  c->drift = Drift::kDropped;
  c->detail = "the table was dropped";
  return Status();
}

std::string Remedy(const CapturedTable& c) {
  switch (c.drift) {
    case Drift::kRenamed:
      return "run SELECT cdc_setup(" + Literal(c.renamed_to) + ") (consumers get a DROP of " + Literal(c.name) +
             " and a resync of " + Literal(c.renamed_to) + ")";
    case Drift::kDropped:
      return "run SELECT cdc_teardown(" + Literal(c.name) + ") (consumers get a DROP event)";
    default:
      return "run SELECT cdc_setup(" + Literal(c.name) + ") (consumers get a resync of the table)";
  }
}

std::string ResyncReason(const CapturedTable& c) {
  switch (c.drift) {
    case Drift::kColumnsChanged: return "columns changed";
    case Drift::kConstraintsChanged: return "constraints changed";
    case Drift::kTriggersMissing: return "triggers missing";
    case Drift::kRenamed: return "renamed from " + c.name;
    default: return "";
  }
}

// Heals one drifted table; runs inside the caller's savepoint, which holds
// the write lock.
Status Heal(sqlite3* db, const char* fn, const CapturedTable& c) {
  switch (c.drift) {
    case Drift::kIntact:
      return Status();
    case Drift::kDropped: {
      CDC_RETURN_IF_ERROR(WriteMarker(db, kOpDrop, c.shape, "dropped"));
      CDC_RETURN_IF_ERROR(DropTriggers(db, c.id, false));  // (no DROP TABLE in a reader)
      CDC_RETURN_IF_ERROR(ForgetBootstrapState(db, c.name));
      return Exec(db, "DELETE FROM main.__cdc_tables WHERE id = " + std::to_string(c.id));
    }
    case Drift::kRenamed: {
      CDC_RETURN_IF_ERROR(WriteMarker(db, kOpDrop, c.shape, "renamed to " + c.renamed_to));
      CDC_RETURN_IF_ERROR(ForgetBootstrapState(db, c.name));
      // SetupTable replaces the triggers of the old entry and drops it.
      CDC_RETURN_IF_ERROR(SetupTable(db, fn, c.renamed_to, true));
      if (c.policy_error) {
        CDC_RETURN_IF_ERROR(Exec(db, "UPDATE main.__cdc_tables SET policy = 'error' WHERE name = " +
                                         Literal(c.renamed_to)));
      }
      return StartResync(db, fn, c.renamed_to, ResyncReason(c));
    }
    default:
      CDC_RETURN_IF_ERROR(SetupTable(db, fn, c.name, true));
      return StartResync(db, fn, c.name, ResyncReason(c));
  }
}

// Writes the next chunk of every unfinished resync; *pending: some remain.
Status ContinueResyncs(sqlite3* db, const char* fn, bool* pending) {
  *pending = false;
  bool state = false;
  CDC_RETURN_IF_ERROR(TableExists(db, "__cdc_bootstrap", &state));
  if (!state) return Status();
  std::vector<std::string> tables;
  {
    Stmt st;
    Status prep = st.Prepare(db, "SELECT tbl FROM main.__cdc_bootstrap WHERE reason IS NOT NULL");
    if (!prep.ok()) return Status();  // made by an older version: no resyncs
    int rc;
    while ((rc = st.Step()) == SQLITE_ROW) tables.push_back(st.Text(0));
    if (rc != SQLITE_DONE) return Status::FromDb(db, fn);
  }
  if (tables.empty()) return Status();
  if (sqlite3_db_readonly(db, "main") == 1) {
    return Status::Error(std::string(fn) + ": a resync of " + Literal(tables[0]) +
                         " is in progress and this connection is read-only; read from a writable "
                         "connection (or run SELECT cdc_bootstrap(" + Literal(tables[0]) +
                         ", 10000) until it returns 0)");
  }
  for (auto& t : tables) {
    Savepoint sp(db, "cdc_resync");
    CDC_RETURN_IF_ERROR(sp.Begin());
    int64_t written = 0;
    CDC_RETURN_IF_ERROR(Bootstrap(db, fn, t, kResyncChunk, "", &written));
    // A short chunk reached the end of the table: the resync is complete.
    // (Waiting for an empty chunk would chase a writer that keeps inserting
    // at the end of the key range; its rows are captured by the triggers,
    // installed before the snapshot began.)
    if (written < kResyncChunk) {
      CDC_RETURN_IF_ERROR(Exec(db, "DELETE FROM main.__cdc_bootstrap WHERE tbl = " + Literal(t)));
    } else {
      *pending = true;
    }
    CDC_RETURN_IF_ERROR(sp.Release());
  }
  return Status();
}

struct SeenMap {
  std::mutex mu;
  std::unordered_map<sqlite3*, SchemaSeen> by_db;
};
SeenMap& Seen() {
  static SeenMap* m = new SeenMap;  // never destroyed: threads may outlive exit()
  return *m;
}

Status CheckSlow(sqlite3* db, const char* fn) {
  std::vector<CapturedTable> tables;
  CDC_RETURN_IF_ERROR(ClassifyTables(db, nullptr, &tables));
  bool drift = false;
  for (auto& c : tables) {
    if (c.drift == Drift::kIntact) continue;
    if (c.policy_error) {
      return Status::Error(std::string(fn) + ": capture of " + Literal(c.name) + " is stale (" + c.detail +
                           ") and its policy is on_schema_change = 'error': " + Remedy(c));
    }
    drift = true;
  }
  if (drift) {
    if (sqlite3_db_readonly(db, "main") == 1) {
      for (auto& c : tables) {
        if (c.drift == Drift::kIntact) continue;
        return Status::Error(std::string(fn) + ": capture of " + Literal(c.name) + " is stale (" + c.detail +
                             ") and this connection is read-only, so it cannot heal it; read from a "
                             "writable connection once, or " + Remedy(c));
      }
    }
    Savepoint sp(db, "cdc_heal");
    CDC_RETURN_IF_ERROR(sp.Begin());
    // Again, under the write lock: another connection may have healed first.
    // One table at a time, classifying again after each: healing one (a
    // rename onto another's name) can settle another.
    for (size_t round = 0; round <= tables.size(); round++) {
      CDC_RETURN_IF_ERROR(ClassifyTables(db, nullptr, &tables));
      const CapturedTable* next = nullptr;
      for (auto& c : tables) {
        if (c.drift != Drift::kIntact && !c.policy_error) { next = &c; break; }
      }
      if (!next) break;
      CDC_RETURN_IF_ERROR(Heal(db, fn, *next));
    }
    CDC_RETURN_IF_ERROR(sp.Release());
  }
  return Status();
}

}  // namespace

const char* DriftName(Drift d) {
  switch (d) {
    case Drift::kIntact: return "intact";
    case Drift::kColumnsChanged: return "columns_changed";
    case Drift::kConstraintsChanged: return "constraints_changed";
    case Drift::kTriggersMissing: return "triggers_missing";
    case Drift::kRenamed: return "renamed";
    case Drift::kDropped: return "dropped";
  }
  return "?";
}

Status ClassifyTables(sqlite3* db, const std::string* only, std::vector<CapturedTable>* out) {
  out->clear();
  bool captured = false;
  CDC_RETURN_IF_ERROR(TableExists(db, "__cdc_tables", &captured));
  if (!captured) return Status();
  // sig, width and policy were added after the first version.
  Stmt st;
  const char* where = only ? " WHERE t.name = ?1 COLLATE NOCASE" : "";
  std::string full = std::string("SELECT t.id, t.name, t.shape, s.columns, t.sig, t.width, t.policy "
                                 "FROM main.__cdc_tables AS t JOIN main.__cdc_shapes AS s ON s.id = t.shape") +
                     where + " ORDER BY t.name";
  if (!st.Prepare(db, full).ok()) {
    CDC_RETURN_IF_ERROR(st.Prepare(db, std::string("SELECT t.id, t.name, t.shape, s.columns, 0, 0, NULL "
                                                    "FROM main.__cdc_tables AS t JOIN main.__cdc_shapes AS s "
                                                    "ON s.id = t.shape") + where + " ORDER BY t.name"));
  }
  if (only) st.Bind(1, *only);
  std::vector<std::pair<int64_t, int64_t>> sigs;
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) {
    CapturedTable c;
    c.id = st.Int(0);
    c.name = st.Text(1);
    c.shape = st.Int(2);
    c.columns = st.Text(3);
    c.policy_error = !st.IsNull(6) && st.Text(6) == "error";
    out->push_back(std::move(c));
    sigs.emplace_back(st.Int(4), st.Int(5));
  }
  if (rc != SQLITE_DONE) return Status::FromDb(db, "classify tables");
  st = Stmt();
  std::set<std::string> resyncing;
  bool state = false;
  CDC_RETURN_IF_ERROR(TableExists(db, "__cdc_bootstrap", &state));
  if (state) {
    Stmt r;
    if (r.Prepare(db, "SELECT tbl FROM main.__cdc_bootstrap WHERE reason IS NOT NULL").ok()) {  // else: older layout
      while ((rc = r.Step()) == SQLITE_ROW) resyncing.insert(r.Text(0));
      if (rc != SQLITE_DONE) return Status::FromDb(db, "classify tables");
    }
  }
  for (size_t i = 0; i < out->size(); i++) {
    CDC_RETURN_IF_ERROR(Classify(db, sigs[i].first, sigs[i].second, &(*out)[i]));
    (*out)[i].resyncing = resyncing.count((*out)[i].name) > 0;
  }
  return Status();
}

Status CheckCapture(sqlite3* db, const char* fn, SchemaSeen* seen) {
  int64_t v = 0;
  CDC_RETURN_IF_ERROR(SchemaVersion(db, &v));
  SchemaSeen mine;
  if (!seen) {
    std::lock_guard<std::mutex> g(Seen().mu);
    auto it = Seen().by_db.find(db);
    if (it != Seen().by_db.end()) mine = it->second;
    seen = &mine;
  }
  if (v != seen->schema_version) {
    CDC_RETURN_IF_ERROR(CheckSlow(db, fn));
    seen->resync_pending = true;  // look once: a resync may have started
    CDC_RETURN_IF_ERROR(SchemaVersion(db, &v));
  }
  if (seen->resync_pending) {
    bool pending = false;
    CDC_RETURN_IF_ERROR(ContinueResyncs(db, fn, &pending));
    seen->resync_pending = pending;
  }
  seen->schema_version = v;
  if (seen == &mine) {
    std::lock_guard<std::mutex> g(Seen().mu);
    Seen().by_db[db] = mine;
  }
  return Status();
}

void ForgetConnection(sqlite3* db) {
  std::lock_guard<std::mutex> g(Seen().mu);
  Seen().by_db.erase(db);
}

Status StartResync(sqlite3* db, const char* fn, const std::string& table, const std::string& reason) {
  CDC_RETURN_IF_ERROR(ForgetBootstrapState(db, table));
  int64_t written = 0;
  CDC_RETURN_IF_ERROR(Bootstrap(db, fn, table, kResyncChunk, reason, &written));
  if (written < kResyncChunk) {  // the whole table in one chunk: complete
    return Exec(db, "DELETE FROM main.__cdc_bootstrap WHERE tbl = " + Literal(table));
  }
  return Status();
}

namespace {

// Whether table `c`'s capture is intact in the database as committed (seen
// by a connection of our own): then the drift the caller sees is its own
// transaction's. Anything that prevents the look answers false.
bool IntactWhenCommitted(sqlite3* db, const CapturedTable& c) {
  const char* file = sqlite3_db_filename(db, "main");
  if (!file || !*file) return !sqlite3_get_autocommit(db);  // in memory: no other writer
  sqlite3_vfs* vfs = nullptr;
  sqlite3_file_control(db, "main", SQLITE_FCNTL_VFS_POINTER, &vfs);
  struct Conn {
    sqlite3* db = nullptr;
    ~Conn() { sqlite3_close_v2(db); }  // also when an allocation below throws
  } other;
  bool intact = false;
  if (sqlite3_open_v2(file, &other.db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX,
                      vfs && vfs->zName ? vfs->zName : nullptr) == SQLITE_OK) {
    std::vector<CapturedTable> there;
    if (ClassifyTables(other.db, &c.name, &there).ok()) {
      for (auto& t : there) intact |= t.id == c.id && t.drift == Drift::kIntact;
    }
  }
  return intact;
}

}  // namespace

Status PrepareSetup(sqlite3* db, const char* fn, const std::string& table, std::string* reason) {
  reason->clear();
  std::vector<CapturedTable> all;
  CDC_RETURN_IF_ERROR(ClassifyTables(db, nullptr, &all));
  for (auto& c : all) {
    if (sqlite3_stricmp(c.name.c_str(), table.c_str()) == 0) {
      if (c.drift == Drift::kTriggersMissing) {
        *reason = ResyncReason(c);  // rows may have changed with no event at all
      } else if ((c.drift == Drift::kColumnsChanged || c.drift == Drift::kConstraintsChanged) &&
                 !IntactWhenCommitted(db, c)) {
        *reason = ResyncReason(c);
      }
    } else if (c.drift == Drift::kRenamed && sqlite3_stricmp(c.renamed_to.c_str(), table.c_str()) == 0) {
      // Capture moves with the rename: consumers drop the old name and get
      // the table again under its new one.
      CDC_RETURN_IF_ERROR(WriteMarker(db, kOpDrop, c.shape, "renamed to " + c.renamed_to));
      *reason = ResyncReason(c);
    }
  }
  (void)fn;
  return Status();
}

}  // namespace cdc
