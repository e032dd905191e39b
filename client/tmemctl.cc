// tmemctl: the command-line client of tmemd (gRPC).
// Exit status: 0 success, 1 the call failed or tmemd is unreachable, 2 bad command line.
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/tmemctl_bench.h"
#include "client/tmemctl_commands.h"
#include "common/flags.h"
#include "proto/health.grpc.pb.h"
#include "proto/tmem_clients.h"

namespace tmem::ctl {

int Failed(const std::string& what, const ::grpc::Status& s, const std::string& server) {
  if (s.error_code() == ::grpc::StatusCode::UNAVAILABLE || s.error_code() == ::grpc::StatusCode::DEADLINE_EXCEEDED) {
    std::fprintf(stderr, "tmemctl: cannot reach tmemd at %s: %s\n", server.c_str(), s.error_message().c_str());
  } else {
    std::fprintf(stderr, "tmemctl: %s failed: %s\n", what.c_str(), s.error_message().c_str());
  }
  return 1;
}

bool HexToBytes(const std::string& hex, std::string* out) {
  std::string h;
  for (char c : hex) {
    if (c != '-') h.push_back(c);
  }
  if (h.size() != 32) return false;
  out->clear();
  for (size_t i = 0; i < 32; i += 2) {
    char* end = nullptr;
    std::string byte = h.substr(i, 2);
    long v = std::strtol(byte.c_str(), &end, 16);
    if (*end != '\0') return false;
    out->push_back(static_cast<char>(v));
  }
  return true;
}

absl::StatusOr<uint32_t> PoolFlag(const Flags& f) {
  auto v = f.GetUint("pool", 0);
  if (!v.ok()) return v.status();
  if (!f.Has("pool") || *v == 0 || *v > UINT32_MAX) return absl::InvalidArgumentError("--pool=N is required");
  return static_cast<uint32_t>(*v);
}

// grpc.health.v1.Health/Check: prints the status; exit 0 only when SERVING.
namespace {

void PrintCache(const std::string& name, const tmem::v1::CacheStatus& c) {
  std::printf("export            %s\n", name.c_str());
  std::printf("dirty_bytes       %lu\n", c.dirty_bytes());
  std::printf("cached_bytes      %lu\n", c.cached_bytes());
  std::printf("segments          head %lu, synced %lu, migrated %lu; %lu of %lu free\n", c.head_segment(),
              c.synced_segment(), c.migrated_segment(), c.free_segments(), c.segment_count());
  std::printf("oldest_dirty_ms   %lu\n", c.oldest_dirty_age_ms());
  std::printf("read_lines        %lu hits (%lu from RAM), %lu misses\n", c.read_hits(), c.ram_hits(), c.read_misses());
  std::printf("ram_tier          %lu of %lu bytes\n", c.ram_bytes(), c.ram_capacity_bytes());
  std::printf("lines_written     %lu\n", c.lines_written());
  std::printf("flushes           %lu (%lu device syncs)\n", c.flushes(), c.syncs());
  std::printf("migrated_bytes    %lu (%lu failed batches)\n", c.migrated_bytes(), c.migration_errors());
  std::printf(
      "tunables          barrier_deadline_us %ld, migrate_batch_segments %u, migrate_idle_ms %ld, "
      "migrate_free_segments_low %u, migrate_max_age_ms %ld\n",
      c.tunables().barrier_deadline_us(), c.tunables().migrate_batch_segments(), c.tunables().migrate_idle_ms(),
      c.tunables().migrate_free_segments_low(), c.tunables().migrate_max_age_ms());
  if (c.failed()) std::printf("FAILED            %s\n", c.failure().c_str());
}

int Health(Client& c, ::grpc::ClientContext& ctx, const std::string& service) {
  auto health = grpc::health::v1::Health::NewStub(c.channel());
  grpc::health::v1::HealthCheckRequest req;
  req.set_service(service);
  grpc::health::v1::HealthCheckResponse resp;
  ::grpc::Status s = health->Check(&ctx, req, &resp);
  if (s.error_code() == ::grpc::StatusCode::NOT_FOUND) {
    std::printf("SERVICE_UNKNOWN\n");
    return 1;
  }
  if (!s.ok()) return Failed("health", s, c.server());
  std::printf("%s\n", grpc::health::v1::HealthCheckResponse::ServingStatus_Name(resp.status()).c_str());
  return resp.status() == grpc::health::v1::HealthCheckResponse::SERVING ? 0 : 1;
}

// What every command gets: the global flags.
struct Invocation {
  std::string server = "127.0.0.1:7070";
  int64_t timeout_ms = 5000;
  bool timeout_given = false;
  client::TlsClientOptions tls;
};

// A context with the default deadline.
int CmdHealth(Client& c, const Flags& f) {
  Call call(c);
  return Health(c, call.ctx, f.Get("service"));
}

int CmdInfo(Client& c, const Flags&) {
  Call call(c);
  tmem::v1::ServerInfoResponse r;
  ::grpc::Status s = c.admin().ServerInfo(&call.ctx, {}, &r);
  if (!s.ok()) return Failed("info", s, c.server());
  std::printf(
      "server      %s\nversion     %s\ninstance    %lu\ncapacity    %lu bytes (%lu segments of %u)\n"
      "used        %lu bytes\nfree        %lu segments\nwarm start  %s\n",
      c.server().c_str(), r.version().c_str(), r.instance_id(), r.capacity_bytes(), r.segment_count(),
      r.segment_bytes(), r.used_bytes(), r.free_segments(), r.kept_pages_from_previous_run() ? "yes" : "no");
  for (const auto& h : r.health()) {
    std::printf("health      %s %s%s%s\n", h.service().empty() ? "(server)" : h.service().c_str(),
                h.serving() ? "SERVING" : "NOT_SERVING", h.reason().empty() ? "" : ": ", h.reason().c_str());
  }
  return 0;
}

int CmdPools(Client& c, const Flags&) {
  Call call(c);
  tmem::v1::ListPoolsResponse r;
  ::grpc::Status s = c.admin().ListPools(&call.ctx, {}, &r);
  if (!s.ok()) return Failed("pools", s, c.server());
  std::printf("%-8s %-8s %-10s %s\n", "pool", "kind", "page size", "tenant");
  for (const auto& p : r.pools()) {
    std::printf("%-8u %-8s %-10u %s\n", p.pool_id(), p.shared() ? "shared" : "private", p.page_bytes(),
                p.tenant().c_str());
  }
  return 0;
}

int CmdExports(Client& c, const Flags&) {
  Call call(c);
  tmem::v1::ListExportsResponse r;
  ::grpc::Status s = c.admin().ListExports(&call.ctx, {}, &r);
  if (!s.ok()) return Failed("exports", s, c.server());
  std::printf("%-16s %14s %-4s %6s  %-40s %s\n", "export", "size", "mode", "conns", "backend", "description");
  for (const auto& e : r.exports()) {
    std::printf("%-16s %14lu %-4s %6lu  %-40s %s\n", e.name().c_str(), e.size_bytes(), e.read_only() ? "ro" : "rw",
                e.open_connections(), e.backend().c_str(), e.description().c_str());
  }
  for (const auto& a : r.nbd_addresses()) std::printf("nbd://%s/EXPORT\n", a.c_str());
  if (!r.nbd_unix_socket().empty()) std::printf("nbd+unix:///EXPORT?socket=%s\n", r.nbd_unix_socket().c_str());
  return 0;
}

// cache --action=status: the state through the export list (no action).
int CacheStatus(Client& c, const std::string& name) {
  Call call(c);
  tmem::v1::ListExportsResponse r;
  ::grpc::Status s = c.admin().ListExports(&call.ctx, {}, &r);
  if (!s.ok()) return Failed("cache", s, c.server());
  for (const auto& e : r.exports()) {
    if (e.name() != name) continue;
    if (!e.has_cache()) {
      std::fprintf(stderr, "tmemctl: export '%s' has no writeback cache\n", e.name().c_str());
      return 1;
    }
    PrintCache(e.name(), e.cache());
    return 0;
  }
  std::fprintf(stderr, "tmemctl: no export named '%s'\n", name.c_str());
  return 1;
}

int CmdCache(Client& c, const Flags& f) {
  if (!f.Has("export")) return Usage("cache needs --export=NAME");
  const std::string action = f.Get("action", "status");
  tmem::v1::ExportControlRequest req;
  req.set_export_name(f.Get("export"));
  if (action == "status") return CacheStatus(c, req.export_name());
  if (action == "flush") {
    req.set_action(tmem::v1::ExportControlRequest::FLUSH);
  } else if (action == "migrate-now") {
    req.set_action(tmem::v1::ExportControlRequest::MIGRATE_NOW);
  } else if (action == "drain") {
    req.set_action(tmem::v1::ExportControlRequest::DRAIN);
  } else if (action == "set") {
    req.set_action(tmem::v1::ExportControlRequest::SET_TUNABLES);
    tmem::v1::CacheTunables* t = req.mutable_tunables();
    // Each tunable's flag and proto field; the server checks the values against its ranges.
    const std::pair<const char*, void (*)(tmem::v1::CacheTunables*, uint64_t)> kTunables[] = {
        {"barrier-deadline-us",
         [](tmem::v1::CacheTunables* x, uint64_t v) { x->set_barrier_deadline_us(static_cast<int64_t>(v)); }},
        {"migrate-batch-segments",
         [](tmem::v1::CacheTunables* x, uint64_t v) { x->set_migrate_batch_segments(static_cast<uint32_t>(v)); }},
        {"migrate-idle-ms",
         [](tmem::v1::CacheTunables* x, uint64_t v) { x->set_migrate_idle_ms(static_cast<int64_t>(v)); }},
        {"migrate-free-segments-low",
         [](tmem::v1::CacheTunables* x, uint64_t v) { x->set_migrate_free_segments_low(static_cast<uint32_t>(v)); }},
        {"migrate-max-age-ms",
         [](tmem::v1::CacheTunables* x, uint64_t v) { x->set_migrate_max_age_ms(static_cast<int64_t>(v)); }},
    };
    bool any = false;
    for (const auto& [name, set] : kTunables) {
      if (!f.Has(name)) continue;
      auto v = f.GetUint(name, 0);
      if (!v.ok()) return Usage(std::string(v.status().message()));
      if (*v > UINT32_MAX && std::string(name).find("segments") != std::string::npos) {
        return Usage(absl::StrCat("--", name, " is too large"));
      }
      set(t, *v);
      any = true;
    }
    if (!any) return Usage("cache --action=set needs at least one tunable flag");
  } else {
    return Usage("cache --action wants status, flush, migrate-now, drain or set");
  }
  tmem::v1::ExportControlResponse r;
  ::grpc::Status s;
  if (action == "drain") {
    // Returns when no dirty line remains, which takes as long as the backing store needs.
    ::grpc::ClientContext drain_ctx;
    if (!c.PrepareUnbounded(&drain_ctx)) {
      std::fprintf(stderr, "tmemctl: cannot reach tmemd at %s\n", c.server().c_str());
      return 1;
    }
    s = c.admin().ExportControl(&drain_ctx, req, &r);
    if (s.error_code() == ::grpc::StatusCode::DEADLINE_EXCEEDED && c.timeout_given()) {
      std::fprintf(stderr,
                   "tmemctl: drain of '%s' did not finish within --timeout-ms; dirty data remains "
                   "and migration goes on (see tmemctl cache --action=status)\n",
                   req.export_name().c_str());
      return 1;
    }
  } else {
    Call call(c);
    s = c.admin().ExportControl(&call.ctx, req, &r);
  }
  if (!s.ok()) return Failed("cache " + action, s, c.server());
  PrintCache(req.export_name(), r.cache());
  return 0;
}

int CmdBench(const Invocation& inv, const Flags& f) {
  BenchOptions o;
  o.servers = absl::StrSplit(inv.server, ',', absl::SkipEmpty());
  o.timeout_ms = inv.timeout_ms;
  o.tls = inv.tls;
  auto number = [&](const char* name, uint64_t def, uint64_t lo, uint64_t hi) -> absl::StatusOr<uint64_t> {
    auto v = f.GetSize(name, def);
    if (!v.ok()) return v.status();
    if (*v < lo || *v > hi) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, "=", *v, ": want ", lo, " to ", hi));
    }
    return *v;
  };
  auto threads = number("threads", 8, 1, 256);
  auto batch = number("batch", 32, 1, 4096);
  auto pages = number("pages", 100000, 1, uint64_t{1} << 32);
  auto seconds = number("seconds", 5, 1, 3600);
  auto page = number("page-size", 4096, 512, 65536);
  auto singles = number("singles", 2000, 0, 1000000);
  for (const auto* v : {&threads, &batch, &pages, &seconds, &page, &singles}) {
    if (!v->ok()) return Usage("bench: " + std::string(v->status().message()));
  }
  o.threads = static_cast<int>(*threads);
  o.batch = static_cast<int>(*batch);
  o.pages = *pages;
  o.seconds = static_cast<double>(*seconds);
  o.page_bytes = static_cast<uint32_t>(*page);
  o.singles = static_cast<int>(*singles);
  o.transport = f.Has("transport") ? f.Get("transport") : "auto";
  if (o.transport != "auto" && o.transport != "wire" && o.transport != "grpc") {
    return Usage("bench: --transport wants auto, wire or grpc");
  }
  if (o.pages < static_cast<uint64_t>(o.threads)) return Usage("bench: --pages must be at least --threads");
  return RunBench(o);
}

// One command: its usage line, its flags and its handler (`run` with a client, or `bench`,
// which makes its own connections).
struct Command {
  const char* usage;
  std::set<std::string> value_flags;
  std::set<std::string> bool_flags;
  int (*run)(Client&, const Flags&) = nullptr;
  int (*bench)(const Invocation&, const Flags&) = nullptr;
};

const std::map<std::string, Command>& Commands() {
  static const auto* c = new std::map<std::string, Command>{
      {"info", {"tmemctl info: the server's instance id, version and capacity", {}, {}, CmdInfo}},
      {"health",
       {"tmemctl health [--service=NAME]: asks the standard gRPC health service (grpc.health.v1) and prints "
        "SERVING or NOT_SERVING; exit 0 only when serving (an exec probe where gRPC probes are not available)",
        {"service"},
        {},
        CmdHealth}},
      {"pools", {"tmemctl pools: every pool with its kind and page size", {}, {}, CmdPools}},
      {"exports",
       {"tmemctl exports: every NBD export with its size, mode, open connections, backend and description, and "
        "where NBD clients connect",
        {},
        {},
        CmdExports}},
      {"cache",
       {"tmemctl cache --export=NAME [--action=status|flush|migrate-now|drain|set] [--barrier-deadline-us=N] "
        "[--migrate-batch-segments=N] [--migrate-idle-ms=N] [--migrate-free-segments-low=N] [--migrate-max-age-ms=N]: "
        "a cached export's "
        "writeback cache: its state (dirty bytes, segments, hits), or an action then its state; drain returns "
        "when no dirty line remains (however long that takes, unless --timeout-ms is given); set changes the tunables "
        "given",
        {"export", "action", "barrier-deadline-us", "migrate-batch-segments", "migrate-idle-ms",
         "migrate-free-segments-low", "migrate-max-age-ms"},
        {},
        CmdCache}},
      {"create-pool",
       {"tmemctl create-pool [--page-size=4096] [--shared-uuid=32 hex digits] [--tenant=NAME]: prints the pool id",
        {"page-size", "shared-uuid", "tenant"},
        {},
        CmdCreatePool}},
      {"destroy-pool",
       {"tmemctl destroy-pool --pool=N: frees the pool and all its pages", {"pool"}, {}, CmdDestroyPool}},
      {"stats", {"tmemctl stats --pool=N: the pool's counters", {"pool"}, {}, CmdStats}},
      {"put",
       {"tmemctl put --pool=N --object=KEY [--index=FIRST] [--file=PATH]: stores the file (default stdin) as "
        "consecutive pages from index FIRST; the last page is padded with zeros",
        {"pool", "object", "index", "file"},
        {},
        CmdPut}},
      {"get",
       {"tmemctl get --pool=N --object=KEY [--index=FIRST] [--count=1] [--file=PATH]: writes the pages that hit "
        "(default stdout) and reports hits and misses on stderr; a miss is written as zeros",
        {"pool", "object", "index", "count", "file"},
        {},
        CmdGet}},
      {"bench",
       {"tmemctl bench [--threads=8] [--batch=32] [--pages=100000] [--seconds=5] [--page-size=4096] "
        "[--singles=2000] [--transport=auto|wire|grpc]: puts pages into a new shared pool, gets random ones back, "
        "times single gets (--server may list several servers, comma-separated: the pool is sharded over them; "
        "pages travel on the page wire protocol where the servers offer it, unless --transport=grpc)",
        {"threads", "batch", "pages", "seconds", "page-size", "singles", "transport"},
        {},
        nullptr,
        CmdBench}},
      {"flush",
       {"tmemctl flush --pool=N [--object=KEY [--index=I]]: invalidates one page, one object or the whole pool",
        {"pool", "object", "index"},
        {},
        CmdFlush}},
  };
  return *c;
}

int Main(int argc, char** argv) {
  // Global flags come before the command.
  Invocation inv;
  int i = 1;
  for (; i < argc && std::strncmp(argv[i], "--", 2) == 0; ++i) {
    std::string a = argv[i];
    if (a == "--help") {
      std::printf(
          "usage: tmemctl [--server=HOST:PORT[,HOST:PORT...]] [--timeout-ms=5000] [--tls-ca=PEM --tls-cert=PEM "
          "--tls-key=PEM [--tls-server-name=NAME]] COMMAND [flags]\n");
      for (const auto& [name, c] : Commands()) std::printf("  %s\n", c.usage);
      return 0;
    }
    auto value = [&](const char* flag, std::string* out) {
      const std::string prefix = std::string(flag) + "=";
      if (a.rfind(prefix, 0) != 0) return false;
      *out = a.substr(prefix.size());
      return true;
    };
    if (value("--server", &inv.server) || value("--tls-ca", &inv.tls.ca) || value("--tls-cert", &inv.tls.cert) ||
        value("--tls-key", &inv.tls.key) || value("--tls-server-name", &inv.tls.server_name)) {
    } else if (a.rfind("--timeout-ms=", 0) == 0) {
      auto v = ParseSize(a.substr(13));
      if (!v.ok() || *v == 0) return Usage("--timeout-ms wants a positive number");
      inv.timeout_ms = static_cast<int64_t>(*v);
      inv.timeout_given = true;
    } else {
      return Usage("unknown global flag " + a);
    }
  }
  if (i >= argc) return Usage("no command");
  const std::string cmd = argv[i];
  auto it = Commands().find(cmd);
  if (it == Commands().end()) return Usage("unknown command '" + cmd + "'");
  if (i + 1 < argc && std::strcmp(argv[i + 1], "--help") == 0) {
    std::printf("%s\n", it->second.usage);
    return 0;
  }
  auto flags = Flags::Parse(argc, argv, i + 1, it->second.value_flags, it->second.bool_flags);
  if (!flags.ok()) return Usage(cmd + ": " + std::string(flags.status().message()));
  if (!flags->positional().empty()) return Usage(cmd + ": unexpected argument '" + flags->positional()[0] + "'");
  if (it->second.bench != nullptr) return it->second.bench(inv, *flags);
  absl::StatusOr<client::ChannelFactory> channels = client::ChannelFactory::Create(inv.tls);
  if (!channels.ok()) return Usage(std::string(channels.status().message()));
  Client client(*channels, inv.server, inv.timeout_ms, inv.timeout_given);
  return it->second.run(client, *flags);
}

}  // namespace

int Usage(const std::string& why) {
  std::fprintf(stderr, "tmemctl: %s\nusage: tmemctl [--server=HOST:PORT] [--timeout-ms=5000] COMMAND [flags]\n",
               why.c_str());
  for (const auto& [name, cmd] : Commands()) std::fprintf(stderr, "  %s\n", cmd.usage);
  return 2;
}

}  // namespace tmem::ctl

int main(int argc, char** argv) { return tmem::ctl::Main(argc, argv); }
