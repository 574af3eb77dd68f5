# lib.sh - shell helpers every bench script sources (not run): free
# loopback ports and waiting for a server to answer.

# free_port: a TCP port free on 127.0.0.1 right now.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_ready NAME URL PID LOG: at most 15 s until GET URL answers 2xx-4xx
# (TLS not verified: readiness only). On failure prints why (NAME exited,
# or not ready) with the tail of LOG, and returns 1.
wait_ready() {
    local name=$1 url=$2 pid=$3 log=$4 i
    for i in $(seq 150); do
        if curl -sk --max-time 1 -o /dev/null -w '%{http_code}' "$url" 2>/dev/null | grep -q '^[2-4]'; then
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "$name exited during startup:" >&2
            tail -20 "$log" >&2 || true
            return 1
        fi
        sleep 0.1
    done
    echo "$name not ready after 15 s:" >&2
    tail -20 "$log" >&2 || true
    return 1
}
