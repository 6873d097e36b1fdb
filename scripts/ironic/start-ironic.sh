#!/usr/bin/env bash
# start-ironic.sh - install (idempotently), configure and start a standalone
# OpenStack Ironic (Debian 12 packages, 1:21.4.x) with the fake-hardware
# hardware type, noauth, sqlite and no message bus (all-in-one `ironic`
# launcher with rpc_transport=none). Waits until GET /v1 answers.
#
# Environment (all optional):
#   IRONIC_DIR             state dir: config, sqlite db, logs, pid  (/var/lib/ironic-standalone)
#   IRONIC_HOST_IP         listen address                           (127.0.0.1)
#   IRONIC_PORT            listen port                              (6385)
#   IRONIC_USER            user to run as when started by root      (ironic)
#   IRONIC_FRESH_DB=1      delete the sqlite db before starting     (0)
#   IRONIC_RESTART=1       stop an already running instance first   (0)
#   IRONIC_FAKE_POWER_DELAY / _BOOT_DELAY / _DEPLOY_DELAY
#                          seconds ("N" or "MIN,MAX") the fake interfaces
#                          sleep, to simulate slow hardware         (0)
#   IRONIC_APT_PACKAGES    packages to install                      (ironic-common)
#   IRONIC_START_TIMEOUT   seconds to wait for the API              (90)
#   IRONIC_SHOW_INSTANCE_SECRETS=1
#                          answer config drives unmasked, so tests can read
#                          the user-data Kiln wrote (never in production) (1)
# (Kiln: adapted from ../shared/recipes/ironic; adds the test policy and the stop signal.)
set -euo pipefail

IRONIC_DIR=${IRONIC_DIR:-/var/lib/ironic-standalone}
IRONIC_HOST_IP=${IRONIC_HOST_IP:-127.0.0.1}
IRONIC_PORT=${IRONIC_PORT:-6385}
IRONIC_USER=${IRONIC_USER:-ironic}
IRONIC_FRESH_DB=${IRONIC_FRESH_DB:-0}
IRONIC_RESTART=${IRONIC_RESTART:-0}
IRONIC_FAKE_POWER_DELAY=${IRONIC_FAKE_POWER_DELAY:-0}
IRONIC_FAKE_BOOT_DELAY=${IRONIC_FAKE_BOOT_DELAY:-0}
IRONIC_FAKE_DEPLOY_DELAY=${IRONIC_FAKE_DEPLOY_DELAY:-0}
IRONIC_APT_PACKAGES=${IRONIC_APT_PACKAGES:-ironic-common}
IRONIC_START_TIMEOUT=${IRONIC_START_TIMEOUT:-90}
IRONIC_SHOW_INSTANCE_SECRETS=${IRONIC_SHOW_INSTANCE_SECRETS:-1}

CONF=$IRONIC_DIR/ironic.conf
DB=$IRONIC_DIR/ironic.sqlite
PIDFILE=$IRONIC_DIR/ironic.pid
LOG=$IRONIC_DIR/ironic.log
OUTLOG=$IRONIC_DIR/ironic.stdout.log
URL=http://$IRONIC_HOST_IP:$IRONIC_PORT

log() { printf '[start-ironic] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now_ms() { date +%s%3N; }
is_root() { [ "$(id -u)" = 0 ]; }
api_up() { curl -sf -o /dev/null --max-time 2 "$URL/v1"; }
running_pid() {  # prints the pid from the pidfile if that process is alive
  local pid
  [ -s "$PIDFILE" ] || return 1
  pid=$(cat "$PIDFILE")
  kill -0 "$pid" 2>/dev/null || return 1
  # a pid recycled by an unrelated program is not ours
  grep -q ironic "/proc/$pid/cmdline" 2>/dev/null || return 1
  echo "$pid"
}

# ---------------------------------------------------------------- install
pkgs_missing() {
  local p
  for p in $IRONIC_APT_PACKAGES curl; do
    [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || echo "$p"
  done
}
missing=$(pkgs_missing | tr '\n' ' ')
if [ -n "${missing// /}" ] || [ ! -x /usr/bin/ironic ] || [ ! -x /usr/bin/ironic-dbsync ]; then
  is_root || die "packages missing ($missing) and not root: cannot apt-get install"
  export DEBIAN_FRONTEND=noninteractive
  # Never let maintainer scripts start services (there is no init system here).
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
  fi
  trap 'if [ "$own_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi' EXIT
  # (no `| grep -q` here: with pipefail, grep's early exit can SIGPIPE apt-cache)
  cand=$(apt-cache policy ironic-common 2>/dev/null | sed -n 's/^ *Candidate: //p')
  if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then
    log "apt-get update"
    apt-get update -q >/dev/null
  fi
  log "apt-get install --no-install-recommends $missing"
  t0=$(now_ms)
  apt-get install -y -q --no-install-recommends $missing >"${TMPDIR:-/tmp}/start-ironic-apt.log" 2>&1 \
    || { tail -30 "${TMPDIR:-/tmp}/start-ironic-apt.log" >&2; die "apt-get install failed"; }
  log "installed in $(( ($(now_ms) - t0) / 1000 ))s"
  if [ "$own_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
  trap - EXIT
fi
log "ironic-common $(dpkg-query -W -f='${Version}' ironic-common), ironic $(/usr/bin/ironic --version 2>&1)"

# ------------------------------------------------ already running? / restart
if pid=$(running_pid); then
  if [ "$IRONIC_RESTART" = 1 ]; then
    log "stopping running ironic pid $pid"
    kill -TERM "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && { log "pid $pid ignored SIGTERM, sending SIGKILL"; kill -KILL "$pid"; sleep 0.5; }
    rm -f "$PIDFILE"
  elif api_up; then
    log "already running: pid $pid, $URL"
    echo "IRONIC_URL=$URL IRONIC_PID=$pid"
    exit 0
  else
    die "pid $pid from $PIDFILE is alive but $URL/v1 does not answer (see $LOG); set IRONIC_RESTART=1"
  fi
fi
if api_up; then die "something else already answers on $URL (not the pid in $PIDFILE)"; fi

# ----------------------------------------------------------------- config
run_as=""
if is_root; then
  id "$IRONIC_USER" >/dev/null 2>&1 || die "user $IRONIC_USER does not exist"
  run_as=$IRONIC_USER
fi
mkdir -p "$IRONIC_DIR"
if [ "$IRONIC_FRESH_DB" = 1 ]; then rm -f "$DB" "$DB-journal" "$DB-wal" "$DB-shm"; fi

cat > "$CONF" <<CONF_EOF
# Generated by start-ironic.sh - standalone Ironic for tests (fake hardware).
[DEFAULT]
# no Keystone: every request is accepted, no token needed
auth_strategy = noauth
# all-in-one process: API + conductor, no RabbitMQ, no JSON-RPC
rpc_transport = none
# conductor name reported by /v1/conductors (any string with rpc_transport=none)
host = ironic-standalone
state_path = $IRONIC_DIR
log_file = $LOG
use_stderr = false
debug = false
enabled_hardware_types = fake-hardware
enabled_bios_interfaces = fake,no-bios
enabled_boot_interfaces = fake
enabled_console_interfaces = fake,no-console
enabled_deploy_interfaces = fake
enabled_inspect_interfaces = fake,no-inspect
enabled_management_interfaces = fake
enabled_network_interfaces = noop
enabled_power_interfaces = fake
enabled_raid_interfaces = fake,no-raid
enabled_rescue_interfaces = fake,no-rescue
enabled_storage_interfaces = fake,noop
enabled_vendor_interfaces = fake,no-vendor
default_network_interface = noop

[api]
host_ip = $IRONIC_HOST_IP
port = $IRONIC_PORT
api_workers = 1

[database]
connection = sqlite:///$DB

[dhcp]
# default is neutron
dhcp_provider = none

[nova]
# no Nova: otherwise every power change of a node with instance_uuid logs a
# "Could not connect to Nova to send a power notification" warning
send_power_notifications = false

[oslo_policy]
policy_file = $IRONIC_DIR/policy.yaml

[conductor]
# a node stuck mid-deploy by a dead conductor is failed on the next start, not left hanging
check_provision_state_interval = 5

[fake]
power_delay = $IRONIC_FAKE_POWER_DELAY
boot_delay = $IRONIC_FAKE_BOOT_DELAY
deploy_delay = $IRONIC_FAKE_DEPLOY_DELAY
CONF_EOF

if [ "$IRONIC_SHOW_INSTANCE_SECRETS" = 1 ]; then
  printf '"show_instance_secrets": "@"\n' > "$IRONIC_DIR/policy.yaml"
else
  : > "$IRONIC_DIR/policy.yaml"
fi

# ------------------------------------------------------------------- db
if [ ! -s "$DB" ]; then
  # NOTE: `ironic-dbsync upgrade` fails on sqlite (alembic cannot ALTER
  # constraints); create_schema builds the tables from the models and stamps.
  log "ironic-dbsync create_schema -> $DB"
  /usr/bin/ironic-dbsync --config-file "$CONF" create_schema >>"$OUTLOG" 2>&1 \
    || { tail -20 "$OUTLOG" >&2; die "ironic-dbsync create_schema failed"; }
fi
if [ -n "$run_as" ]; then
  chown -R "$run_as:" "$IRONIC_DIR"
  chmod 0750 "$IRONIC_DIR"
fi

# ---------------------------------------------------------------- start
# A pidfile left by a killed Ironic is stale here (running_pid said so). It must
# go: the chown above made it the ironic user's, and start-stop-daemon run as
# root refuses to match on a pidfile root does not own (exit 2).
rm -f "$PIDFILE"
log "starting /usr/bin/ironic on $URL"
t0=$(now_ms)
start-stop-daemon --start --background --make-pidfile --pidfile "$PIDFILE" \
  ${run_as:+--chuid "$run_as"} --output "$OUTLOG" \
  --startas /usr/bin/ironic -- --config-file "$CONF"
pid=$(cat "$PIDFILE")
deadline=$(( t0 + IRONIC_START_TIMEOUT * 1000 ))
until api_up; do
  if ! kill -0 "$pid" 2>/dev/null; then
    tail -30 "$OUTLOG" "$LOG" >&2 2>/dev/null || true
    die "ironic (pid $pid) exited during startup"
  fi
  [ "$(now_ms)" -lt "$deadline" ] || { tail -30 "$LOG" >&2 || true; die "API not answering after ${IRONIC_START_TIMEOUT}s"; }
  sleep 0.1
done
startup_ms=$(( $(now_ms) - t0 ))
# with rpc_transport=none the conductor is started before the API listens,
# so fake-hardware must already be listed.
drivers=$(curl -sf -H 'X-OpenStack-Ironic-API-Version: latest' "$URL/v1/drivers" || true)
case "$drivers" in *'"fake-hardware"'*) ;; *) die "API is up but driver fake-hardware is not registered";; esac
maxver=$(curl -s "$URL/v1" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["version"]["version"])')
rss=$(awk '/VmRSS/{print $2" "$3}' "/proc/$pid/status")
log "up: pid $pid, API $URL answered after ${startup_ms} ms, max microversion $maxver, RSS $rss"
log "config $CONF, log $LOG; stop with: kill $pid  (or stop-ironic.sh)"
echo "IRONIC_URL=$URL IRONIC_PID=$pid"
