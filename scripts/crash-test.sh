#!/usr/bin/env bash
# Power-cut test of the embedded SQLite store: orders placed through the real service on
# a file system that forgets every write not flushed by fsync (scripts/lossyfs.py), the
# "power" cut mid-load (the file system and the service SIGKILLed together), then the
# store reopened through a fresh mount and the service restarted on it. Passes when every
# order answered 202 before the cut is present and the invariants hold. Run by hand, as
# root (FUSE); not part of CI, which cannot count on /dev/fuse (README, "Operations:
# durability and backup").
#
#   cargo build --release -p orderhost
#   pip install mfusepy                       # libfuse3 must be installed (apt: fuse3)
#   sudo scripts/crash-test.sh                # synchronous = full (the default): 0 lost
#   sudo scripts/crash-test.sh normal         # the relaxed setting: expect lost orders
#
# Env: ORDERHOST_BIN (target/release/orderhost), CRASH_LOAD_SECONDS (8),
# CRASH_CLIENTS (16), CRASH_PORT (18765), CRASH_KEEP=1 keeps the work folder.
set -euo pipefail

mode=${1:-full}
here=$(cd "$(dirname "$0")" && pwd)
bin=${ORDERHOST_BIN:-$here/../target/release/orderhost}
seconds=${CRASH_LOAD_SECONDS:-8}
clients=${CRASH_CLIENTS:-16}
port=${CRASH_PORT:-18765}

die() { echo "crash-test: $*" >&2; exit 2; }
[[ $mode == full || $mode == normal ]] || die "mode is full or normal, not $mode"
[[ $(id -u) == 0 ]] || die "run as root (FUSE mounts)"
[[ -e /dev/fuse ]] || die "no /dev/fuse on this machine"
[[ -x $bin ]] || die "no orderhost binary at $bin (cargo build --release -p orderhost, or set ORDERHOST_BIN)"
python3 -c 'import mfusepy' 2>/dev/null || die "python3 cannot import mfusepy (pip install mfusepy; needs libfuse3)"

work=$(mktemp -d /tmp/orderhost-crash.XXXXXX)
backing=$work/backing
mnt=$work/mnt
mkdir -p "$backing" "$mnt"
fs_pid='' server_pid='' client_pid=''

cleanup() {
    for pid in $client_pid $server_pid $fs_pid; do kill -9 "$pid" 2>/dev/null || true; done
    umount -l "$mnt" 2>/dev/null || true
    if [[ ${CRASH_KEEP:-0} == 1 ]]; then echo "work folder kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

mount_fs() {
    python3 "$here/lossyfs.py" "$backing" "$mnt" >>"$work/lossyfs.log" 2>&1 &
    fs_pid=$!
    for _ in $(seq 100); do mountpoint -q "$mnt" && return; sleep 0.1; done
    die "lossyfs did not mount (see $work/lossyfs.log)"
}

export DATABASE_URL="sqlite://$mnt/orderhost.db"
export ORDERHOST_SQLITE_SYNCHRONOUS=$mode
export ORDERHOST_LOG_DIR='' ORDERHOST_LOG=warn
export ORDERHOST_POLICIES_DIR=$work/no-policies   # the built-in components
export ORDERHOST_BIND=127.0.0.1:$port

start_server() {
    "$bin" serve >>"$work/serve.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 300); do
        curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && return
        sleep 0.1
    done
    die "orderhost did not start (see $work/serve.log)"
}

echo "== mode: synchronous=$mode; work folder $work"
mount_fs
{
    echo "sku,name,unit_price,currency,stock"
    echo "HOT,Hot item,1500,EUR,300"
    for i in $(seq 1 20); do echo "SKU-$i,Item $i,$((100 * i)),EUR,100000"; done
} >"$work/catalog.csv"
"$bin" catalog import "$work/catalog.csv" >/dev/null
start_server

# The client: registers users, places orders from $clients threads, and appends the id
# of every order answered 202 to acked.txt (on the real disk, unbuffered) before it does
# anything else.
python3 - "$port" "$clients" "$work/acked.txt" >"$work/client.log" 2>&1 <<'EOF' &
import http.client, json, os, random, sys, threading
port, clients, acked = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
out = os.open(acked, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
lock = threading.Lock()

def call(conn, method, path, body=None, token=None):
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    conn.request(method, path, json.dumps(body) if body is not None else None, headers)
    response = conn.getresponse()
    return response.status, response.read()

def client(n):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    email = f"crash{n}@example.com"
    password = "crash test password"
    call(conn, "POST", "/auth/register", {"email": email, "password": password})
    status, body = call(conn, "POST", "/auth/login", {"email": email, "password": password})
    token = json.loads(body)["accessToken"]
    rng = random.Random(n)
    while True:
        lines = [{"sku": rng.choice(["HOT"] + [f"SKU-{i}" for i in range(1, 21)]),
                  "quantity": rng.randint(1, 3)}]
        if rng.random() < 0.3:
            lines.append({"sku": f"SKU-{rng.randint(1, 20)}", "quantity": 1})
        lines = list({l["sku"]: l for l in lines}.values())
        try:
            status, body = call(conn, "POST", "/order", {"lines": lines}, token)
        except Exception:
            return  # the service is gone: the cut
        if status == 202:
            with lock:
                os.write(out, (json.loads(body)["id"] + "\n").encode())

threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
EOF
client_pid=$!

sleep "$seconds"
before=$(wc -l <"$work/acked.txt" 2>/dev/null || echo 0)
# The cut: the file system first (nothing after this instant reaches the disk), then the
# service, in one kill(1).
kill -9 "$fs_pid" "$server_pid"
wait "$client_pid" 2>/dev/null || true
client_pid=''
server_pid=''
umount -l "$mnt"
fs_pid=''
acked=$(wc -l <"$work/acked.txt")
echo "== cut after ${seconds}s: $acked orders answered 202 (about $before when the cut began)"

# Power back: a fresh mount of what reached the disk, the service restarted on it (it
# recovers the WAL and its workers settle what was still pending).
mount_fs
start_server
check() {
    python3 - "$mnt/orderhost.db" "$work/acked.txt" "$1" <<'EOF'
import sqlite3, sys, time
db, acked_file, phase = sys.argv[1:]
con = sqlite3.connect(db, timeout=30)
q = lambda sql: con.execute(sql).fetchall()
acked = [l.strip() for l in open(acked_file) if l.strip()]
present = {r[0] for r in q("select id from orders")}
lost = [i for i in acked if i not in present]
problems = []
if lost:
    problems.append(f"{len(lost)} of {len(acked)} orders answered 202 are missing, e.g. {lost[:3]}")
if q("select count(*) from stock_items where available < 0 or reserved < 0")[0][0]:
    problems.append("negative stock")
for stock, available, reserved, received, confirmed, moved in q("""
    select s.id, s.available, s.reserved, s.received,
           coalesce((select sum(l.quantity) from order_lines l join orders o on o.id = l.order_id
                     where l.stock_id = s.id and o.status = 'CONFIRMED'), 0),
           coalesce((select -sum(m.quantity) from stock_movements m
                     where m.stock_id = s.id and m.kind = 'reserve'), 0)
    from stock_items s"""):
    if confirmed > received:
        problems.append(f"stock {stock}: {confirmed} confirmed > {received} received")
    if available + reserved != received or reserved != confirmed or moved != confirmed:
        problems.append(f"stock {stock}: available {available} + reserved {reserved}, "
                        f"received {received}, confirmed {confirmed}, reserve movements {moved}")
missing = q("""select count(*) from orders o join order_lines l on l.order_id = o.id
               where o.status = 'CONFIRMED' and not exists (
                 select 1 from stock_movements m where m.order_id = o.id
                 and m.stock_id = l.stock_id and m.kind = 'reserve' and m.quantity = -l.quantity)""")[0][0]
if missing:
    problems.append(f"{missing} lines of confirmed orders have no reserve movement")
stray = q("""select count(*) from stock_movements m join orders o on o.id = m.order_id
             where o.status <> 'CONFIRMED'""")[0][0]
if stray:
    problems.append(f"{stray} movements belong to orders that are not confirmed")
counts = dict(q("select status, count(*) from orders group by status"))
if phase == "settled" and counts.get("PENDING", 0):
    problems.append(f"{counts['PENDING']} orders still PENDING")
print(f"   {phase}: {len(present)} orders {counts}; answered 202: {len(acked)}, missing: {len(lost)}")
for p in problems:
    print("   PROBLEM:", p)
sys.exit(1 if problems else 0)
EOF
}
status=0
check recovered || status=1
for _ in $(seq 600); do
    pending=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1], timeout=30).execute(\"select count(*) from orders where status = 'PENDING'\").fetchone()[0])" "$mnt/orderhost.db")
    [[ $pending == 0 ]] && break
    sleep 0.1
done
check settled || status=1
if [[ $status == 0 ]]; then
    echo "== PASS (synchronous=$mode): no order answered 202 was lost; invariants hold"
else
    echo "== FAIL (synchronous=$mode): see the problems above"
fi
exit $status
