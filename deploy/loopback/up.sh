#!/usr/bin/env bash
# The compose topology (deploy/compose.yaml) as processes on loopback: a
# 3-node nats-server cluster with JetStream (R3 streams survive a node
# lost) that requires the bridges' NKey, and two bridges that share one ack
# key and require client authentication (an API key), each given all three
# NATS URLs.
#
#   deploy/loopback/up.sh [DIR]      # DIR: the run directory (default: a new one under $TMPDIR)
#   . DIR/env                        # the addresses, for a shell or a test
#   deploy/loopback/down.sh DIR      # stops everything (DIR stays, with its logs)
#
# Binaries: $JETWAY_BIN (a directory holding bridge, nats-server and nk),
# or built into DIR/bin from this repository (go build: the pinned
# nats-server and nkeys of go.mod). Ports: $JETWAY_LOOPBACK_PORT_BASE and
# the 12 after it, or free ports picked at random. DIR holds: env, the
# generated configs (nats-N.conf), secrets/ (NKey seed, ack key, API key,
# auth config; mode 0700), data/ (JetStream stores), logs/, pids/.
# faults/loopback_test.go runs this script under load and faults.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

die() {
	echo "up.sh: $*" >&2
	exit 1
}

for tool in curl ps; do
	command -v "$tool" >/dev/null || die "needs $tool"
done

dir=${1:-}
if [[ -z $dir ]]; then
	dir=$(mktemp -d "${TMPDIR:-/tmp}/jetway-loopback.XXXXXX")
fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
# The path goes into configs and an env file unquoted.
[[ $dir =~ ^[A-Za-z0-9._/+-]+$ ]] || die "run directory $dir: use letters, digits and . _ / + - only"
if [[ -f $dir/env ]]; then
	die "$dir already holds a topology: $here/down.sh $dir first, or give another directory"
fi
umask 077
mkdir -p "$dir"/{logs,pids,secrets,data}

# Should anything below fail, stop what was started.
trap 'status=$?; if [[ $status -ne 0 ]]; then echo "up.sh: failed; stopping what was started (logs in $dir/logs)" >&2; "$here/down.sh" "$dir" >&2 || true; fi' EXIT

# --- binaries -------------------------------------------------------------
if [[ -n ${JETWAY_BIN:-} ]]; then
	bin=$JETWAY_BIN
else
	bin=$dir/bin
	echo "building bridge, nats-server and nk into $bin"
	(cd "$repo" && go build -o "$bin/" ./cmd/bridge github.com/nats-io/nats-server/v2 github.com/nats-io/nkeys/nk)
fi
for b in bridge nats-server nk; do
	[[ -x $bin/$b ]] || die "$bin/$b: missing or not executable (JETWAY_BIN must hold bridge, nats-server and nk)"
done

# --- ports ------------------------------------------------------------------
# 3 NATS client ports, 3 route ports, 3 monitoring ports, 2 × (gRPC, HTTP).
ports=()
in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if [[ -n ${JETWAY_LOOPBACK_PORT_BASE:-} ]]; then
	for i in $(seq 0 12); do
		p=$((JETWAY_LOOPBACK_PORT_BASE + i))
		in_use "$p" && die "port $p (JETWAY_LOOPBACK_PORT_BASE + $i) is in use"
		ports+=("$p")
	done
else
	# Below the ephemeral range, from which the kernel gives ports to
	# outgoing connections and to listeners on port 0 (other tests): a
	# port found free there could be taken before nats-server binds it.
	eph_lo=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
	((eph_lo > 12000)) || eph_lo=32768
	while [[ ${#ports[@]} -lt 13 ]]; do
		p=$((10000 + RANDOM % (eph_lo - 10000)))
		[[ " ${ports[*]} " == *" $p "* ]] && continue
		in_use "$p" && continue
		ports+=("$p")
	done
fi
nats_port=("${ports[@]:0:3}")
route_port=("${ports[@]:3:3}")
mon_port=("${ports[@]:6:3}")
grpc_port=("${ports[@]:9:2}")
http_port=("${ports[@]:11:2}")

# --- secrets ----------------------------------------------------------------
# What compose takes from deploy/secrets and .env, made here: the NATS
# NKey (seed, then public key), the shared ack key, and an API key whose
# hash the auth config holds.
sec=$dir/secrets
"$bin/nk" -gen user -pubout >"$sec/nats.nk"
nkey_public=$(sed -n 2p "$sec/nats.nk")
head -c 32 /dev/urandom | base64 >"$sec/ack-keys"
head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' >"$sec/api-key"
api_key_hash=$("$bin/bridge" hash-key <"$sec/api-key")
cat >"$sec/auth.yaml" <<EOF
# One identity with every right, for trying the topology out
# (deploy/examples/auth.yaml shows finer grants).
identities:
  - name: loopback
    api_key_hashes: ["$api_key_hash"]
    publish: {allow: [">"]}
    consume: {streams: [">"], create_durables: true}
    admin: {write: true}
EOF

# --- NATS -------------------------------------------------------------------
routes=""
for i in 0 1 2; do
	routes+="    nats-route://127.0.0.1:${route_port[$i]}"$'\n'
done
urls=""
for i in 0 1 2; do
	n=$((i + 1))
	urls+="${urls:+,}nats://127.0.0.1:${nats_port[$i]}"
	mkdir -p "$dir/data/nats-$n"
	# deploy/nats/nats-N.conf, on loopback.
	cat >"$dir/nats-$n.conf" <<EOF
server_name: nats-$n
listen: 127.0.0.1:${nats_port[$i]}
http: 127.0.0.1:${mon_port[$i]}

# The bridges' NKey (secrets/nats.nk holds its seed).
authorization {
  users: [
    {nkey: $nkey_public}
  ]
}

jetstream {
  store_dir: "$dir/data/nats-$n"
  max_memory_store: 256MB
  max_file_store: 1GB
}

# Routes are not authenticated: they listen on loopback only.
cluster {
  name: jetway
  listen: 127.0.0.1:${route_port[$i]}
  routes: [
$routes  ]
}
EOF
	"$bin/nats-server" -c "$dir/nats-$n.conf" >"$dir/logs/nats-$n.log" 2>&1 </dev/null &
	echo $! >"$dir/pids/nats-$n.pid"
done

alive() { kill -0 "$(cat "$dir/pids/$1.pid")" 2>/dev/null || die "$1 exited; last lines of $dir/logs/$1.log:"$'\n'"$(tail -n 20 "$dir/logs/$1.log")"; }

# wait_until SECONDS WHAT PROC CMD...: CMD every 100 ms until it succeeds.
wait_until() {
	local limit=$1 what=$2 proc=$3
	shift 3
	local end=$((SECONDS + limit))
	until "$@"; do
		alive "$proc"
		((SECONDS < end)) || die "$what: not within ${limit}s"
		sleep 0.1
	done
}
http_ok() { curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null; }
meta_leader() { curl -fsS --max-time 2 "http://127.0.0.1:$1/jsz" 2>/dev/null | grep -Eq '"leader": *"nats-[0-9]"'; }

echo "waiting for the NATS cluster and its JetStream meta leader"
for i in 0 1 2; do
	wait_until 30 "nats-$((i + 1)) healthy" "nats-$((i + 1))" http_ok "http://127.0.0.1:${mon_port[$i]}/healthz"
done
for i in 0 1 2; do
	wait_until 30 "nats-$((i + 1)) knowing the meta leader" "nats-$((i + 1))" meta_leader "${mon_port[$i]}"
done

# --- bridges ----------------------------------------------------------------
# Their settings are the flags below alone: JETWAY_* variables of the
# caller's environment (which the bridge reads) are not passed on.
unset_jetway=()
while IFS= read -r v; do unset_jetway+=(-u "$v"); done < <(compgen -e | grep '^JETWAY_' || true)
for i in 0 1; do
	n=$((i + 1))
	env ${unset_jetway[@]+"${unset_jetway[@]}"} "$bin/bridge" serve \
		--nats-url "$urls" \
		--nats-nkey-file "$sec/nats.nk" \
		--ack-keys-file "$sec/ack-keys" \
		--auth-config "$sec/auth.yaml" \
		--grpc-listen "127.0.0.1:${grpc_port[$i]}" \
		--http-listen "127.0.0.1:${http_port[$i]}" \
		--shutdown-timeout 5s \
		>"$dir/logs/bridge-$n.log" 2>&1 </dev/null &
	echo $! >"$dir/pids/bridge-$n.pid"
done
echo "waiting for both bridges' /readyz"
for i in 0 1; do
	wait_until 30 "bridge-$((i + 1)) ready" "bridge-$((i + 1))" http_ok "http://127.0.0.1:${http_port[$i]}/readyz"
done

# --- the env file -----------------------------------------------------------
{
	echo "# The loopback topology of $dir (deploy/loopback/up.sh). Source it: . $dir/env"
	echo "export JETWAY_LOOPBACK_DIR=$dir"
	echo "export NATS_URLS=$urls"
	for i in 0 1 2; do
		n=$((i + 1))
		echo "export NATS_${n}_URL=nats://127.0.0.1:${nats_port[$i]}"
		echo "export NATS_${n}_MONITOR=http://127.0.0.1:${mon_port[$i]}"
		echo "export NATS_${n}_PID_FILE=$dir/pids/nats-$n.pid"
	done
	echo "# The bridges' NATS user: its NKey seed (nats --nkey, nats.go NkeyOptionFromSeed)."
	echo "export NATS_NKEY_FILE=$sec/nats.nk"
	for i in 0 1; do
		n=$((i + 1))
		echo "export BRIDGE_${n}_GRPC=127.0.0.1:${grpc_port[$i]}"
		echo "export BRIDGE_${n}_HTTP=http://127.0.0.1:${http_port[$i]}"
		echo "export BRIDGE_${n}_PID_FILE=$dir/pids/bridge-$n.pid"
		echo "export BRIDGE_${n}_LOG=$dir/logs/bridge-$n.log"
	done
	echo "export BRIDGE_GRPC_ADDRS=127.0.0.1:${grpc_port[0]},127.0.0.1:${grpc_port[1]}"
	echo "# The client API key (Authorization: ApiKey <key>), for the identity in secrets/auth.yaml."
	echo "export JETWAY_API_KEY_FILE=$sec/api-key"
} >"$dir/env.tmp"
mv "$dir/env.tmp" "$dir/env"

cat <<EOF
Up: 3 nats-server (JetStream cluster "jetway") and 2 bridges, in $dir
  NATS      $urls (monitoring :${mon_port[0]} :${mon_port[1]} :${mon_port[2]})
  bridge-1  gRPC 127.0.0.1:${grpc_port[0]}  HTTP http://127.0.0.1:${http_port[0]}
  bridge-2  gRPC 127.0.0.1:${grpc_port[1]}  HTTP http://127.0.0.1:${http_port[1]}
  logs      $dir/logs/

Try it (an R3 stream; publish through one bridge, fetch and ack through the other):
  . $dir/env; KEY=\$(cat "\$JETWAY_API_KEY_FILE")
  curl -s -X POST "\$BRIDGE_1_HTTP/v1/streams" -H "Authorization: ApiKey \$KEY" \\
    -H 'Content-Type: application/json' -d '{"name":"ORDERS","subjects":["orders.>"],"replicas":3}'
  curl -s -X POST "\$BRIDGE_1_HTTP/v1/subjects/orders.new:publish" -H "Authorization: ApiKey \$KEY" \\
    -H 'Content-Type: application/json' -d '{"text":"hello"}'
  curl -s -X POST "\$BRIDGE_2_HTTP/v1/streams/ORDERS/consumers" -H "Authorization: ApiKey \$KEY" \\
    -H 'Content-Type: application/json' -d '{"name":"billing","ack_wait":"30s"}'
  curl -s -X POST "\$BRIDGE_2_HTTP/v1/streams/ORDERS/consumers/billing:fetch" -H "Authorization: ApiKey \$KEY" \\
    -H 'Content-Type: application/json' -d '{"batch":10,"wait":"2s","format":"PAYLOAD_FORMAT_TEXT"}'
  curl -s "\$BRIDGE_1_HTTP/v1/streams/ORDERS" -H "Authorization: ApiKey \$KEY"   # cluster.leader: the stream's leader
  curl -s "\$BRIDGE_1_HTTP/readyz"; curl -s "\$BRIDGE_2_HTTP/readyz"
  kill -9 \$(cat "\$NATS_1_PID_FILE")   # a node lost: R3 streams keep serving
Stop: $here/down.sh $dir
EOF
