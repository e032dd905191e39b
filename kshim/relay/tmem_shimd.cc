// tmem-shimd: the userspace relay between tmem_shim.ko and tmemd.
//
// Opens /dev/tmem_shim, maps the shim's ring and answers its requests over libtmemclient's
// Session streams (kshim/relay/relay.h). When the module is not loaded yet, or the device fails,
// it tries again every --retry-ms; SIGTERM or SIGINT stops it (the module then detaches: puts
// are dropped, gets miss, invalidations are recorded until a relay attaches again).
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "absl/strings/str_split.h"
#include "client/tmem_client.h"
#include "common/flags.h"
#include "common/logging.h"
#include "common/version.h"
#include "kshim/relay/relay.h"
#include "server/metrics/metrics.h"
#include "tsf_front.h"

namespace {

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop.store(true); }

constexpr char kUsage[] = R"(usage: tmem-shimd --servers=HOST:PORT[,HOST:PORT...] [flags]

Relays the tmem_shim kernel module's cleancache requests to tmemd.

  --servers=LIST          tmemd gRPC addresses (required)
  --device=PATH           the shim's device (default /dev/tmem_shim)
  --tenant=NAME           namespace of this node's pools in tmemd (default: with TLS the tenant
                          of the client certificate, else the host name)
  --transport=auto        how pages travel: auto (the page wire protocol where tmemd offers it, else
                          gRPC), wire (wire only), grpc (gRPC Session streams only)
  --tls-ca=PEM            speak TLS to tmemd, verifying its certificate against this CA
  --tls-cert=PEM          this node's client certificate (its CN or SAN names the node's tenant)
  --tls-key=PEM           its private key
  --tls-server-name=NAME  the name to verify in tmemd's certificate (default: the server's host)
  --metrics-listen=ADDR   Prometheus /metrics (default 127.0.0.1:9465; empty: off)
  --module-stats=PATH     the module's counters, exported as tmem_shim_* (default
                          /sys/kernel/debug/tmem_shim/stats; skipped when unreadable)
  --call-timeout-ms=N     longest wait for tmemd per call (default 200)
  --prefetch-pages=N      a get that continues a sequential read fetches N pages at once (default
                          32; 0 or 1: off)
  --prefetch-cache-pages=N  pages fetched ahead kept at most (default 4096)
  --retry-ms=N            pause before opening the device again (default 1000)
  --version, --help
)";

// The module's debugfs counters: "name value" lines.
void VisitModuleStats(const std::string& path, tmem::StatsVisitor& v) {
  std::ifstream in(path);
  std::string name;
  uint64_t value;
  while (in >> name >> value) {
    if (tsf_stat_is_gauge(name.c_str())) {
      v.Gauge("shim_" + name, "tmem_shim module state (debugfs)", static_cast<double>(value), {});
    } else {
      v.Counter("shim_" + name, "tmem_shim module counter (debugfs)", value, {});
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  using namespace tmem;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
      std::cout << kUsage;
      return 0;
    }
    if (!std::strcmp(argv[i], "--version")) {
      std::cout << "tmem-shimd " << kVersion << " (ring ABI " << TMEM_SHIM_ABI_VERSION << ")\n";
      return 0;
    }
  }
  auto flags = Flags::Parse(
      argc, argv, 1,
      {"servers", "device", "tenant", "metrics-listen", "module-stats", "call-timeout-ms", "retry-ms", "prefetch-pages",
       "prefetch-cache-pages", "tls-ca", "tls-cert", "tls-key", "tls-server-name", "transport"},
      {});
  if (!flags.ok()) {
    std::cerr << "tmem-shimd: " << flags.status().message() << "\n" << kUsage;
    return 2;
  }
  if (!flags->positional().empty()) {
    std::cerr << "tmem-shimd: unexpected argument '" << flags->positional()[0] << "'\n" << kUsage;
    return 2;
  }
  auto servers = flags->Require("servers");
  auto call_timeout = flags->GetUint("call-timeout-ms", 200);
  auto retry = flags->GetUint("retry-ms", 1000);
  auto prefetch = flags->GetUint("prefetch-pages", 32);
  auto prefetch_cache = flags->GetUint("prefetch-cache-pages", 4096);
  for (const absl::Status& st :
       {servers.status(), call_timeout.status(), retry.status(), prefetch.status(), prefetch_cache.status()}) {
    if (!st.ok()) {
      std::cerr << "tmem-shimd: " << st.message() << "\n";
      return 2;
    }
  }
  if (*call_timeout < 1 || *call_timeout > 60000 || *retry < 1 || *retry > 600000) {
    std::cerr << "tmem-shimd: --call-timeout-ms must be 1..60000 and --retry-ms 1..600000\n";
    return 2;
  }
  if (*prefetch > 256 || *prefetch_cache > (1u << 20)) {
    std::cerr << "tmem-shimd: --prefetch-pages must be 0..256 and --prefetch-cache-pages 0..1048576\n";
    return 2;
  }
  client::ClientOptions copt;
  copt.servers = absl::StrSplit(*servers, ',', absl::SkipEmpty());
  copt.call_timeout_ms = static_cast<int64_t>(*call_timeout);
  copt.tls.ca = flags->Get("tls-ca");
  copt.tls.cert = flags->Get("tls-cert");
  copt.tls.key = flags->Get("tls-key");
  copt.tls.server_name = flags->Get("tls-server-name");
  if (flags->Has("transport")) copt.transport = flags->Get("transport");
  auto tmem_client = client::TmemClient::Create(copt);
  if (!tmem_client.ok()) {
    std::cerr << "tmem-shimd: " << tmem_client.status().message() << "\n";
    return 2;
  }
  std::string tenant = flags->Get("tenant");
  if (tenant.empty() && !copt.tls.enabled()) {
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    tenant = host;
  }
  if (tenant.size() > 64) {
    std::cerr << "tmem-shimd: --tenant is at most 64 bytes\n";
    return 2;
  }
  const std::string device_path = flags->Get("device", TMEM_SHIM_DEVICE);
  const std::string module_stats = flags->Get("module-stats", "/sys/kernel/debug/tmem_shim/stats");

  kshim::RelayOptions ropt;
  ropt.tenant = tenant;
  ropt.prefetch_pages = static_cast<int>(*prefetch);
  ropt.prefetch_cache_pages = static_cast<int>(*prefetch_cache);
  kshim::Relay relay(tmem_client->get(), ropt);
  std::unique_ptr<metrics::Metrics> exporter;
  if (const std::string listen = flags->Get("metrics-listen", "127.0.0.1:9465"); !listen.empty()) {
    client::TmemClient* c = tmem_client->get();
    auto m = metrics::Metrics::Start(listen, [&relay, c, module_stats](StatsVisitor& v) {
      const kshim::RelayCounters& r = relay.counters();
      auto counter = [&v](const char* name, const char* help, const std::atomic<uint64_t>& value) {
        v.Counter(name, help, value.load(std::memory_order_relaxed), {});
      };
      v.Gauge("shimd_attached", "1 while the relay is attached to the shim's ring.",
              static_cast<double>(r.attached.load(std::memory_order_relaxed)), {});
      counter("shimd_attaches", "Times the relay attached to the shim.", r.attaches);
      counter("shimd_requests", "Ring requests answered.", r.requests);
      counter("shimd_puts", "Pages put to tmemd.", r.puts);
      counter("shimd_gets", "Gets the module asked of the relay.", r.gets);
      counter("shimd_get_hits", "Gets answered with a page (from tmemd or from pages fetched ahead).", r.get_hits);
      counter("shimd_invalidations", "Page and inode invalidations forwarded.", r.invalidations);
      counter("shimd_invalidations_deferred", "Invalidations only recorded for replay (tmemd unreachable).",
              r.invalidations_deferred);
      counter("shimd_pool_flushes", "Whole-pool flushes forwarded.", r.pool_flushes);
      counter("shimd_pools_announced", "Pools announced by the module.", r.pools_announced);
      counter("shimd_bad_requests", "Ring requests that could not be answered.", r.bad_requests);
      counter("shimd_prefetched_pages", "Pages fetched ahead of a sequential read and kept.", r.prefetched);
      counter("shimd_prefetch_hits", "Gets answered from pages fetched ahead.", r.prefetch_hits);
      counter("shimd_client_puts_dropped", "Puts dropped by the client (server unreachable or refused).",
              c->counters().puts_dropped);
      counter("shimd_client_gets_unreachable", "Gets that missed because a server did not answer.",
              c->counters().gets_unreachable);
      counter("shimd_client_restarts_seen", "tmemd restarts noticed.", c->counters().restarts_seen);
      VisitModuleStats(module_stats, v);
    });
    if (!m.ok()) {
      std::cerr << "tmem-shimd: " << m.status().message() << "\n";
      return 1;
    }
    exporter = std::move(*m);
  }

  struct sigaction sa = {};
  sa.sa_handler = OnSignal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  TMEM_LOG(Info) << "tmem-shimd " << kVersion << ": servers " << *servers << ", tenant "
                 << (tenant.empty() ? std::string("(the certificate's)") : tenant) << ", device " << device_path;
  std::string last_error;
  while (!g_stop.load()) {
    absl::Status st;
    auto device = kshim::OpenKernelDevice(device_path);
    if (device.ok()) {
      TMEM_LOG(Info) << "tmem-shimd: attached to " << device_path;
      last_error.clear();
      st = relay.Serve(**device, g_stop);
      if (st.ok()) break;
    } else {
      st = device.status();
    }
    if (st.code() == absl::StatusCode::kFailedPrecondition && absl::StrContains(st.message(), "ABI")) {
      TMEM_LOG(Error) << "tmem-shimd: " << st.message();
      return 1;
    }
    if (std::string(st.message()) != last_error) {  // say each new reason once
      TMEM_LOG(Warning) << "tmem-shimd: " << st.message() << "; retrying every " << *retry << " ms";
      last_error = std::string(st.message());
    }
    for (uint64_t waited = 0; waited < *retry && !g_stop.load(); waited += 50) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  TMEM_LOG(Info) << "tmem-shimd: stopped";
  return 0;
}
