# Runs the Tailscale node only while this replica leads (the discovery container keeps the
# leader file exactly then). Rendered into the tailscale container's args by the chart.
leader=${IRSA_LEADER_FILE:-/run/irsa-leader/leader}
boot=${CONTAINERBOOT:-/usr/local/bin/containerboot}
until [ -f "$leader" ]; do sleep 1; done
"$boot" &
node=$!
while [ -f "$leader" ] && kill -0 "$node" 2>/dev/null; do sleep 1; done
kill "$node" 2>/dev/null
wait "$node"
exit 1
