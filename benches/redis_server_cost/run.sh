#!/usr/bin/env bash
# Instructions redis-server spends per save: the store's save scripts against
# raw redis-rs's MULTI/EXEC, and the floors under a Lua script. Each case
# runs a fresh redis-server under callgrind, sends it 5,000 pipelined calls
# (redis-cli --pipe), and reports (total - a server that served one PING) / 5,000.
# Instruction counts do not depend on the machine's load.
# Usage: benches/redis_server_cost/run.sh   (needs redis-server, redis-cli, valgrind, python3)
#        EXTRA=other_save.lua benches/redis_server_cost/run.sh   (also that script, as `extra`)
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
N=5000
python3 - "$work" "$N" <<'PY'
import hashlib, os, random, re, sys
work, n = sys.argv[1], int(sys.argv[2])
src = open('../../src/redis/scripts.rs').read()
part = lambda name: re.search(r'const ' + name + r': &str = r"(.*?)";', src, re.S).group(1)
# ARGV of a save that sets k0 and removes k1 of the global scope, as
# `RedisStore::save` sends it: expected and new metadata, TTL, the scope's
# field, the mode, the expected version, the call's token, the number of
# field/value pairs (k0 and the scope's new version), the pairs, the field
# to delete.
# `save`: a first send on one server, as the store sends it there: `FCALL`
# of `SAVE_FIRST` (see `LIBRARY`); `save_evalsha`: the same script by
# `EVALSHA` (a server without functions); `save_cluster`: any send of the
# cluster client, `EVALSHA` of `SAVE_AGAIN`, which looks its token up first
# (its token argument: the token, then the newest entry of `o` it saw).
first = part('SAVE_READ') + part('SAVE_WRITE')
again = part('SAVE_READ') + part('SAVE_LOOKUP_AGAIN') + part('SAVE_WRITE')
scripts = {
    'save_evalsha': first,
    # Any other save script with the same arguments, from a file (`EXTRA`).
    **({'extra': open(os.environ['EXTRA']).read()} if os.environ.get('EXTRA') else {}),
    'empty': 'return 1',
    'three_calls': "redis.call('HSET', KEYS[1], 'm', ARGV[2], ARGV[9], ARGV[10])\n"
                   "redis.call('HDEL', KEYS[1], ARGV[13])\n"
                   "redis.call('PEXPIRE', KEYS[1], ARGV[3])\nreturn 1",
}
def resp(*a):
    out = b'*%d\r\n' % len(a)
    for x in a:
        x = x if isinstance(x, bytes) else str(x).encode()
        out += b'$%d\r\n' % len(x) + x + b'\r\n'
    return out
v = b'v' * 32
# Every call has a token of its own (8 random bytes, as the store's), so
# that no call is taken for a resend; after 16 calls the field `o` is in
# its steady state.
rng = random.Random(27)
setup = resp('HSET', 'bench', 'm', 'OLD', 'k0', 'x', 'k1', 'y', '/', 'V1')
for name, body in scripts.items():
    sha = hashlib.sha1(body.encode()).hexdigest()
    calls = b''.join(resp('EVALSHA', sha, 1, 'bench', 'OLD', 'OLD', 1800000, '/', '?', 'V1',
                          rng.randbytes(8), 2, 'k0', v, '/', 'V1', 'k1') for _ in range(n))
    open(f'{work}/{name}.resp', 'wb').write(setup + resp('SCRIPT', 'LOAD', body) + calls)
sha = hashlib.sha1(again.encode()).hexdigest()
calls, seen = [], b''
for _ in range(n):
    token = rng.randbytes(8)
    calls.append(resp('EVALSHA', sha, 1, 'bench', 'OLD', 'OLD', 1800000, '/', '?', 'V1',
                      token + seen, 2, 'k0', v, '/', 'V1', 'k1'))
    seen = token + b'1'
open(f'{work}/save_cluster.resp', 'wb').write(setup + resp('SCRIPT', 'LOAD', again) + b''.join(calls))
library = "#!lua name=bench\nredis.register_function('save', function(KEYS, ARGV)" + first + "end)\n"
calls = b''.join(resp('FCALL', 'save', 1, 'bench', 'OLD', 'OLD', 1800000, '/', '?', 'V1',
                      rng.randbytes(8), 2, 'k0', v, '/', 'V1', 'k1') for _ in range(n))
open(f'{work}/save.resp', 'wb').write(setup + resp('FUNCTION', 'LOAD', library) + calls)
raw = b''.join(resp('MULTI') + resp('HSET', 'bench', 'm', 'OLD', 'k0', v) + resp('HDEL', 'bench', 'k1')
               + resp('PEXPIRE', 'bench', 1800000) + resp('EXEC') for _ in range(n))
open(f'{work}/raw.resp', 'wb').write(setup + raw)
open(f'{work}/none.resp', 'wb').write(resp('PING'))
PY
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
total() {
  valgrind --tool=callgrind --callgrind-out-file="$work/$1.cg" \
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no >/dev/null 2>&1 &
  for _ in $(seq 200); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -p "$port" --pipe <"$work/$1.resp" >/dev/null
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  wait
  sed -n 's/^summary: //p' "$work/$1.cg"
}
base=$(total none)
for case in raw save save_evalsha save_cluster empty three_calls ${EXTRA:+extra}; do
  t=$(total "$case")
  echo "$case: $(( (t - base) / N )) instructions per call"
done
