#!/bin/bash
# The whole comparison under one hold of /tmp/vidstrata-heavy.lock: smoke runs, then before / after / before (/ after).
set -u
R=/tmp/search-speed/run.sh
COMMON="--videos 100000 --concurrency 1 4 16 --no-bare --check-queries 0"
echo "== lock acquired $(date -u +%FT%TZ) $(uptime)" >> /tmp/search-speed/times.log
$R smoke-after /tmp/after --videos 2000 --concurrency 1 --requests 10 --repeats 1 --no-bare --check-queries 0 --page-size 10 || exit 1
$R smoke-before /tmp/before --videos 10000 --concurrency 1 --requests 10 --repeats 1 --no-bare --check-queries 0 || exit 1
$R before-1 /tmp/before $COMMON
$R after-1 /tmp/after $COMMON --page-size 10
$R before-2 /tmp/before $COMMON
if [ "$(date -u +%H%M)" \< "0050" ] || [ "$(date -u +%H)" = "23" ]; then $R after-2 /tmp/after $COMMON --page-size 10; fi
QUIET="--videos 100000 --concurrency 1 16 --no-bare --check-queries 0"
$R before-3 /tmp/before $QUIET
$R after-3 /tmp/after $QUIET --page-size 10
echo "== pairs done $(date -u +%FT%TZ) $(uptime)" >> /tmp/search-speed/times.log
# appended while running: Triton text encode alone, each tree's repository and client (profile of the encode stage)
PY=/work/main/.venv/bin/python
for spec in "before:/tmp/before:" "after:/tmp/after:" "after-nopolicy:/tmp/after:--strip-queue-policy"; do
  IFS=: read label tree flag <<< "$spec"
  echo "== encode-$label start $(date -u +%FT%TZ) $(uptime)" >> /tmp/search-speed/times.log
  (cd $tree && $PY /tmp/search-speed/encode_profile.py $label $flag) > /tmp/search-speed/encode-$label.log 2>&1
  echo "== encode-$label end rc=$? $(date -u +%FT%TZ) $(uptime)" >> /tmp/search-speed/times.log
done
echo "== lock released $(date -u +%FT%TZ) $(uptime)" >> /tmp/search-speed/times.log
