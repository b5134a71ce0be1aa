#!/bin/sh
# summary.sh REPORT SEED — totals of a fault campaign's report (one line per
# loop or crash run set, written by cdc_faults with CDC_FAULTS_REPORT).
report=$1
seed=$2
awk -v seed="$seed" '
  /^loop / {
    split($3, k, "-"); kind = k[1]; if (kind != "oom" && kind != "new") kind = "io";
    for (i = 4; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    loops[kind]++; ops[$2] = 1; points[kind] += v["points"]; tried[kind] += v["attempts"]; failed[kind] += v["failed"]
    if ($NF != "ok") problems++
  }
  /^crash / {
    for (i = 3; i <= NF; i++) { split($i, kv, "="); c[$2, kv[1]] += kv[2] }
    modes[$2] = 1
  }
  END {
    n = 0; for (o in ops) n++
    printf "fault campaign, seed %s: %d operations\n", seed, n
    split("oom new io", kinds, " ")
    for (j = 1; j <= 3; j++) {
      kk = kinds[j]
      name = kk == "oom" ? "allocations (SQLite + C++)" : kk == "new" ? "C++ new only" : "I/O calls"
      printf "  %-28s %5d loops, %9d fault points, %7d tried: %7d failed cleanly, the rest succeeded exactly\n", name, loops[kk], points[kk], tried[kk], failed[kk]
    }
    for (m in modes) printf "  power loss %-13s %5d runs, %d crashed, %d returned commits lost\n", m, c[m, "runs"], c[m, "crashed"], c[m, "lost_returned_commits"]
    printf "  loops with problems: %d\n", problems + 0
  }' "$report"
