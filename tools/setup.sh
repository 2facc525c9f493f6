#!/usr/bin/env bash
# Installs every Debian package popmesh needs to build, test, benchmark and run its demo.
# Idempotent: safe to run again. Nothing is vendored or downloaded from anywhere but Debian.
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake pkg-config clang libclang-rt-14-dev clang-format
  # runtime libraries (DESIGN.md section 4)
  libzmq3-dev libsodium-dev liblmdb-dev libmsgpack-dev libev-dev
  libhttp-parser-dev libjansson-dev
  # tests
  libcmocka-dev iproute2 iptables procps psmisc python3 python3-msgpack python3-zmq python3-nacl
  chromium curl faketime
  # benchmarks and peers
  wrk iperf3 hyperfine nginx-light openssh-server openssh-client stunnel4 lmdb-utils
  # DNS: the wire-format library, a real resolver and client, the authoritative peer, the load tool
  libldns-dev ldnsutils bind9-dnsutils unbound nsd dnsperf
  # TLS and ACME: OpenSSL, libcurl for outbound HTTPS, Pebble (Let's Encrypt's test CA)
  libssl-dev openssl libcurl4-openssl-dev pebble
  # metrics: a real Prometheus scrapes the admin listeners (promtool comes with it)
  prometheus
  # second factor and identity: QR codes of TOTP enrolment (meshctl); codes and JWTs checked
  # by the tests with other implementations
  libqrencode-dev oathtool python3-jwt
)

# Node.js and npm run the test peers that exist only on npm (tools/node/package.json: a browser
# driver for Debian's chromium, an OpenID provider). A machine that already has a node with npm
# (for example NodeSource's, which bundles npm and conflicts with Debian's npm package) keeps it.
if ! command -v npm >/dev/null 2>&1; then
  packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

# The npm peers, at the versions pinned in package-lock.json; npm ci runs again only when the
# lock file changed since the last install.
node_peers() {
  local dir
  dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/node"
  if [ -f "$dir/node_modules/.package-lock.json" ] &&
     [ "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]; then
    return 0
  fi
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) ||
    { echo "setup: npm ci in $dir failed" >&2; exit 1; }
  echo "setup: npm peers installed in $dir/node_modules"
}

if [ "${#missing[@]}" -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages already installed"
  node_peers
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: run as root or install sudo" >&2; exit 1; }
  SUDO="sudo"
fi

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Servers from Debian (unbound, nsd, nginx) must not start as system services: tests start
# their own on loopback ports, and a service holding port 53 is not ours to leave behind. A
# policy-rc.d answering 101 tells invoke-rc.d not to start them; only one we created is removed.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod 755 "$policy"
  made_policy=1
fi
cleanup() { [ "$made_policy" = 1 ] && $SUDO rm -f "$policy"; return 0; }
trap cleanup EXIT
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
node_peers
echo "setup: done"
