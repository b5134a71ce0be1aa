// changes_vtab.cc — the cdc_changes eponymous table-valued virtual table.
//
//   SELECT id, ts, tbl, op, before, after FROM cdc_changes('name');
//       the consumer's unacked changes, in id order
//   SELECT * FROM cdc_changes WHERE id > 100 AND tbl = 'orders';
//       every retained change, filtered
//
// Declared schema:
//   CREATE TABLE x(id, ts, tbl, op, before, after, reason, consumer HIDDEN)
// `before` / `after` are the images as JSON text (NULL where the op has none).
//
// xBestIndex uses these constraints; idxNum has one bit per kind and xFilter
// receives its arguments in bit order:
//   kConsumer  consumer = ?     (the table-valued-function argument)
//   kIdGt      id > ?           kIdGe  id >= ?
//   kIdLt      id < ?           kIdLe  id <= ?
//   kIdEq      id = ?
//   kTblEq     tbl = ?     (BINARY collation only)
// Only the consumer argument is omitted: id and tbl values narrow the scan
// to a superset and SQLite checks them again (see NarrowById).
// Rows come out in id order, so ORDER BY id is consumed.
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>

#include "delivery.h"
#include "drift.h"

namespace cdc {

namespace {

enum Column { kColId, kColTs, kColTbl, kColOp, kColBefore, kColAfter, kColReason, kColConsumer };
enum Bits { kConsumer = 1, kIdGt = 2, kIdGe = 4, kIdLt = 8, kIdLe = 16, kIdEq = 32, kTblEq = 64 };

struct Vtab {
  sqlite3_vtab base;
  sqlite3* db;
};

struct Cursor {
  sqlite3_vtab_cursor base;
  LogCursor log;
  bool eof = true;
};

int Connect(sqlite3* db, void*, int, const char* const*, sqlite3_vtab** out, char**) {
  int rc = sqlite3_declare_vtab(db, "CREATE TABLE x(id, ts, tbl, op, before, after, reason, consumer HIDDEN)");
  if (rc != SQLITE_OK) return rc;
  auto* v = static_cast<Vtab*>(sqlite3_malloc(sizeof(Vtab)));
  if (!v) return SQLITE_NOMEM;
  memset(v, 0, sizeof *v);
  v->db = db;
  sqlite3_vtab_config(db, SQLITE_VTAB_DIRECTONLY);
  *out = &v->base;
  return SQLITE_OK;
}

int Disconnect(sqlite3_vtab* v) {
  sqlite3_free(v);
  return SQLITE_OK;
}

int BestIndex(sqlite3_vtab*, sqlite3_index_info* info) {
  int slot[7];  // constraint index per bit position, -1 when unused
  for (int& s : slot) s = -1;
  bool consumer_unusable = false;
  for (int i = 0; i < info->nConstraint; i++) {
    const auto& c = info->aConstraint[i];
    int bit = -1;
    if (c.iColumn == kColConsumer && c.op == SQLITE_INDEX_CONSTRAINT_EQ) {
      if (!c.usable) { consumer_unusable = true; continue; }
      bit = 0;
    } else if (!c.usable) {
      continue;
    } else if (c.iColumn == kColId) {
      switch (c.op) {
        case SQLITE_INDEX_CONSTRAINT_GT: bit = 1; break;
        case SQLITE_INDEX_CONSTRAINT_GE: bit = 2; break;
        case SQLITE_INDEX_CONSTRAINT_LT: bit = 3; break;
        case SQLITE_INDEX_CONSTRAINT_LE: bit = 4; break;
        case SQLITE_INDEX_CONSTRAINT_EQ: bit = 5; break;
        default: break;
      }
    } else if (c.iColumn == kColTbl && c.op == SQLITE_INDEX_CONSTRAINT_EQ &&
               sqlite3_stricmp(sqlite3_vtab_collation(info, i), "BINARY") == 0) {
      bit = 6;  // tbl = ? COLLATE NOCASE (say) is left to SQLite
    }
    if (bit >= 0 && slot[bit] < 0) slot[bit] = i;
  }
  // A plan without the consumer argument when one was given is unusable.
  if (consumer_unusable && slot[0] < 0) return SQLITE_CONSTRAINT;
  int argv = 0, idx = 0;
  double cost = 1e6;
  for (int b = 0; b < 7; b++) {
    if (slot[b] < 0) continue;
    idx |= 1 << b;
    info->aConstraintUsage[slot[b]].argvIndex = ++argv;
    // Only the consumer argument is omitted. The id and tbl constraints only
    // narrow the scan to a superset (Filter cannot know the affinity the
    // comparison applies); SQLite checks them again.
    info->aConstraintUsage[slot[b]].omit = (b == 0);
    cost /= (b == 5 ? 1000 : 4);
  }
  info->idxNum = idx;
  info->estimatedCost = cost;
  info->estimatedRows = static_cast<sqlite3_int64>(cost);
  if (info->nOrderBy == 1 && info->aOrderBy[0].iColumn == kColId && !info->aOrderBy[0].desc) {
    info->orderByConsumed = 1;
  }
  return SQLITE_OK;
}

int Open(sqlite3_vtab*, sqlite3_vtab_cursor** out) {
  auto* c = new (std::nothrow) Cursor();
  if (!c) return SQLITE_NOMEM;
  *out = &c->base;
  return SQLITE_OK;
}

int Close(sqlite3_vtab_cursor* cur) {
  delete reinterpret_cast<Cursor*>(cur);
  return SQLITE_OK;
}

int Fail(sqlite3_vtab_cursor* cur, const std::string& msg) {
  sqlite3_free(cur->pVtab->zErrMsg);
  cur->pVtab->zErrMsg = sqlite3_mprintf("%s", msg.c_str());
  return SQLITE_ERROR;
}

int NextImpl(sqlite3_vtab_cursor* cur) {
  auto* c = reinterpret_cast<Cursor*>(cur);
  bool have = false;
  Status st = c->log.Next(&have);
  if (!st.ok()) return Fail(cur, "cdc_changes: " + st.message());
  c->eof = !have;
  return SQLITE_OK;
}

// Narrows r to the ids that can satisfy "id <op> x" (op: one kId* bit).
// The result may be a superset (SQLite re-checks): only INTEGER and REAL
// values narrow; a TEXT or BLOB value may compare either way depending on the
// affinity of its expression, so it narrows nothing. Returns false when no id
// can match (a NULL, or a bound past the int64 range).
bool NarrowById(ReadRange* r, int op, sqlite3_value* x) {
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  constexpr double k2p63 = 9223372036854775808.0;
  int t = sqlite3_value_type(x);
  if (t == SQLITE_NULL) return false;
  if (t != SQLITE_INTEGER && t != SQLITE_FLOAT) return true;
  // lo: the smallest id allowed (kMin: none); hi: the largest (kMax: none).
  int64_t lo = kMin, hi = kMax;
  bool want_lo = op == kIdGt || op == kIdGe || op == kIdEq;
  bool want_hi = op == kIdLt || op == kIdLe || op == kIdEq;
  bool strict = op == kIdGt || op == kIdLt;
  if (t == SQLITE_INTEGER) {
    int64_t v = sqlite3_value_int64(x);
    if (want_lo) {
      if (strict && v == kMax) return false;
      lo = strict ? v + 1 : v;
    }
    if (want_hi) {
      if (strict && v == kMin) return false;
      hi = strict ? v - 1 : v;
    }
  } else {
    double d = sqlite3_value_double(x);
    if (want_lo) {
      double l = strict ? std::floor(d) + 1 : std::ceil(d);
      if (l >= k2p63) return false;
      if (l > -k2p63) lo = static_cast<int64_t>(l);
    }
    if (want_hi) {
      double h = strict ? std::ceil(d) - 1 : std::floor(d);
      if (h < -k2p63) return false;
      if (h < k2p63) hi = static_cast<int64_t>(h);
    }
  }
  if (lo != kMin) r->after = std::max(r->after, lo - 1);
  r->upto = std::min(r->upto, hi);
  return r->upto > r->after;
}

int FilterImpl(sqlite3_vtab_cursor* cur, int idx, sqlite3_value** argv) {
  auto* c = reinterpret_cast<Cursor*>(cur);
  sqlite3* db = reinterpret_cast<Vtab*>(cur->pVtab)->db;
  c->eof = true;
  c->log.Close();
  ReadRange r;
  int a = 0;
  bool empty = false;
  if (idx & kConsumer) {
    sqlite3_value* x = argv[a++];
    if (sqlite3_value_type(x) != SQLITE_TEXT) {
      return Fail(cur, "cdc_changes: the consumer argument must be a consumer name (text)");
    }
    std::string name(reinterpret_cast<const char*>(sqlite3_value_text(x)),
                     static_cast<size_t>(sqlite3_value_bytes(x)));
    int64_t pos = 0;
    Status st = ConsumerPosition(db, "cdc_changes", name, &pos);
    if (!st.ok()) return Fail(cur, st.message());
    r.after = pos;
  }
  for (int b : {kIdGt, kIdGe, kIdLt, kIdLe, kIdEq}) {
    if (idx & b) empty |= !NarrowById(&r, b, argv[a++]);
  }
  if (idx & kTblEq) {
    sqlite3_value* x = argv[a++];
    if (sqlite3_value_type(x) == SQLITE_NULL) {
      empty = true;
    } else if (sqlite3_value_type(x) == SQLITE_TEXT) {
      r.by_table = true;
      r.table.assign(reinterpret_cast<const char*>(sqlite3_value_text(x)),
                     static_cast<size_t>(sqlite3_value_bytes(x)));
    }  // another type: compared by SQLite with its affinity rules
  }
  if (empty) return SQLITE_OK;
  bool exist = false;
  Status ex = InternalTablesExist(db, &exist);
  if (!ex.ok()) return Fail(cur, "cdc_changes: " + ex.message());
  if (!exist) return SQLITE_OK;
  Status st = CheckCapture(db, "cdc_changes");
  if (!st.ok()) return Fail(cur, st.message());
  st = c->log.Open(db, r);
  if (!st.ok()) return Fail(cur, "cdc_changes: " + st.message());
  return NextImpl(cur);
}

// The methods that allocate, behind a guard: no C++ exception reaches SQLite.
int Next(sqlite3_vtab_cursor* cur) noexcept {
  try {
    return NextImpl(cur);
  } catch (...) {
    return SQLITE_NOMEM;
  }
}

int Filter(sqlite3_vtab_cursor* cur, int idx, const char*, int, sqlite3_value** argv) noexcept {
  try {
    return FilterImpl(cur, idx, argv);
  } catch (...) {
    return SQLITE_NOMEM;
  }
}

int Eof(sqlite3_vtab_cursor* cur) { return reinterpret_cast<Cursor*>(cur)->eof; }

int ColumnValue(sqlite3_vtab_cursor* cur, sqlite3_context* ctx, int col) {
  const Event& e = reinterpret_cast<Cursor*>(cur)->log.event();
  switch (col) {
    case kColId: sqlite3_result_int64(ctx, e.id); break;
    case kColTs: sqlite3_result_int64(ctx, e.ts); break;
    case kColTbl: sqlite3_result_text(ctx, e.table.c_str(), static_cast<int>(e.table.size()), SQLITE_TRANSIENT); break;
    case kColOp: sqlite3_result_text(ctx, OpName(e.op), -1, SQLITE_STATIC); break;
    case kColBefore:
      if (e.has_before) sqlite3_result_text64(ctx, e.before.data(), e.before.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
      break;
    case kColAfter:
      if (e.has_after) sqlite3_result_text64(ctx, e.after.data(), e.after.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
      break;
    case kColReason:  // markers caused by a schema change (drift.cc)
      if (!e.reason.empty()) {
        sqlite3_result_text64(ctx, e.reason.data(), e.reason.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
      }
      break;
    default: break;  // consumer: NULL
  }
  return SQLITE_OK;
}

int Rowid(sqlite3_vtab_cursor* cur, sqlite3_int64* rowid) {
  *rowid = reinterpret_cast<Cursor*>(cur)->log.event().id;
  return SQLITE_OK;
}

const sqlite3_module kModule = {
    /* iVersion */ 0,
    /* xCreate */ nullptr,  // eponymous only
    Connect, BestIndex, Disconnect,
    /* xDestroy */ nullptr,
    Open, Close, Filter, Next, Eof, ColumnValue, Rowid,
    nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
    nullptr, nullptr, nullptr, nullptr};

}  // namespace

const sqlite3_module* ChangesModule() { return &kModule; }

}  // namespace cdc
