#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine, without Docker or a registry:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, a kubelet, kube-proxy (iptables
# mode) and containerd 2 (all built by ../install.sh), with Debian's runc and bridge CNI.
#
# Usage (as root):
#   node.sh up STATE_DIR [IMAGE.tar...]   start (or find running) and import the images;
#                                         prints `export KUBECONFIG=STATE_DIR/kubeconfig` last
#   node.sh import STATE_DIR IMAGE.tar... import OCI archives into the node's containerd
#   node.sh restart STATE_DIR kube-apiserver
#                                         stop the API server (SIGTERM, SIGKILL after 5 s: its
#                                         graceful stop waits up to 60 s for open watches) and
#                                         start it again; returns once it is ready
#   node.sh down STATE_DIR                stop everything and remove what up made
#
# Network: everything stays on this machine. The node's address is the gateway of a bridge
# made here (10.244.77.1/24, the pod network); pods get routes to the pod network and the
# Service network only (no default route, no masquerade), so nothing they send can leave. The
# API server listens on the node address and 127.0.0.1 is never exposed to pods. Webhook Services
# are reached through their endpoints (--enable-aggregator-routing), never through DNS.
#
# One node per machine: the kubelet always uses /var/lib/kubelet/device-plugins and
# /var/log/containers. Settings the node changes (sysctls, iptables chains, mounts, cgroups,
# network namespaces, the bridge) are recorded at `up` and restored or removed at `down`. A node
# whose owner was killed before its `down` is taken down by the next `up` (from what it recorded);
# a node that still runs makes the next `up` stop with the command that takes it down.
#
# Environment: IRSA_BIN_DIR (else ../install.sh), IRSA_NODE_IMAGES (else ./install.sh),
# IRSA_NODE_ISSUER (the service-account issuer; default the API server's URL).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NODE_NAME=irsa-node
BRIDGE=irsa0
POD_CIDR=10.244.77.0/24
NODE_IP=10.244.77.1
SERVICE_CIDR=10.96.77.0/24
SERVICE_IP=10.96.77.1 # the `kubernetes` Service: the first address of SERVICE_CIDR
CNI_NETWORK=irsa-node
OWNER=/run/irsa-node.state # the state directory of the node that holds this machine
SYSCTLS=(net.ipv4.ip_forward vm.overcommit_memory kernel.panic kernel.panic_on_oops
    net.ipv4.conf.all.route_localnet net.bridge.bridge-nf-call-iptables)

log() { printf 'node.sh: %s\n' "$*" >&2; }
die() {
    printf 'node.sh: ERROR: %s\n' "$*" >&2
    exit 1
}

usage() { die "usage: node.sh up|down|import|restart STATE_DIR [IMAGE.tar...|kube-apiserver]"; }
[ $# -ge 2 ] || usage
command=$1
STATE=$(mkdir -p "$2" && cd "$2" && pwd)
shift 2
[ "$(id -u)" -eq 0 ] || die "a node runs containers and changes the network: run as root"

LOGS=$STATE/logs
PIDS=$STATE/pids
PKI=$STATE/pki
mkdir -p "$LOGS" "$PIDS" "$PKI"

# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------
alive() { [ -f "$PIDS/$1.pid" ] && kill -0 "$(cat "$PIDS/$1.pid")" 2>/dev/null; }

start() { # start NAME PROGRAM ARGS...: in its own session, logging to logs/NAME.log
    local name=$1
    shift
    alive "$name" && return 0
    setsid "$@" </dev/null >>"$LOGS/$name.log" 2>&1 &
    echo $! >"$PIDS/$name.pid"
}

stop() { # stop NAME [SECONDS]: TERM, then KILL after SECONDS (default 10)
    local name=$1 limit=${2:-10} pid i
    [ -f "$PIDS/$name.pid" ] || return 0
    pid=$(cat "$PIDS/$name.pid")
    if kill -TERM "$pid" 2>/dev/null; then
        for ((i = 0; i < limit * 10; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDS/$name.pid"
}

still_running() { # still_running NAME: dies with its log when NAME has exited
    alive "$1" && return 0
    tail -n 30 "$LOGS/$1.log" >&2
    die "$1 exited (log: $LOGS/$1.log)"
}

wait_until() { # wait_until SECONDS WHAT PROCESS COMMAND...: poll until COMMAND succeeds
    local limit=$1 what=$2 name=$3 i
    shift 3
    for ((i = 0; i < limit * 5; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        if ! alive "$name"; then
            tail -n 30 "$LOGS/$name.log" >&2
            die "$name exited before $what was ready (log: $LOGS/$name.log)"
        fi
        sleep 0.2
    done
    tail -n 30 "$LOGS/$name.log" >&2
    die "$what not ready within ${limit}s (log: $LOGS/$name.log)"
}

# free_ports N: N distinct free loopback ports, one per line, from below the kernel's ephemeral
# range (bind(0) picks from it, where every outgoing connection also takes its local port, so
# one could hold the port before the component binds it), and above the Kubernetes components'
# well-known defaults (10248-10259), at random.
free_ports() {
    python3 - "$1" <<'PY'
import random, socket, sys
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
if low - 20000 < 1000:
    sys.exit(f"the ephemeral port range starts at {low}: too low to keep ports out of it")
wanted, found = int(sys.argv[1]), []
for port in random.sample(range(20000, low), low - 20000):
    probe = socket.socket()
    try:
        probe.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        probe.close()
    found.append(port)
    if len(found) == wanted:
        break
if len(found) < wanted:
    sys.exit(f"only {len(found)} free ports below {low}")
print("\n".join(map(str, found)))
PY
}

# ---------------------------------------------------------------------------
# up
# ---------------------------------------------------------------------------
binaries() {
    BIN=${IRSA_BIN_DIR:-$(bash "$HERE/../install.sh")}
    local b
    for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl containerd containerd-shim-runc-v2 ctr; do
        [ -x "$BIN/$b" ] || die "$BIN/$b missing: run tests/cluster/install.sh"
    done
    echo "$BIN" >"$STATE/bin-dir"
    IMAGES=${IRSA_NODE_IMAGES:-$(bash "$HERE/install.sh")}
    [ -f "$IMAGES/pause.tar" ] || die "no pause image in $IMAGES: run tests/cluster/node/install.sh"
}

save_host_state() {
    [ -f "$STATE/host.saved" ] && return 0
    local s
    {
        for s in "${SYSCTLS[@]}"; do
            [ -e "/proc/sys/${s//.//}" ] && printf 'sysctl %s %s\n' "$s" "$(cat "/proc/sys/${s//.//}")"
        done
        ip netns list 2>/dev/null | awk '{ print "netns", $1 }'
        [ -d /var/lib/kubelet ] && echo "existed /var/lib/kubelet"
        [ -d /var/log/containers ] && echo "existed /var/log/containers"
        [ -d /var/lib/cni ] && echo "existed /var/lib/cni"
        ip link show "$BRIDGE" >/dev/null 2>&1 && echo "existed bridge"
    } >"$STATE/host.saved.tmp"
    mv "$STATE/host.saved.tmp" "$STATE/host.saved"
}

network() {
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
        ip link add "$BRIDGE" type bridge || die "cannot create bridge $BRIDGE (iproute2, CAP_NET_ADMIN)"
    fi
    ip -4 addr show dev "$BRIDGE" | grep -q "inet $NODE_IP/" || ip addr add "$NODE_IP/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    # The bridge plugin would turn it on anyway; pods reach the node through it.
    sysctl -qw net.ipv4.ip_forward=1
    mkdir -p "$STATE/cni/net.d"
    # No ipMasq and no default route: a pod can reach the pod and Service networks only.
    cat >"$STATE/cni/net.d/10-irsa-node.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$CNI_NETWORK",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "$POD_CIDR", "gateway": "$NODE_IP" }]],
        "routes": [{ "dst": "$POD_CIDR" }, { "dst": "$SERVICE_CIDR" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
EOF
}

pki() {
    [ -f "$PKI/done" ] && return 0
    local sub
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=irsa-node-ca" \
        -keyout "$PKI/ca.key" -out "$PKI/ca.crt" 2>/dev/null || die "openssl: cannot make the CA"
    cert() { # cert NAME SUBJECT EXTENSIONS
        openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$PKI/$1.key" -out "$PKI/$1.csr" 2>/dev/null
        printf '%s\n' "$3" >"$PKI/$1.ext"
        openssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
            -days 30 -extfile "$PKI/$1.ext" -out "$PKI/$1.crt" 2>/dev/null || die "openssl: cannot sign $1"
    }
    sub="subjectAltName=IP:$NODE_IP,IP:127.0.0.1,IP:$SERVICE_IP,DNS:localhost,DNS:kubernetes"
    sub+=",DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    cert apiserver "/CN=kube-apiserver" "$sub
extendedKeyUsage=serverAuth"
    # The API server's identity towards the kubelet (logs, exec).
    cert kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "extendedKeyUsage=clientAuth"
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/sa.key" 2>/dev/null
    openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
    local who
    : >"$PKI/tokens.csv"
    # USER|GROUP
    for who in "admin|system:masters" "system:node:$NODE_NAME|system:nodes" "system:kube-controller-manager|" \
        "system:kube-scheduler|" "system:kube-proxy|"; do
        local user=${who%|*} group=${who#*|}
        printf '%s,%s,%s,%s\n' "$(openssl rand -hex 24)" "$user" "uid-${user//:/-}" "$group" >>"$PKI/tokens.csv"
    done
    touch "$PKI/done"
}

kubeconfig() { # kubeconfig USER FILE
    local token
    token=$(awk -F, -v u="$1" '$2 == u { print $1 }' "$PKI/tokens.csv")
    cat >"$2" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: irsa-node
  cluster:
    server: $API_URL
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $1
  user:
    token: $token
contexts:
- name: irsa-node
  context: {cluster: irsa-node, user: $1}
current-context: irsa-node
EOF
    chmod 0600 "$2"
}

control_plane() {
    if [ ! -f "$STATE/ports" ]; then
        local names=(ETCD_PORT ETCD_PEER_PORT API_PORT KUBELET_PORT PROXY_METRICS_PORT PROXY_HEALTHZ_PORT)
        local ports
        ports=$(free_ports "${#names[@]}") || die "no free ports for the control plane"
        paste -d= <(printf '%s\n' "${names[@]}") <(printf '%s\n' "$ports") >"$STATE/ports"
    fi
    # shellcheck disable=SC1091
    . "$STATE/ports"
    API_URL=https://$NODE_IP:$API_PORT
    local issuer=${IRSA_NODE_ISSUER:-$API_URL}
    # --api-audiences is the issuer alone: a token meant for AWS (sts.amazonaws.com) must never
    # authenticate to the cluster (docs/first-deploy.md; doctor's audience.api-server).
    start etcd "$BIN/etcd" --name=irsa-node --data-dir="$STATE/etcd" \
        --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster="irsa-node=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync --log-level=warn
    start kube-apiserver "$BIN/kube-apiserver" \
        --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
        --bind-address="$NODE_IP" --secure-port="$API_PORT" --advertise-address="$NODE_IP" \
        --service-cluster-ip-range="$SERVICE_CIDR" \
        --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
        --client-ca-file="$PKI/ca.crt" \
        --kubelet-client-certificate="$PKI/kubelet-client.crt" --kubelet-client-key="$PKI/kubelet-client.key" \
        --kubelet-preferred-address-types=InternalIP \
        --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
        --token-auth-file="$PKI/tokens.csv" \
        --service-account-issuer="$issuer" --service-account-key-file="$PKI/sa.pub" \
        --service-account-signing-key-file="$PKI/sa.key" --api-audiences="$issuer" \
        --enable-aggregator-routing=true
    kubeconfig admin "$STATE/kubeconfig"
    wait_until 90 "the API server" kube-apiserver \
        "$BIN/kubectl" --kubeconfig="$STATE/kubeconfig" get --raw=/readyz
    kubeconfig system:kube-controller-manager "$STATE/controller-manager.kubeconfig"
    kubeconfig system:kube-scheduler "$STATE/scheduler.kubeconfig"
    kubeconfig system:kube-proxy "$STATE/kube-proxy.kubeconfig"
    kubeconfig "system:node:$NODE_NAME" "$STATE/kubelet.kubeconfig"
    mkdir -p "$STATE/volume-plugins"
    # Every controller under its own ServiceAccount, as kubeadm runs it; it also publishes the
    # kube-root-ca.crt ConfigMap that projected service-account volumes read.
    start kube-controller-manager "$BIN/kube-controller-manager" \
        --kubeconfig="$STATE/controller-manager.kubeconfig" --use-service-account-credentials=true \
        --root-ca-file="$PKI/ca.crt" --service-account-private-key-file="$PKI/sa.key" \
        --leader-elect=false --bind-address=127.0.0.1 --secure-port=0 \
        --flex-volume-plugin-dir="$STATE/volume-plugins" --controllers='*,-nodeipam'
    start kube-scheduler "$BIN/kube-scheduler" --kubeconfig="$STATE/scheduler.kubeconfig" \
        --leader-elect=false --bind-address=127.0.0.1 --secure-port=0
    # Neither serves a health port here: a flag it refuses ends it at once, so look.
    sleep 2
    still_running kube-controller-manager
    still_running kube-scheduler
}

runtime() {
    local c=$STATE/containerd
    mkdir -p "$c"
    # containerd 2 (tests/cluster/install.sh builds it; Kubernetes 1.36 and later refuse 1.x).
    cat >"$c/config.toml" <<EOF
version = 3
root = "$c/root"
state = "$c/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.erofs", "io.containerd.snapshotter.v1.blockfile",
  "io.containerd.nri.v1.nri"]
[grpc]
  address = "$c/containerd.sock"
[ttrpc]
  address = "$c/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$c/opt"
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "localhost/pause:3.10"
[plugins."io.containerd.cri.v1.runtime"]
  # This machine's root lacks CAP_SYS_RESOURCE: never lower a container's oom_score_adj.
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$c/runc"
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "$STATE/cni/net.d"
EOF
    # Its runc shim is looked up on PATH.
    start containerd env PATH="$BIN:$PATH" "$BIN/containerd" --config "$c/config.toml"
    wait_until 30 containerd containerd "$BIN/ctr" --address "$c/containerd.sock" version
}

import_images() {
    local image
    for image in "$@"; do
        [ -f "$image" ] || die "no image archive $image"
        "$BIN/ctr" --address "$STATE/containerd/containerd.sock" -n k8s.io images import "$image" >&2 || die "cannot import $image into containerd"
    done
}

kubelet() {
    local k=$STATE/kubelet
    mkdir -p "$k/root" "$k/certs" "$STATE/pod-logs"
    # Pods resolve nothing: no cluster DNS here, and the host's resolver must never be used.
    echo "nameserver 127.0.0.1" >"$k/resolv.conf"
    cat >"$k/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$STATE/containerd/containerd.sock
# cgroupfs, as containerd's runc (SystemdCgroup = false); on this machine's cgroup v1, which
# Kubernetes 1.35 and later refuse unless failCgroupV1 is false.
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
resolvConf: $k/resolv.conf
volumePluginDir: $STATE/volume-plugins
podLogsDir: $STATE/pod-logs
# The disk is shared with everything else on this machine: never evict or collect the images
# that were imported by hand (nothing can be pulled back).
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
rotateCertificates: false
EOF
    start kubelet "$BIN/kubelet" --config="$k/config.yaml" --kubeconfig="$STATE/kubelet.kubeconfig" \
        --root-dir="$k/root" --cert-dir="$k/certs" --hostname-override="$NODE_NAME" --node-ip="$NODE_IP"
    wait_until 60 "the node" kubelet sh -c \
        "'$BIN/kubectl' --kubeconfig='$STATE/kubeconfig' get node '$NODE_NAME' -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
    start kube-proxy "$BIN/kube-proxy" --kubeconfig="$STATE/kube-proxy.kubeconfig" --proxy-mode=iptables \
        --hostname-override="$NODE_NAME" --cluster-cidr="$POD_CIDR" --nodeport-addresses="$NODE_IP/32" \
        --conntrack-max-per-core=0 --metrics-bind-address="127.0.0.1:$PROXY_METRICS_PORT" --healthz-bind-address="127.0.0.1:$PROXY_HEALTHZ_PORT"
}

# The node recorded in $OWNER, when it is not this one: still running, it keeps the machine;
# left behind (its owner killed before `down`), it is taken down first, so that what this node
# records as the host's own settings is the host's, not a dead node's bridge and sysctls.
claim_machine() {
    local other=""
    [ -f "$OWNER" ] && other=$(cat "$OWNER")
    if [ -n "$other" ] && [ "$other" != "$STATE" ] && [ -d "$other" ]; then
        local pid
        for pid in "$other"/pids/*.pid; do
            # Every process the node starts names its state directory on its command line.
            [ -f "$pid" ] && tr '\0' ' ' <"/proc/$(cat "$pid")/cmdline" 2>/dev/null | grep -qF "$other/" &&
                die "another node runs on this machine (one node per machine): bash $HERE/node.sh down $other"
        done
        log "taking down the node left in $other (its owner stopped before its down)"
        bash "$HERE/node.sh" down "$other" || die "could not take down the node left in $other"
    fi
    if pgrep -x kubelet >/dev/null && ! alive kubelet; then
        die "another kubelet runs on this machine (one node per machine: scripts/dev-cluster.sh down?)"
    fi
    echo "$STATE" >"$OWNER"
}

up() {
    claim_machine
    binaries
    save_host_state
    network
    pki
    control_plane
    runtime
    import_images "$IMAGES/pause.tar" "$@"
    kubelet
    # The `kubernetes` Service through kube-proxy, as pods will use it.
    wait_until 60 "kube-proxy's rules" kube-proxy sh -c "iptables -t nat -S KUBE-SERVICES | grep -q '$SERVICE_IP/32'"
    printf 'NODE_IP=%s\nAPI_URL=%s\nKUBECONFIG=%s\nBIN=%s\nPOD_CIDR=%s\nSERVICE_CIDR=%s\n' "$NODE_IP" "$API_URL" \
        "$STATE/kubeconfig" "$BIN" "$POD_CIDR" "$SERVICE_CIDR" >"$STATE/node.env"
    log "node $NODE_NAME Ready at $NODE_IP; API server $API_URL; logs in $LOGS"
    printf 'export KUBECONFIG=%s\n' "$STATE/kubeconfig"
}

# ---------------------------------------------------------------------------
# down
# ---------------------------------------------------------------------------
down() {
    # Best effort from here on: whatever fails, the rest is still undone.
    set +e
    local kubectl=""
    BIN=${IRSA_BIN_DIR:-$(cat "$STATE/bin-dir" 2>/dev/null)}
    [ -x "$BIN/kubectl" ] && kubectl="$BIN/kubectl --kubeconfig=$STATE/kubeconfig --request-timeout=10s"
    # Nothing recreates or schedules pods any more; the kubelet stops the ones it runs, so no
    # sandbox or mount is left behind.
    stop kube-controller-manager
    stop kube-scheduler
    if [ -n "$kubectl" ] && alive kube-apiserver && alive kubelet; then
        $kubectl delete pods --all --all-namespaces --grace-period=1 --wait=true --timeout=90s >/dev/null 2>&1 ||
            log "some pods were not deleted in time; stopping them with the runtime"
    fi
    stop kube-proxy
    stop kubelet 30
    if alive containerd; then
        local ctr_="$BIN/ctr --address $STATE/containerd/containerd.sock -n k8s.io" task
        for task in $($ctr_ tasks list -q 2>/dev/null); do
            $ctr_ tasks kill -s KILL "$task" >/dev/null 2>&1 || true
        done
    fi
    stop containerd
    # Shims outlive containerd by design.
    pkill -KILL -f "containerd-shim.*-address $STATE/containerd/containerd.sock" 2>/dev/null || true
    stop kube-apiserver
    stop etcd
    if [ -n "${BIN:-}" ] && [ -x "$BIN/kube-proxy" ]; then
        "$BIN/kube-proxy" --cleanup --proxy-mode=iptables >/dev/null 2>&1 || true
    fi
    # The kubelet's own chains.
    local table chain
    for table in filter nat mangle; do
        for chain in $(iptables -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ { print $2 }'); do
            iptables -t "$table" -S 2>/dev/null | awk -v c="$chain" '$1 == "-A" && $0 ~ "-j " c "( |$)" { $1 = "-D"; print }' |
                while read -r rule; do eval "iptables -t $table $rule" 2>/dev/null || true; done
            iptables -t "$table" -F "$chain" 2>/dev/null || true
        done
        for chain in $(iptables -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ { print $2 }'); do
            iptables -t "$table" -X "$chain" 2>/dev/null || true
        done
    done
    # Mounts under the state directory (the kubelet bind-mounts its root, pods' volumes, shm).
    findmnt -rn -o TARGET | grep -F "$STATE/" | sort -r | while read -r target; do
        umount -l "$target" 2>/dev/null || true
    done
    local saved=$STATE/host.saved
    if [ -f "$saved" ]; then
        local netns
        for netns in $(ip netns list 2>/dev/null | awk '$1 ~ /^cni-/ { print $1 }'); do
            grep -qx "netns $netns" "$saved" || ip netns delete "$netns" 2>/dev/null || true
        done
        grep -qx "existed bridge" "$saved" || ip link delete "$BRIDGE" 2>/dev/null || true
        rm -rf "/var/lib/cni/networks/$CNI_NETWORK" /var/lib/cni/results/"$CNI_NETWORK"-*
        grep -qx "existed /var/lib/cni" "$saved" || rm -rf /var/lib/cni
        grep -qx "existed /var/lib/kubelet" "$saved" || rm -rf /var/lib/kubelet
        if grep -qx "existed /var/log/containers" "$saved"; then
            find /var/log/containers -maxdepth 1 -lname "$STATE/*" -delete 2>/dev/null || true
        else
            rm -rf /var/log/containers
        fi
        # Pod cgroups the kubelet made (cgroupfs driver): deepest first.
        find /sys/fs/cgroup -depth -type d -path '*/kubepods*' -exec rmdir {} + 2>/dev/null || true
        local key value
        while read -r kind key value; do
            [ "$kind" = sysctl ] && sysctl -qw "$key=$value" 2>/dev/null || true
        done <"$saved"
    fi
    [ "$(cat "$OWNER" 2>/dev/null)" = "$STATE" ] && rm -f "$OWNER"
    rm -rf "$STATE"
    log "node stopped and removed ($STATE)"
}

case $command in
up) up "$@" ;;
import)
    alive containerd || die "the node in $STATE is not running"
    BIN=$(cat "$STATE/bin-dir")
    import_images "$@"
    ;;
restart)
    [ "${1:-}" = kube-apiserver ] || usage
    alive kube-apiserver || die "the node in $STATE is not running"
    stop kube-apiserver 5
    BIN=$(cat "$STATE/bin-dir")
    control_plane
    log "kube-apiserver restarted"
    ;;
down) down ;;
*) usage ;;
esac
