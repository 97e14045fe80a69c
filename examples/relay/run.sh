#!/usr/bin/env bash
# Starts fake-dns (127.0.0.1:5353) and two reference servers, A for a.test on 127.0.0.2 and
# B for b.test on 127.0.0.3, waits until they answer, and stops all three on Ctrl-C or when
# one of them exits. Logs go to examples/relay/*.log, mail to examples/relay/data-{a,b}/.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=$root/target/release

if [[ ! -x $bin/reference-server || ! -x $bin/fake-dns ]]; then
    (cd "$root" && cargo build --release -p reference-server -p fake-dns)
fi

pids=()
stop() {
    trap - EXIT INT TERM
    if ((${#pids[@]})); then
        kill -TERM "${pids[@]}" 2>/dev/null || true
        wait "${pids[@]}" 2>/dev/null || true
    fi
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME READY-LINE COMMAND...: runs COMMAND in the background, logging to NAME.log, and
# waits (up to 30 s) until READY-LINE appears in its standard output.
start() {
    local name=$1 ready=$2
    shift 2
    "$@" >"$here/$name.log" 2>&1 &
    pids+=($!)
    local pid=$!
    for _ in $(seq 300); do
        if grep -q -- "$ready" "$here/$name.log"; then
            echo "$name: up (pid $pid, log examples/relay/$name.log)"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "$name: exited during start-up:" >&2
            cat "$here/$name.log" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "$name: not ready after 30 s; see examples/relay/$name.log" >&2
    exit 1
}

start fake-dns "listening on" "$bin/fake-dns" --zones "$here/zones.yaml" --listen 127.0.0.1:5353
start server-a "^ready$" "$bin/reference-server" --config "$here/a.yaml"
start server-b "^ready$" "$bin/reference-server" --config "$here/b.yaml"

cat <<EOF
All up. fake-dns pid ${pids[0]} (kill -HUP ${pids[0]} reloads zones.yaml).
Press Ctrl-C to stop all three.
EOF
# Returns when any of the three exits (or on Ctrl-C); the EXIT trap stops the others.
wait -n "${pids[@]}"
echo "a process exited; stopping the others" >&2
exit 1
