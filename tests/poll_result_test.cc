// poll_result_test.cc — cdc_poll's result is the string it built, shared
// with the memory cdc_ack(name) and cdc_ack(name, batch) use (last_poll.h),
// not a copy: it must stay valid while SQLite holds it, whatever later polls
// and closes do to that memory, and in a UTF-16 database too.
#include <gtest/gtest.h>

#include <string>

#include "testing.h"

using cdctest::Db;
using cdctest::TempDir;

namespace {

std::string ColumnText(sqlite3_stmt* st, int i) {
  const unsigned char* p = sqlite3_column_text(st, i);
  return p ? std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(st, i)))
           : std::string("NULL");
}

}  // namespace

// Two polls in one statement, then a third in another statement that
// replaces what the connection remembers: the first statement's values
// are unchanged, and cdc_ack(name) acks what was polled last.
TEST(PollResult, OutlivesTheNextPollOfTheConsumer) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v); SELECT cdc_setup('t'); SELECT cdc_consumer_add('c');"
          "INSERT INTO t(v) VALUES (1.5), ('x'), (3)");
  sqlite3_stmt* both = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db.get(), "SELECT cdc_poll('c', 2), cdc_poll('c', 2)", -1, &both, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(both), SQLITE_ROW);
  const std::string first = ColumnText(both, 0);
  EXPECT_NE(first.find("\"v\":1.5"), std::string::npos) << first;
  EXPECT_EQ(ColumnText(both, 1), first);
  const char* held = reinterpret_cast<const char*>(sqlite3_column_text(both, 0));
  EXPECT_EQ(db.One("SELECT json_array_length(cdc_poll('c', 1))"), "1");  // replaces the memory
  EXPECT_EQ(std::string(held, first.size()), first);
  EXPECT_EQ(ColumnText(both, 1), first);
  EXPECT_EQ(db.One("SELECT cdc_ack('c')"), "1");  // the last poll's last id
  EXPECT_EQ(sqlite3_step(both), SQLITE_DONE);
  sqlite3_finalize(both);
  EXPECT_EQ(db.One("SELECT json_extract(cdc_poll('c'), '$[0].id')"), "2");
}

// A result still held when the connection that polled forgets its memory:
// a second connection polls, its statement outlives the first connection.
TEST(PollResult, OutlivesTheConnectionsMemory) {
  TempDir tmp;
  Db setup(tmp.File("t.db"));
  setup.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v); SELECT cdc_setup('t'); SELECT cdc_consumer_add('c');"
             "INSERT INTO t(v) VALUES (1), (2)");
  std::string text;
  {
    Db db(tmp.File("t.db"));
    sqlite3_stmt* st = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db.get(), "SELECT cdc_poll('c')", -1, &st, nullptr), SQLITE_OK);
    ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
    text = ColumnText(st, 0);
    EXPECT_EQ(db.One("SELECT cdc_ack('c', " + std::string("'") + text + "')"), "2");
    EXPECT_EQ(ColumnText(st, 0), text);
    sqlite3_finalize(st);
  }  // closes: its memory is dropped
  EXPECT_NE(text.find("\"id\":2"), std::string::npos) << text;
  EXPECT_EQ(setup.One("SELECT cdc_poll('c')"), "[]");
}

// In a UTF-16 database SQLite converts the result (and lets go of the
// shared text at once); the batch still acks as itself.
TEST(PollResult, Utf16Database) {
  TempDir tmp;
  Db db(tmp.File("t.db"));
  db.Exec("PRAGMA encoding = 'UTF-16le'; CREATE TABLE t(id INTEGER PRIMARY KEY, v); SELECT cdc_setup('t');"
          "SELECT cdc_consumer_add('c'); INSERT INTO t(v) VALUES ('é'), (2.25)");
  EXPECT_EQ(db.One("PRAGMA encoding"), "UTF-16le");
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db.get(), "SELECT cdc_poll('c')", -1, &st, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  const std::string text = ColumnText(st, 0);
  sqlite3_finalize(st);
  EXPECT_NE(text.find("\"v\":\"\xC3\xA9\""), std::string::npos) << text;
  EXPECT_NE(text.find("\"v\":2.25"), std::string::npos) << text;
  sqlite3_stmt* ack = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db.get(), "SELECT cdc_ack('c', ?1)", -1, &ack, nullptr), SQLITE_OK);
  sqlite3_bind_text(ack, 1, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
  ASSERT_EQ(sqlite3_step(ack), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int64(ack, 0), 2);
  sqlite3_finalize(ack);
}
