#!/usr/bin/env bash
# A stand-in for sacct: success, failed or running for a job id from submit.sh.
f=${WP_FAKE_CLUSTER:?}/$1.exit
if [ -f "$f" ]; then
  if [ "$(cat "$f")" = 0 ]; then echo success; else echo failed; fi
else
  echo running
fi
