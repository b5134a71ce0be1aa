// delivery.cc — consumers, polling, acknowledging, pruning and status.
//
// A consumer is a row of __cdc_consumers: a name and a position, the id of
// the last change it acked. It sees every change with a larger id until it
// acks it (at-least-once). Pruning deletes the log rows at or below the
// smallest position, except the newest row, which keeps max(id)+1 growing.
#include "delivery.h"

#include <limits>
#include <memory>

#include "capture.h"
#include "drift.h"
#include "json.h"
#include "last_poll.h"
#include "lease.h"
#include "retention.h"

namespace cdc {

namespace {

// Pruning's statements (named: WarmAck prepares them). Both are built on
// one bound: the newest id every consumer has passed (with no consumer,
// nobody to keep anything for), short of the newest event, which stays
// whole with its continuation rows so that ids are never reused.
#define CDC_PRUNE_UPTO                                                                          \
  "min(coalesce((SELECT min(pos) FROM main.__cdc_consumers), (SELECT max(id) FROM main.__cdc_log)), " \
  "(SELECT max(id) FROM main.__cdc_log WHERE op <> 0 AND id < (SELECT max(id) FROM main.__cdc_log)))"
// The bound, and whether max_log_bytes keeps a byte count that the prune
// must update (AccountPrune); a database of an earlier version may have no
// __cdc_meta (then the first form fails and the second is used).
const char kPruneBoundSql[] = "SELECT min(" CDC_PRUNE_UPTO ", (SELECT min(id) FROM main.__cdc_log) + ?1 - 1), "
                              "EXISTS (SELECT 1 FROM main.__cdc_meta WHERE key = 'log_bytes.total')";
const char kPruneBoundNoMetaSql[] = "SELECT min(" CDC_PRUNE_UPTO ", (SELECT min(id) FROM main.__cdc_log) + ?1 - 1), 0";
const char kPruneSql[] = "DELETE FROM main.__cdc_log WHERE id <= ?1";
const char kPrunableSql[] =
    "SELECT max(0, coalesce(" CDC_PRUNE_UPTO " - (SELECT min(id) FROM main.__cdc_log) + 1, 0))";
#undef CDC_PRUNE_UPTO

std::string NoConsumer(const char* fn, const std::string& name) {
  return std::string(fn) + ": no such consumer: " + NameInMessage(name) +
         " (add it with SELECT cdc_consumer_add(" + NameInMessage(name) + "))";
}


}  // namespace

namespace {

// One read of a consumer's row and what cdc_poll or an ack needs beside it,
// in one statement (each statement is parsed afresh on every call: none is
// kept prepared on a user's connection between calls).
struct ConsumerRow {
  bool found = false;
  int64_t pos = 0;
  bool lost = false;
  std::string lost_reason;
  int64_t created = -1;  // created_ms; -1 when NULL (a database of an earlier version)
  // kAck: the newest id in the log, and the newest event id <= the target.
  int64_t newest = 0, floor = 0;
  // kPoll, for NoteReadKnown (retention.h): now, the last read, ack or
  // creation (Unix ms), the idle_timeout_ms setting (-1: unset).
  bool have_meta = false;
  int64_t now = 0, seen = 0, idle = -1;
};

enum class RowFor { kPosition, kPoll, kAck };

std::string ConsumerRowSql(RowFor use, bool meta) {
  std::string sql = "SELECT c.pos, ";
  sql += meta ? "(SELECT value FROM main.__cdc_meta WHERE key = 'lost.' || ?1)" : "NULL";
  sql += ", coalesce(c.created_ms, -1)";
  if (use == RowFor::kAck) {
    sql += ", (SELECT coalesce(max(id), 0) FROM main.__cdc_log), " CDC_EVENT_FLOOR_SQL("?2");
  } else if (use == RowFor::kPoll && meta) {
    sql += std::string(", ") + kNowMs +
           ", max(coalesce(c.acked_ms, 0), coalesce(c.created_ms, 0), "
           "coalesce((SELECT value FROM main.__cdc_meta WHERE key = 'read.' || ?1), 0)), "
           "coalesce((SELECT value FROM main.__cdc_meta WHERE key = 'retention.idle_timeout_ms'), -1)";
  } else if (use == RowFor::kPoll) {
    sql += ", NULL, NULL, NULL";
  }
  return sql + " FROM main.__cdc_consumers AS c WHERE c.name = ?1";
}

// Reads `name`'s row into *row (row->found false when there is no such
// consumer, or no internal tables yet). `st` keeps the statement for the
// call: a second read (an ack's, inside its write transaction) steps it
// again. The statement is reset before this returns, so no read
// transaction stays open.
Status ReadConsumer(sqlite3* db, const char* fn, const std::string& name, RowFor use, int64_t target, Stmt* st,
                    ConsumerRow* row) {
  *row = ConsumerRow();
  bool meta = true;
  if (!*st) {
    Status prep = st->Prepare(db, ConsumerRowSql(use, true));
    if (!prep.ok() && (prep.code() & 0xff) == SQLITE_ERROR) {  // no __cdc_meta: a database of an earlier version
      meta = false;
      prep = st->Prepare(db, ConsumerRowSql(use, false));
    }
    if (!prep.ok()) {
      // Out of memory, an I/O error...: say so, not "no such consumer".
      if ((prep.code() & 0xff) != SQLITE_ERROR) return prep;
      return InternalTablesExist(db) ? prep : Status();
    }
  }
  st->Bind(1, name);
  if (use == RowFor::kAck) st->Bind(2, target);
  const int rc = st->Step();
  if (rc == SQLITE_ROW) {
    row->found = true;
    row->pos = st->Int(0);
    row->lost = !st->IsNull(1);
    if (row->lost) row->lost_reason = st->Text(1);
    row->created = st->Int(2);
    if (use == RowFor::kAck) {
      row->newest = st->Int(3);
      row->floor = st->Int(4);
    } else if (use == RowFor::kPoll && !st->IsNull(3)) {
      row->have_meta = meta;
      row->now = st->Int(3);
      row->seen = st->Int(4);
      row->idle = st->Int(5);
    }
  }
  st->Reset();
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Status::FromDb(db, fn);
  return Status();
}

// The errors of a read of a consumer that is not there or was invalidated.
Status RequireLive(const char* fn, const std::string& name, const ConsumerRow& row) {
  if (!row.found) return Status::Error(NoConsumer(fn, name));
  if (row.lost) return Status::Error(LostError(fn, name, row.lost_reason));
  return Status();
}

}  // namespace

Status ConsumerPosition(sqlite3* db, const char* fn, const std::string& name, int64_t* pos) {
  // The hot path of wait and of the readers' checks: one statement
  // (ReadConsumer), the schema looked at only to explain a failure.
  Stmt st;
  ConsumerRow row;
  CDC_RETURN_IF_ERROR(ReadConsumer(db, fn, name, RowFor::kPosition, 0, &st, &row));
  CDC_RETURN_IF_ERROR(RequireLive(fn, name, row));
  *pos = row.pos;
  return Status();
}

Status ReadConsumerState(sqlite3* db, const char* fn, const std::string& name, ConsumerState* out) {
  Stmt st;
  ConsumerRow row;
  CDC_RETURN_IF_ERROR(ReadConsumer(db, fn, name, RowFor::kPosition, 0, &st, &row));
  *out = ConsumerState();
  out->found = row.found;
  out->pos = row.pos;
  out->created = row.created;
  out->lost = row.lost;
  out->lost_reason = std::move(row.lost_reason);
  return Status();
}

Status PendingCount(sqlite3* db, int64_t pos, int64_t* count) {
  Stmt st;
  CDC_RETURN_IF_ERROR(st.Prepare(db, "SELECT count(*) FROM main.__cdc_log WHERE id > ?1 AND op <> 0"));
  st.Bind(1, pos);
  if (st.Step() != SQLITE_ROW) return Status::FromDb(db, "pending");
  *count = st.Int(0);
  return Status();
}

Status Prune(sqlite3* db, int64_t max_rows) {
  // The newest event stays, with its continuation rows (they sit between the
  // event before it and it): deleting only up to that earlier event keeps it
  // whole for a consumer added later with 'earliest' and for cdc_changes.
  // At most `max_rows` ids from the oldest row: the write lock is held for
  // about a microsecond per row deleted (SECURE_DELETE), and a writer with
  // no busy timeout fails while it is.
  Stmt bound;
  Status prep = bound.Prepare(db, kPruneBoundSql);
  if (!prep.ok() && (prep.code() & 0xff) == SQLITE_ERROR) prep = bound.Prepare(db, kPruneBoundNoMetaSql);
  CDC_RETURN_IF_ERROR(prep);
  bound.Bind(1, max_rows);
  if (bound.Step() != SQLITE_ROW) return Status::FromDb(db, "prune");
  if (bound.IsNull(0)) return Status();  // nothing to prune
  const int64_t upto = bound.Int(0);
  const bool counted = bound.Int(1) != 0;
  bound = Stmt();
  if (counted) CDC_RETURN_IF_ERROR(AccountPrune(db, upto));  // max_log_bytes' count (retention.h)
  Stmt st;
  CDC_RETURN_IF_ERROR(st.Prepare(db, kPruneSql));
  st.Bind(1, upto);
  if (st.Step() != SQLITE_DONE) return Status::FromDb(db, "prune");
  return Status();
}

Status Prune(sqlite3* db) { return Prune(db, std::numeric_limits<int64_t>::max() / 2); }

void WarmAck(sqlite3* db) {
  for (const char* sql : {kPruneBoundSql, kPruneSql, kPrunableSql}) {
    Stmt st;
    (void)st.Prepare(db, sql);  // kept by the connection's StmtCache; a failure shows when it runs
  }
  WarmRetention(db);
}

Status PrunableRows(sqlite3* db, int64_t* rows) {
  CDC_RETURN_IF_ERROR(QueryInt(db, kPrunableSql, rows));
  return Status();
}

namespace {

// Inside the caller's write transaction: moves `name` to `id` (see
// AckConsumer), then prunes what the move passed and at most `extra` rows
// more (an older backlog), at most `cap` rows in all. Checks the retention
// limits when the position moved and `check_limits`. `st`: the caller's
// statement for the consumer's row (ReadConsumer), if it has one.
Status AckLocked(sqlite3* db, const char* fn, const std::string& name, int64_t id, int64_t extra, int64_t cap,
                 bool check_limits, int64_t* pos, Stmt* st = nullptr) {
  Stmt own;
  ConsumerRow row;
  CDC_RETURN_IF_ERROR(ReadConsumer(db, fn, name, RowFor::kAck, id, st ? st : &own, &row));
  CDC_RETURN_IF_ERROR(RequireLive(fn, name, row));
  const int64_t cur = row.pos;
  *pos = cur;
  if (id > cur) {
    if (id > row.newest) {
      return Status::Error(std::string(fn) + ": id " + std::to_string(id) +
                           " is past the newest change (" + std::to_string(row.newest) + ")");
    }
    // Positions are event ids, so pruning never splits an event's rows.
    const int64_t floor = row.floor;
    if (floor > cur) {
      Stmt up;
      CDC_RETURN_IF_ERROR(up.Prepare(
          db, std::string("UPDATE main.__cdc_consumers SET pos = ?1, acked_ms = ") + kNowMs + " WHERE name = ?2"));
      up.Bind(1, floor);
      up.Bind(2, name);
      if (up.Step() != SQLITE_DONE) return Status::FromDb(db, fn);
      up = Stmt();
      *pos = floor;
      if (check_limits) CDC_RETURN_IF_ERROR(EnforceRetention(db));
    }
  }
  // What this ack passed, and a chunk of any older backlog: pruning keeps up
  // with the acks without one ack holding the write lock for all of it.
  const int64_t rows = std::min(*pos - cur + extra, cap);
  return rows > 0 ? Prune(db, rows) : Status();
}

// AckConsumer, with the consumer's row already read for `id` by the
// caller when `have_row` (st then holds the statement to read it again).
Status Ack(sqlite3* db, const char* fn, const std::string& name, int64_t id, Stmt* st, ConsumerRow* row,
           bool have_row, int64_t* pos) {
  if (!have_row) CDC_RETURN_IF_ERROR(ReadConsumer(db, fn, name, RowFor::kAck, id, st, row));
  CDC_RETURN_IF_ERROR(RequireLive(fn, name, *row));
  *pos = row->pos;
  if (id <= row->pos) return Status();
  Savepoint sp(db, "cdc_ack");
  CDC_RETURN_IF_ERROR(sp.Begin());
  CDC_RETURN_IF_ERROR(AckLocked(db, fn, name, id, kPruneChunk, std::numeric_limits<int64_t>::max(), true, pos,
                                st));  // read again, in the write transaction
  return sp.Release();
}

}  // namespace

Status AckConsumer(sqlite3* db, const char* fn, const std::string& name, int64_t id, int64_t* pos) {
  Stmt st;
  ConsumerRow row;
  return Ack(db, fn, name, id, &st, &row, false, pos);
}

Status AckNoWait(sqlite3* db, const char* fn, const std::string& name, int64_t id, int64_t prune,
                 bool check_limits, int64_t* pos, bool* busy, int64_t* left) {
  *busy = false;
  *left = 0;
  // The undo is prepared before the transaction starts: out of memory, SQLite
  // may prepare nothing more on the connection, and a transaction left open
  // would hold the write lock and fail every later BEGIN (found by
  // faults ListenerFaults.FailingAllocations). One left open by an earlier
  // call that could not roll back is rolled back first.
  Stmt rollback;
  CDC_RETURN_IF_ERROR(rollback.Prepare(db, "ROLLBACK"));
  if (!sqlite3_get_autocommit(db) && rollback.Step() != SQLITE_DONE) return Status::FromDb(db, fn);
  rollback.Reset();
  // A deferred transaction: what the ack reads before its first write (the
  // position, the newest id, the event floor) is read without the write
  // lock; the first write takes it, or fails at once with SQLITE_BUSY (taken)
  // or SQLITE_BUSY_SNAPSHOT (another connection committed since the read
  // began): given up, tried again later. Measured with cdc_busy_writer's
  // trace, this shortens the lock of a position-only ack by about a fifth.
  int rc = sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return Status::FromDb(db, fn);
  Status st = AckLocked(db, fn, name, id, prune, prune, check_limits, pos);
  if (!st.ok() && ((st.code() & 0xff) == SQLITE_BUSY || (st.code() & 0xff) == SQLITE_LOCKED)) {
    *busy = true;
    st = Status();
    if (!sqlite3_get_autocommit(db)) rollback.Step();
    return st;
  }
  if (st.ok()) st = PrunableRows(db, left);
  if (st.ok()) {
    rc = sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
    if (rc == SQLITE_OK) return Status();
    // Rollback-journal mode: a reader's SHARED lock keeps the commit from
    // taking the EXCLUSIVE lock. Give the write lock back and try later.
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) *busy = true;
    else st = Status::FromDb(db, fn);
  }
  if (!sqlite3_get_autocommit(db)) rollback.Step();
  return st;
}

Status EventTooBig(const char* fn, const std::string& consumer, int64_t id, size_t bytes, int64_t limit) {
  return Status::Error(std::string(fn) + ": change " + std::to_string(id) +
                       (bytes ? " is " + std::to_string(bytes) + " bytes of JSON, more" : " holds a value larger") +
                       " than this connection's SQLITE_LIMIT_LENGTH (" +
                       std::to_string(limit) + "); raise the limit (sqlite3_limit) or skip the change with "
                       "SELECT cdc_ack(" + NameInMessage(consumer) + ", " + std::to_string(id) + ")");
}

Status PollJson(sqlite3* db, const char* fn, const std::string& name, int64_t limit,
                std::string* out, int64_t* count, int64_t* last, int64_t* created) {
  ConsumerRow row;
  {
    Stmt st;
    CDC_RETURN_IF_ERROR(ReadConsumer(db, fn, name, RowFor::kPoll, 0, &st, &row));
  }
  CDC_RETURN_IF_ERROR(RequireLive(fn, name, row));
  const int64_t pos = row.pos;
  if (created) *created = row.created;
  CDC_RETURN_IF_ERROR(RefuseIfLeased(db, fn, name));  // one active reader per consumer (lease.h)
  CDC_RETURN_IF_ERROR(CheckCapture(db, fn));
  ReadRange r;
  r.after = pos;
  r.limit = limit;
  out->assign("[");
  *count = 0;
  // The result must fit in SQLITE_LIMIT_LENGTH: return fewer changes rather
  // than fail; only a single change too big for it is an error.
  const int64_t max_len = sqlite3_limit(db, SQLITE_LIMIT_LENGTH, -1);
  Status too_big;
  int64_t last_id = pos;
  Status read = ReadEvents(db, r, [&](const Event& e) {
    const size_t mark = out->size();
    if (*count) out->push_back(',');
    const size_t before = out->size();
    EventJson(out, e);
    if (static_cast<int64_t>(out->size()) + 1 > max_len) {
      if (*count == 0) too_big = EventTooBig(fn, name, e.id, out->size() - before, max_len);
      out->resize(mark);
      return false;
    }
    // After the first event, reserve for the batch to avoid regrowing.
    if ((*count)++ == 0 && limit > 1) {
      size_t guess = static_cast<size_t>(std::min<int64_t>(limit, 4096)) * (out->size() - before + 1);
      out->reserve(std::min<size_t>(guess, size_t{16} << 20));
    }
    last_id = e.id;
    return true;
  });
  if (!read.ok() && sqlite3_errcode(db) == SQLITE_TOOBIG) {
    // A value of the next change is itself over the limit: SQLite refuses
    // to read it. Return what came before it, or name it.
    if (*count > 0) {
      out->push_back(']');
      if (last) *last = last_id;
      return Status();
    }
    int64_t id = 0;
    if (QueryInt(db, "SELECT coalesce(min(id), 0) FROM main.__cdc_log WHERE id > " + std::to_string(last_id) +
                         " AND op <> 0", &id).ok() && id > 0) {
      return EventTooBig(fn, name, id, 0, max_len);
    }
  }
  CDC_RETURN_IF_ERROR(read);
  CDC_RETURN_IF_ERROR(too_big);
  out->push_back(']');
  if (last) *last = *count ? last_id : 0;
  // When it last read, for cdc_status and idle_timeout_ms (retention.h),
  // from what was read with the position.
  if (*count > 0 && row.have_meta) NoteReadKnown(db, name, row.now, row.seen, row.idle, false);
  return Status();
}

void SqlConsumerAdd(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  sqlite3* db = sqlite3_context_db_handle(ctx);
  const char* fn = "cdc_consumer_add";
  std::string name, mode = "earliest";
  Status st = ArgText(fn, argv, 0, "name", &name);
  if (st.ok() && argc > 1) {
    st = ArgText(fn, argv, 1, "start", &mode);
    if (st.ok() && mode != "earliest" && mode != "latest") {
      st = Status::Error(std::string(fn) + ": start must be 'earliest' or 'latest', not " + Literal(mode));
    }
  }
  if (st.ok()) st = RequireWritable(db, fn);
  int64_t pos = 0;
  if (st.ok()) {
    Savepoint sp(db, "cdc_consumer_add");
    st = sp.Begin();
    if (st.ok()) st = EnsureInternalTables(db);
    if (st.ok()) {
      Stmt q;
      st = q.Prepare(db, "SELECT pos FROM main.__cdc_consumers WHERE name = ?1");
      if (st.ok()) {
        q.Bind(1, name);
        int rc = q.Step();
        std::string lost;
        if (rc == SQLITE_ROW) {
          pos = q.Int(0);  // idempotent: an existing consumer keeps its place
          q = Stmt();
          st = LostReason(db, name, &lost);
        }
        if (rc == SQLITE_ROW && st.ok() && !lost.empty()) {
          // Invalidated by retention: start it again, from `start`.
          st = ForgetMarks(db, name);
          if (st.ok()) {
            st = QueryInt(db, mode == "latest" ? "SELECT coalesce(max(id), 0) FROM main.__cdc_log"
                                               : "SELECT coalesce(min(id) - 1, 0) FROM main.__cdc_log",
                          &pos);
          }
          Stmt up;
          if (st.ok()) {
            st = up.Prepare(db, "UPDATE main.__cdc_consumers SET pos = ?2, acked_ms = NULL, created_ms = " +
                                    std::string(kNowMs) + " WHERE name = ?1");
          }
          if (st.ok()) {
            up.Bind(1, name);
            up.Bind(2, pos);
            if (up.Step() != SQLITE_DONE) st = Status::FromDb(db, fn);
          }
        } else if (rc == SQLITE_ROW) {
          // kept its place
        } else if (rc != SQLITE_DONE) {
          st = Status::FromDb(db, fn);
        } else {
          q = Stmt();
          st = QueryInt(db, mode == "latest" ? "SELECT coalesce(max(id), 0) FROM main.__cdc_log"
                                             : "SELECT coalesce(min(id) - 1, 0) FROM main.__cdc_log",
                        &pos);
          Stmt ins;
          if (st.ok()) {
            st = ins.Prepare(db, std::string("INSERT INTO main.__cdc_consumers(name, pos, created_ms) "
                                             "VALUES(?1, ?2, ") + kNowMs + ")");
          }
          if (st.ok()) {
            ins.Bind(1, name);
            ins.Bind(2, pos);
            if (ins.Step() != SQLITE_DONE) st = Status::FromDb(db, fn);
          }
        }
      }
    }
    if (st.ok()) st = EnforceRetention(db);
    if (st.ok()) st = sp.Release();
  }
  if (!st.ok()) return ResultError(ctx, st);
  sqlite3_result_int64(ctx, pos);
}

void SqlConsumerDrop(sqlite3_context* ctx, int, sqlite3_value** argv) {
  sqlite3* db = sqlite3_context_db_handle(ctx);
  const char* fn = "cdc_consumer_drop";
  std::string name;
  Status st = ArgText(fn, argv, 0, "name", &name);
  if (st.ok()) st = RequireWritable(db, fn);
  bool exist = false;
  if (st.ok()) st = InternalTablesExist(db, &exist);  // an I/O error is not "no such consumer"
  if (st.ok() && !exist) st = Status::Error(NoConsumer(fn, name));
  if (st.ok()) {
    Savepoint sp(db, "cdc_consumer_drop");
    st = sp.Begin();
    Stmt del;
    if (st.ok()) st = del.Prepare(db, "DELETE FROM main.__cdc_consumers WHERE name = ?1");
    if (st.ok()) {
      del.Bind(1, name);
      if (del.Step() != SQLITE_DONE) st = Status::FromDb(db, fn);
      else if (sqlite3_changes(db) == 0) st = Status::Error(NoConsumer(fn, name));
      del = Stmt();
    }
    if (st.ok()) st = ForgetMarks(db, name);
    if (st.ok()) st = EnforceRetention(db);
    if (st.ok()) st = Prune(db);
    if (st.ok()) st = sp.Release();
  }
  if (!st.ok()) return ResultError(ctx, st);
  sqlite3_result_int(ctx, 1);
}

void SqlPoll(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  sqlite3* db = sqlite3_context_db_handle(ctx);
  const char* fn = "cdc_poll";
  std::string name;
  int64_t limit = 100;
  Status st = ArgText(fn, argv, 0, "name", &name);
  if (st.ok() && argc > 1) {
    st = ArgInt(fn, argv, 1, "limit", &limit);
    if (st.ok() && limit < 1) st = Status::Error("cdc_poll: limit must be at least 1");
  }
  std::string out;
  int64_t count = 0;
  PolledBatch polled;
  if (st.ok()) st = PollJson(db, fn, name, limit, &out, &count, &polled.last_id, &polled.created);
  if (!st.ok()) return ResultError(ctx, st);
  // The result is the string built, not a copy; it is also remembered for
  // cdc_ack(name) and cdc_ack(name, batch).
  auto text = std::make_shared<const std::string>(std::move(out));
  ResultSharedText(ctx, text);
  RememberPoll(db, name, polled, std::move(text));
}

namespace {

// What cdc_ack(name [, id | batch]) acks up to: the id given; the last id of
// the batch given (the JSON array cdc_poll returned: recognised when it is
// this connection's last poll of `name`, else read with json_extract); with
// no second argument, the last id of this connection's last cdc_poll of
// `name`. 0 for an empty batch: nothing to ack. When it reads the
// consumer's row for that id (to compare created_ms), *have_row says so.
Status AckTarget(sqlite3* db, const char* fn, const std::string& name, int argc, sqlite3_value** argv,
                 int64_t* id, Stmt* st, ConsumerRow* row, bool* have_row) {
  const std::string remedy = "pass the text cdc_poll returned, or the id of the last change handled";
  PolledBatch polled;
  *have_row = false;
  if (argc < 2) {
    if (!LastPoll(db, name, &polled)) {
      CDC_RETURN_IF_ERROR(ReadConsumer(db, fn, name, RowFor::kAck, 0, st, row));
      CDC_RETURN_IF_ERROR(RequireLive(fn, name, *row));  // no such consumer: say that first
      return Status::Error(std::string(fn) + ": this connection has not polled consumer " + NameInMessage(name) +
                           ": call cdc_poll first, or pass the id of the last change handled");
    }
    // The memory is of the consumer as it was: one dropped and added again
    // since is another consumer, whose position that id does not concern.
    CDC_RETURN_IF_ERROR(ReadConsumer(db, fn, name, RowFor::kAck, polled.last_id, st, row));
    if ((row->found ? row->created : -1) != polled.created) {
      return Status::Error(std::string(fn) + ": consumer " + NameInMessage(name) +
                           " was dropped or added again since this connection's last cdc_poll of it: poll again, "
                           "or pass the id of the last change handled");
    }
    *id = polled.last_id;
    *have_row = true;
    return Status();
  }
  if (sqlite3_value_type(argv[1]) != SQLITE_TEXT) return ArgInt(fn, argv, 1, "id", id);
  const char* text = reinterpret_cast<const char*>(sqlite3_value_text(argv[1]));
  const size_t n = static_cast<size_t>(sqlite3_value_bytes(argv[1]));
  if (!text) return Status::Error("out of memory", SQLITE_NOMEM);
  // The last batch polled here, unchanged: its last id is known. (The same
  // text of a consumer added again since says the same ids: parsed below.)
  if (IsLastPolledBatch(db, name, text, n, &polled)) {
    CDC_RETURN_IF_ERROR(ReadConsumer(db, fn, name, RowFor::kAck, polled.last_id, st, row));
    if ((row->found ? row->created : -1) == polled.created) {
      *id = polled.last_id;
      *have_row = true;
      return Status();
    }
  }
  Stmt q;
  CDC_RETURN_IF_ERROR(q.Prepare(
      db, "SELECT t, CASE WHEN t = 'array' THEN json_type(?1, '$[#-1]') END, "
          "CASE WHEN t = 'array' THEN json_type(?1, '$[#-1].id') END, "
          "CASE WHEN t = 'array' THEN json_extract(?1, '$[#-1].id') END "
          "FROM (SELECT CASE WHEN json_valid(?1) THEN json_type(?1) END AS t)"));
  sqlite3_bind_text64(q.get(), 1, text, n, SQLITE_STATIC, SQLITE_UTF8);
  if (q.Step() != SQLITE_ROW) return Status::FromDb(db, fn);
  if (q.IsNull(0)) return Status::Error(std::string(fn) + ": the batch is not valid JSON: " + remedy);
  if (q.Text(0) != "array") {
    return Status::Error(std::string(fn) + ": the batch must be the JSON array cdc_poll returned, not a JSON " +
                         q.Text(0) + " (an id is passed as an integer)");
  }
  if (q.IsNull(1)) {  // [] : nothing polled, nothing to ack
    *id = 0;
    return Status();
  }
  if (q.IsNull(2) || q.Text(2) != "integer") {
    return Status::Error(std::string(fn) + ": the batch's last element has no integer \"id\": " + remedy);
  }
  *id = q.Int(3);
  return Status();
}

}  // namespace

void SqlAck(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  sqlite3* db = sqlite3_context_db_handle(ctx);
  const char* fn = "cdc_ack";
  std::string name;
  int64_t id = 0, pos = 0;
  Stmt row_st;  // the consumer's row, read at most twice (ReadConsumer)
  ConsumerRow row;
  bool have_row = false;
  Status st = ArgText(fn, argv, 0, "name", &name);
  if (st.ok()) st = AckTarget(db, fn, name, argc, argv, &id, &row_st, &row, &have_row);
  if (st.ok()) st = RequireWritable(db, fn);
  if (st.ok()) st = Ack(db, fn, name, id, &row_st, &row, have_row, &pos);
  if (!st.ok()) return ResultError(ctx, st);
  sqlite3_result_int64(ctx, pos);
}

namespace {

Status StatusJson(sqlite3* db, std::string* out) {
  int64_t now = 0;
  CDC_RETURN_IF_ERROR(QueryInt(db, std::string("SELECT ") + kNowMs, &now));
  out->assign("{\"version\":\"" CDC_VERSION_STRING "\"");
  {
    // In rollback-journal modes a reader's lock keeps writers from
    // committing (SQLite's design): the mode says what delivery can cost.
    Stmt jm;
    CDC_RETURN_IF_ERROR(jm.Prepare(db, "PRAGMA main.journal_mode"));
    if (jm.Step() == SQLITE_ROW) {
      out->append(",\"journal_mode\":");
      JsonString(out, jm.Text(0));
    }
  }
  bool exist = false;
  CDC_RETURN_IF_ERROR(InternalTablesExist(db, &exist));
  if (!exist) {
    out->append(",\"log_rows\":0,\"last_id\":0,\"tables\":[],\"consumers\":[],\"listeners\":");
    AppendListenersJson(db, out);
    out->push_back('}');
    return Status();
  }
  int64_t rows = 0, last = 0;
  std::string source;
  CDC_RETURN_IF_ERROR(MetaText(db, "source_id", &source));
  if (!source.empty()) {
    out->append(",\"source_id\":");
    JsonString(out, source);
  }
  CDC_RETURN_IF_ERROR(QueryInt(db, "SELECT count(*) FROM main.__cdc_log", &rows));
  CDC_RETURN_IF_ERROR(QueryInt(db, "SELECT coalesce(max(id), 0) FROM main.__cdc_log", &last));
  out->append(",\"log_rows\":");
  JsonInt(out, rows);
  {
    // The log's pages, from the dbstat virtual table (Debian's SQLite has
    // it; a build without SQLITE_ENABLE_DBSTAT_VTAB gives null).
    Stmt bytes;
    out->append(",\"log_bytes\":");
    Status prep = bytes.Prepare(db, "SELECT coalesce(sum(pgsize), 0) FROM dbstat('main') WHERE name = '__cdc_log'");
    if (!prep.ok() && (prep.code() & 0xff) != SQLITE_ERROR) return prep;  // out of memory, I/O: not "no dbstat"
    if (prep.ok()) {
      if (bytes.Step() != SQLITE_ROW) return Status::FromDb(db, "cdc_status");
      JsonInt(out, bytes.Int(0));
    } else {
      out->append("null");  // no dbstat in this build
    }
  }
  const bool have_meta = !source.empty();
  out->append(",\"retention\":{");
  bool first = true;
  for (const char* key : {"max_log_rows", "max_log_bytes", "max_lag_ms", "idle_timeout_ms"}) {
    int64_t v = 0;
    CDC_RETURN_IF_ERROR(RetentionSetting(db, key, &v));
    if (!first) out->push_back(',');
    first = false;
    JsonString(out, key);
    out->push_back(':');
    JsonInt(out, v);
  }
  out->push_back('}');
  out->append(",\"last_id\":");
  JsonInt(out, last);
  out->append(",\"tables\":[");
  {
    std::vector<CapturedTable> tables;
    CDC_RETURN_IF_ERROR(ClassifyTables(db, nullptr, &tables));
    // Other triggers on the table created after the capture triggers.
    Stmt after;
    CDC_RETURN_IF_ERROR(after.Prepare(
        db, "SELECT count(*) FROM main.sqlite_schema AS m WHERE m.type = 'trigger' "
            "  AND m.tbl_name = ?2 COLLATE NOCASE AND substr(m.name, 1, 6) <> '__cdc_' "
            "  AND m.rowid > (SELECT min(c.rowid) FROM main.sqlite_schema AS c WHERE c.type = 'trigger' "
            "    AND c.name IN ('__cdc_' || ?1 || '_insert', '__cdc_' || ?1 || '_update', "
            "                   '__cdc_' || ?1 || '_delete'))"));
    int i = 0;
    for (auto& c : tables) {
      if (i++) out->push_back(',');
      // SQLite fires the newest trigger first: an AFTER trigger created after
      // cdc_setup that writes the table runs before the capture trigger, so
      // its change is logged before the change that caused it (a replica
      // applying in id order ends stale). cdc_setup again reorders them.
      bool triggers_after = false;
      if (c.drift == Drift::kIntact) {
        after.Bind(1, c.id);
        after.Bind(2, c.name);
        if (after.Step() != SQLITE_ROW) return Status::FromDb(db, "cdc_status");
        triggers_after = after.Int(0) > 0;
        after.Reset();
      }
      out->append("{\"name\":");
      JsonString(out, c.name);
      out->append(",\"shape\":");
      JsonInt(out, c.shape);
      out->append(",\"columns\":");
      out->append(c.columns);
      out->append(",\"state\":\"");
      out->append(DriftName(c.drift));
      out->append("\",\"on_schema_change\":");
      out->append(c.policy_error ? "\"error\"" : "\"resync\"");
      out->append(",\"resyncing\":");
      out->append(c.resyncing ? "true" : "false");
      const bool drift = c.drift != Drift::kIntact || triggers_after;
      out->append(",\"drift\":");
      out->append(drift ? "true" : "false");
      if (drift) {
        out->append(",\"drift_reason\":");
        JsonString(out, triggers_after ? std::string("triggers created after cdc_setup fire before capture; "
                                                     "run cdc_setup again")
                                       : c.detail);
      }
      out->push_back('}');
    }
  }
  out->append("],\"consumers\":[");
  {
    Stmt st;
    CDC_RETURN_IF_ERROR(st.Prepare(
        db, std::string("SELECT c.name, c.pos, "
            "(SELECT count(*) FROM main.__cdc_log WHERE id > c.pos AND op <> 0), "
            "(SELECT ts FROM main.__cdc_log WHERE id > c.pos AND op <> 0 ORDER BY id LIMIT 1), "
            "c.created_ms, c.acked_ms, ") +
            (have_meta ? "(SELECT value FROM main.__cdc_meta WHERE key = 'lost.' || c.name), "
                         "(SELECT value FROM main.__cdc_meta WHERE key = 'read.' || c.name) "
                       : "NULL, NULL ") +
            "FROM main.__cdc_consumers AS c ORDER BY c.name"));
    int rc, i = 0;
    while ((rc = st.Step()) == SQLITE_ROW) {
      if (i++) out->push_back(',');
      out->append("{\"name\":");
      JsonString(out, st.Text(0));
      out->append(",\"position\":");
      JsonInt(out, st.Int(1));
      out->append(",\"pending\":");
      JsonInt(out, st.Int(2));
      const bool lost = !st.IsNull(6);
      out->append(",\"lag_ms\":");
      JsonInt(out, st.IsNull(3) || lost ? 0 : std::max<int64_t>(0, now - st.Int(3)));
      // Unix ms. A read is recorded to within a tenth of idle_timeout_ms (at
      // most a minute), and an ack counts as one (retention.h).
      out->append(",\"created_ms\":");
      if (st.IsNull(4)) out->append("null");
      else JsonInt(out, st.Int(4));
      out->append(",\"read_ms\":");
      if (st.IsNull(5) && st.IsNull(7)) out->append("null");
      else JsonInt(out, std::max(st.IsNull(5) ? 0 : st.Int(5), st.IsNull(7) ? 0 : st.Int(7)));
      out->append(",\"acked_ms\":");
      if (st.IsNull(5)) out->append("null");
      else JsonInt(out, st.Int(5));
      out->append(lost ? ",\"state\":\"lost\",\"lost_reason\":" : ",\"state\":\"active\",\"lost_reason\":null");
      if (lost) JsonString(out, st.Text(6));
      out->push_back('}');
    }
    if (rc != SQLITE_DONE) return Status::FromDb(db, "cdc_status");
  }
  out->append("],\"listeners\":");
  AppendListenersJson(db, out);
  out->push_back('}');
  return Status();
}

}  // namespace

void SqlStatus(sqlite3_context* ctx, int, sqlite3_value**) {
  std::string out;
  Status st = StatusJson(sqlite3_context_db_handle(ctx), &out);
  if (!st.ok()) return ResultError(ctx, st);
  sqlite3_result_text64(ctx, out.data(), out.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
}

}  // namespace cdc
