#!/usr/bin/env bash
# LocalStack (community) on the host, without Docker: install, start, stop, status.
#
#   localstack/host.sh install   # localstack/.venv with Python 3.13 (once; a few minutes)
#   localstack/host.sh start     # start in the background, wait until healthy
#   localstack/host.sh status    # running? which services?
#   localstack/host.sh stop      # stop it (by its PID)
#   eval "$(localstack/host.sh env)"   # AWS_* variables for clients, cdklocal, brokers
#
# Settings (environment):
#   LOCALSTACK_PORT       gateway port on 127.0.0.1 (default 4566)
#   LOCALSTACK_STATE_DIR  pid file, log and LocalStack's volume (default localstack/.state)
#   LOCALSTACK_PYTHON     a Python 3.13 interpreter (default: found on PATH or in pyenv)
#   LOCALSTACK_INSTALL_TIMEOUT / LOCALSTACK_START_TIMEOUT  seconds (default 900 / 90)
#
# Services started: the ones that work on the host (see docs/LOCALSTACK.md). DynamoDB would
# download Java and DynamoDB Local at run time, Lambda needs Docker, ECS is not in the
# community edition: for those use localstack/docker-compose.yml (or moto server's DynamoDB).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv"
PORT="${LOCALSTACK_PORT:-4566}"
STATE_DIR="${LOCALSTACK_STATE_DIR:-$HERE/.state}"
PID_FILE="$STATE_DIR/localstack.pid"
LOG_FILE="$STATE_DIR/localstack.log"
INSTALL_TIMEOUT="${LOCALSTACK_INSTALL_TIMEOUT:-900}"
START_TIMEOUT="${LOCALSTACK_START_TIMEOUT:-90}"
SERVICES="s3,sqs,events,cloudwatch,iam,sts,cloudformation,logs,ssm"
ENDPOINT="http://127.0.0.1:$PORT"

find_python() {
  if [[ -n "${LOCALSTACK_PYTHON:-}" ]]; then echo "$LOCALSTACK_PYTHON"; return; fi
  local candidate
  # Run each candidate: a pyenv shim exists on PATH even when 3.13 is not the active version.
  for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13*/bin/python3.13 python3.13; do
    if "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; then
      command -v "$candidate"
      return
    fi
  done
  echo "no Python 3.13 found: LocalStack needs it (3.11 fails with a SyntaxError)." >&2
  echo "Install one (e.g. 'pyenv install 3.13') or set LOCALSTACK_PYTHON." >&2
  exit 2
}

install() {
  # The stamp holds the requirements' checksum (a checkout changes mtimes, not contents).
  local stamp="$VENV/.installed" wanted
  wanted="$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
    return 0
  fi
  local python log start
  python="$(find_python)"
  log="$HERE/.install.log"
  start=$(date +%s)
  echo "installing LocalStack into $VENV with $python (log: $log)"
  rm -rf "$VENV"
  if ! timeout "$INSTALL_TIMEOUT" "$python" -m venv "$VENV" >"$log" 2>&1 ||
     ! PIP_DISABLE_PIP_VERSION_CHECK=1 timeout "$INSTALL_TIMEOUT" \
         "$VENV/bin/python" -m pip install -q -r "$HERE/requirements.txt" >>"$log" 2>&1; then
    grep -v '^WARNING: Location' "$log" | tail -20 >&2
    echo "LocalStack install failed or took more than ${INSTALL_TIMEOUT}s" >&2
    exit 1
  fi
  echo "$wanted" >"$stamp"
  echo "LocalStack installed in $(( $(date +%s) - start ))s"
}

pid_alive() {
  [[ -f "$PID_FILE" ]] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null
}

# Healthy when S3 is up. A slow answer still counts (a loaded host); why the last check
# failed goes to $HEALTH_FILE, printed if the start times out.
HEALTH_FILE="$STATE_DIR/health.last"
healthy() {
  "$VENV/bin/python" - "$ENDPOINT" "$HEALTH_FILE" <<'EOF'
import json, sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1] + "/_localstack/health", timeout=10) as r:
        answer = json.load(r)
    services = answer["services"]
except Exception as exc:
    open(sys.argv[2], "w").write(f"{type(exc).__name__}: {exc}\n")
    sys.exit(1)
ok = services.get("s3") in ("available", "running")
if not ok:
    open(sys.argv[2], "w").write(f"s3 is {services.get('s3')!r}: {json.dumps(answer)[:500]}\n")
sys.exit(0 if ok else 1)
EOF
}

start() {
  install
  mkdir -p "$STATE_DIR/volume"
  if pid_alive; then
    echo "LocalStack already running (pid $(cat "$PID_FILE")) on $ENDPOINT"
    return 0
  fi
  local start_ns pid
  start_ns=$(date +%s%N)
  # cwd = the state dir: the repo's own localstack/ folder must not shadow the package.
  # setsid: LocalStack gets its own process group (id = its PID), stopped as one by `stop`.
  (
    cd "$STATE_DIR"
    exec env GATEWAY_LISTEN="127.0.0.1:$PORT" GATEWAY_SERVER=hypercorn DNS_ADDRESS=0 \
      DISABLE_EVENTS=1 SKIP_SSL_CERT_DOWNLOAD=1 LOCALSTACK_VOLUME_DIR="$STATE_DIR/volume" \
      LOCALSTACK_HOST="127.0.0.1:$PORT" SQS_ENDPOINT_STRATEGY=path \
      SERVICES="$SERVICES" setsid "$VENV/bin/python" -m localstack.runtime.main \
      >"$LOG_FILE" 2>&1 </dev/null
  ) &
  pid=$!
  echo "$pid" >"$PID_FILE"
  local deadline=$(( $(date +%s) + START_TIMEOUT ))
  until healthy; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -30 "$LOG_FILE" >&2
      echo "LocalStack exited during start (log: $LOG_FILE)" >&2
      rm -f "$PID_FILE"
      exit 1
    fi
    if (( $(date +%s) >= deadline )); then
      tail -30 "$LOG_FILE" >&2
      echo "LocalStack not healthy after ${START_TIMEOUT}s ($(cat "$HEALTH_FILE" 2>/dev/null));" \
        "stopping it" >&2
      stop
      exit 1
    fi
    sleep 0.2
  done
  echo "LocalStack running (pid $pid) on $ENDPOINT, healthy after" \
    "$(( ($(date +%s%N) - start_ns) / 1000000 )) ms; log: $LOG_FILE"
}

stop() {
  if [[ ! -f "$PID_FILE" ]]; then
    echo "LocalStack not running (no $PID_FILE)"
    return 0
  fi
  local pid
  pid="$(cat "$PID_FILE")"
  if kill -0 "$pid" 2>/dev/null; then
    # Its own process group (setsid above): SIGTERM to the group, SIGKILL after 20 s.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$PID_FILE"
  echo "LocalStack stopped (pid $pid)"
}

status() {
  if pid_alive && healthy; then
    echo "LocalStack running (pid $(cat "$PID_FILE")) on $ENDPOINT"
    "$VENV/bin/python" -c "import json,sys,urllib.request;\
print(json.dumps(json.load(urllib.request.urlopen(sys.argv[1]+'/_localstack/health'))['services']))" \
      "$ENDPOINT"
  else
    echo "LocalStack not running"
    return 1
  fi
}

print_env() {
  # Dummy credentials: LocalStack accepts any; 000000000000 is its default account.
  cat <<EOF
export AWS_ENDPOINT_URL=$ENDPOINT
export AWS_ENDPOINT_URL_S3=$ENDPOINT
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export AWS_DEFAULT_REGION=us-east-1
export AWS_REGION=us-east-1
export CDK_DEFAULT_ACCOUNT=000000000000
export CDK_DEFAULT_REGION=us-east-1
EOF
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) print_env ;;
  *) echo "usage: $0 install|start|stop|status|env" >&2; exit 2 ;;
esac
