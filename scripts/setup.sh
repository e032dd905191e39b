#!/usr/bin/env bash
# Installs every Debian 12 package tmem needs to build, test and benchmark.
# Idempotent: when everything is present it checks with dpkg and returns in well under a second.
set -euo pipefail

PACKAGES=(
  # build
  bazel-bootstrap g++ pkg-config
  # libraries (wrapped in third_party/BUILD.bazel)
  libgrpc++-dev protobuf-compiler-grpc protobuf-compiler libprotobuf-dev
  librocksdb-dev prometheus-cpp-dev libgtest-dev libgmock-dev
  libnbd-dev liburing-dev libabsl-dev libyaml-cpp-dev libgnutls28-dev
  # certificates for TLS (scripts/make-certs.sh)
  openssl
  # a GnuTLS client with its own defaults, to check the cipher a TLS listener picks
  gnutls-bin
  # sanitizer runtimes for the asan/tsan configs; clang for --config=clang (thread-safety
  # analysis) and the fuzzers; clang-format and git for the format test (scripts/format.sh)
  libclang-rt-14-dev clang clang-format-14 git
  # test peers and benchmark peers
  libnbd-bin nbdkit python3-libnbd qemu-utils fio python3 curl
  # metrics: promtool and a real Prometheus server for the metrics tests
  prometheus
  # deployment tests: yamllint, PyYAML, the Kubernetes API's types, systemd-analyze
  yamllint python3-yaml python3-kubernetes systemd
  # benchmark peer for remote pages
  memcached libmemcached-dev
  # a DNS server for the membership test (libtmemclient re-resolves dns:NAME:PORT)
  dnsmasq-base
)

# kubectl (its kustomize renders deploy/k8s): Debian's kubernetes-client, unless a kubectl is
# already installed (another package's /usr/bin/kubectl would conflict with it).
if ! command -v kubectl >/dev/null 2>&1; then PACKAGES+=(kubernetes-client); fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "setup: installing ${#missing[@]} Debian packages: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
