# Builds SQLite from an amalgamation (sqlite3.c + sqlite3.h) as a shared
# libsqlite3.so.0 in ${CMAKE_BINARY_DIR}/sqlite-latest, so that the whole test
# suite runs against it: the gtest binary links it, and every test process
# (/usr/bin/python3's sqlite3 module, cdc-stream ...) gets it through
# LD_LIBRARY_PATH, set for ctest by sqlite_amalgamation_env.cmake. Only the
# sqlite3 shell stays on Debian's SQLite (see below).
# The extension itself is still compiled against Debian's headers: one cdc.so,
# loaded into a newer SQLite, as users do.
#
#   cmake -DCDC_SQLITE_AMALGAMATION=/dir/with/sqlite3.c ...   (or `make test-sqlite-latest`)
find_program(SQLITE3_SHELL_DEBIAN sqlite3 REQUIRED)
get_filename_component(_amalg "${CDC_SQLITE_AMALGAMATION}" ABSOLUTE)
if(NOT IS_DIRECTORY "${_amalg}")
  get_filename_component(_amalg "${_amalg}" DIRECTORY)
endif()
if(NOT EXISTS "${_amalg}/sqlite3.c" OR NOT EXISTS "${_amalg}/sqlite3.h")
  message(FATAL_ERROR "CDC_SQLITE_AMALGAMATION: no sqlite3.c/sqlite3.h in ${_amalg}")
endif()
file(STRINGS "${_amalg}/sqlite3.h" _ver REGEX "^#define SQLITE_VERSION +\"")
string(REGEX REPLACE ".*\"(.*)\".*" "\\1" CDC_SQLITE_LATEST_VERSION "${_ver}")
message(STATUS "sqlite-cdc: testing against SQLite ${CDC_SQLITE_LATEST_VERSION} from ${_amalg}")

add_library(sqlite3_latest SHARED "${_amalg}/sqlite3.c")
set_target_properties(sqlite3_latest PROPERTIES
  OUTPUT_NAME sqlite3 VERSION 0 SOVERSION 0
  LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/sqlite-latest
  C_VISIBILITY_PRESET default)
target_include_directories(sqlite3_latest PUBLIC "${_amalg}")
# What Debian's libsqlite3 offers that its sqlite3 shell and Python module call
# (column metadata, load_extension, URIs), thread-safe like Debian's build.
# Compiled quickly (-O1, no debug info): this build exists to run tests.
target_compile_definitions(sqlite3_latest PRIVATE
  SQLITE_THREADSAFE=1 SQLITE_ENABLE_COLUMN_METADATA SQLITE_ENABLE_LOAD_EXTENSION=1
  SQLITE_USE_URI=1 SQLITE_ENABLE_MATH_FUNCTIONS SQLITE_ENABLE_DBSTAT_VTAB
  SQLITE_ENABLE_PREUPDATE_HOOK SQLITE_ENABLE_SESSION SQLITE_ENABLE_FTS5 SQLITE_ENABLE_RTREE SQLITE_ENABLE_GEOPOLY
  SQLITE_MAX_VARIABLE_NUMBER=250000 SQLITE_SECURE_DELETE
  SQLITE_DQS=0)  # as better-sqlite3 builds it: "text" is never a string literal
target_compile_options(sqlite3_latest PRIVATE -O1 -g0 -w)
target_link_libraries(sqlite3_latest PRIVATE Threads::Threads ${CMAKE_DL_LIBS} m)

# Debian's sqlite3 shell checks that libsqlite3 is the one it was built with,
# and no shell.c ships with the amalgamation: shell-based tests run this
# wrapper, i.e. Debian's shell on Debian's SQLite, on the same files. It is
# first in ctest's PATH, so scripts that run `sqlite3` get it too.
file(WRITE ${CMAKE_BINARY_DIR}/sqlite-latest/bin/sqlite3
  "#!/bin/sh\nunset LD_LIBRARY_PATH\nexec ${SQLITE3_SHELL_DEBIAN} \"\$@\"\n")
file(CHMOD ${CMAKE_BINARY_DIR}/sqlite-latest/bin/sqlite3
  PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)

# ctest runs this before any test: every test process finds the new library.
file(WRITE ${CMAKE_BINARY_DIR}/sqlite_amalgamation_env.cmake
  "set(ENV{LD_LIBRARY_PATH} \"${CMAKE_BINARY_DIR}/sqlite-latest:\$ENV{LD_LIBRARY_PATH}\")\n"
  "set(ENV{PATH} \"${CMAKE_BINARY_DIR}/sqlite-latest/bin:\$ENV{PATH}\")\n"
  "set(ENV{CDC_SQLITE_EXPECT_VERSION} \"${CDC_SQLITE_LATEST_VERSION}\")\n")
