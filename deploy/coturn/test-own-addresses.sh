#!/bin/bash
# Checks relay-own-addresses.nft against a real coturn, in two network namespaces (needs root,
# coturn's turnserver, turnutils_peer and turnutils_uclient, and a "turnserver" user as the
# Debian package makes). Nothing leaves the namespaces. The relay host is 203.0.113.10, let
# through the shipped config's deny list as a public address would be; a UDP service listens on
# it at port 5000.
#
# Expected: with the nftables rules loaded, an allocation cannot reach the service on the relay
# host (tot_recv_bytes 0), and two clients relayed by the same relay still reach each other.
# Run as `test-own-addresses.sh` (without the rules: both relay) and `test-own-addresses.sh nft`.
set -u
here=$(cd "$(dirname "$0")" && pwd)
secret=test-secret-for-the-relay-0123456789
pids=()
cleanup() {
    kill "${pids[@]}" 2>/dev/null
    sleep 0.3
    ip netns del peerline-rly 2>/dev/null
    ip netns del peerline-cli 2>/dev/null
}
trap cleanup EXIT
ip netns add peerline-rly
ip netns add peerline-cli
ip -n peerline-rly link set lo up
ip -n peerline-cli link set lo up
ip link add pl-rly type veth peer name pl-cli
ip link set pl-rly netns peerline-rly
ip link set pl-cli netns peerline-cli
ip -n peerline-rly addr add 203.0.113.10/24 dev pl-rly
ip -n peerline-rly link set pl-rly up
ip -n peerline-cli addr add 203.0.113.20/24 dev pl-cli
ip -n peerline-cli link set pl-cli up
ip netns exec peerline-rly turnutils_peer -L 203.0.113.10 -p 5000 >/dev/null 2>&1 &
pids+=($!)
ip netns exec peerline-rly turnserver -c "$here/turnserver.conf" \
    --listening-ip=203.0.113.10 --relay-ip=203.0.113.10 --listening-port=3478 \
    --tls-listening-port=5349 --no-tls --no-dtls --static-auth-secret=$secret \
    --allowed-peer-ip=203.0.113.0-203.0.113.255 --proc-user=turnserver --proc-group=turnserver \
    --log-file=stdout --pidfile "$(mktemp -u)" >/dev/null 2>&1 &
pids+=($!)
sleep 2
if [ "${1:-}" = nft ]; then
    ip netns exec peerline-rly nft -f "$here/relay-own-addresses.nft" && echo "rules loaded"
fi
credentials() {
    local user="$(($(date +%s) + 600)):$1"
    echo "$user" "$(printf %s "$user" | openssl dgst -sha1 -hmac "$secret" -binary | base64)"
}
uclient() {
    ip netns exec peerline-cli timeout 15 turnutils_uclient -u "$1" -w "$2" "${@:3}" \
        -n 5 -m 1 -l 100 203.0.113.10 2>&1 | grep -E "tot_recv_bytes|403" | tail -1
}
read -r u p < <(credentials service)
echo "to a UDP service on the relay host:"
uclient "$u" "$p" -e 203.0.113.10 -r 5000
read -r u p < <(credentials c2c)
echo "client to client through the same relay:"
uclient "$u" "$p" -y
