#!/usr/bin/env bash
# Stops the loopback topology that deploy/loopback/up.sh started in DIR:
# the bridges first (SIGTERM: they drain; SIGKILL after 20 s), then the
# NATS servers (SIGTERM; SIGKILL after 15 s). Only processes whose pid file
# is in DIR and whose command line names DIR are signalled: a pid reused by
# another process is left alone. DIR itself (logs, stores) stays:
# rm -rf DIR when done with it.
#
#   deploy/loopback/down.sh DIR
set -euo pipefail

[[ $# -eq 1 ]] || {
	echo "usage: down.sh DIR (the run directory up.sh printed)" >&2
	exit 2
}
dir=$(cd "$1" && pwd)
[[ -d $dir/pids ]] || {
	echo "down.sh: $dir has no pids/: not a directory up.sh made" >&2
	exit 1
}

# ours PIDFILE: the pid in it, if that process runs and is ours.
ours() {
	local pid
	pid=$(cat "$1" 2>/dev/null) || return 1
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	kill -0 "$pid" 2>/dev/null || return 1
	[[ $(ps -o args= -p "$pid" 2>/dev/null) == *"$dir/"* ]] || return 1
	echo "$pid"
}

# stop GRACE NAME...: SIGTERM each, wait up to GRACE seconds, SIGKILL the rest.
stop() {
	local grace=$1
	shift
	local pids=() name pid
	for name in "$@"; do
		if pid=$(ours "$dir/pids/$name.pid"); then
			kill -TERM "$pid" 2>/dev/null || true
			pids+=("$pid")
			echo "stopping $name (pid $pid)"
		fi
		rm -f "$dir/pids/$name.pid"
	done
	local end=$((SECONDS + grace))
	for pid in "${pids[@]}"; do
		while kill -0 "$pid" 2>/dev/null && [[ $(ps -o stat= -p "$pid" 2>/dev/null) != Z* ]]; do
			if ((SECONDS >= end)); then
				echo "pid $pid still running after ${grace}s: SIGKILL"
				kill -KILL "$pid" 2>/dev/null || true
				break
			fi
			sleep 0.1
		done
	done
}

stop 20 bridge-1 bridge-2
stop 15 nats-1 nats-2 nats-3
rm -f "$dir/env"
echo "stopped; logs and stores stay in $dir"
