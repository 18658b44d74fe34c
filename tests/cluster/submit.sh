#!/usr/bin/env bash
# A stand-in for sbatch: run the job script in the background, print a job id.
set -eu
dir=${WP_FAKE_CLUSTER:?}
id=job$(date +%s%N)
( bash "$1" > "$dir/$id.out" 2>&1; echo $? > "$dir/$id.exit.tmp"; mv "$dir/$id.exit.tmp" "$dir/$id.exit" ) > /dev/null 2>&1 &
echo "$id"
