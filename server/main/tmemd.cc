// tmemd: the tmem daemon. Opens (creating and formatting when absent) the cache device, serves
// tmem.v1.PagePool, tmem.v1.Admin and grpc.health.v1 over gRPC and /metrics over HTTP, and on
// SIGTERM or SIGINT stops cleanly: in-flight calls get --shutdown-timeout-ms to finish, then every
// buffered page and index entry is written and the stop is marked clean (exit 0).
//
// Exit status: 0 clean stop, 1 failed to start or to stop cleanly, 2 bad command line or config.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netdb.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/flags.h"
#include "common/logging.h"
#include "common/version.h"
#include "server/backend/block_backend.h"
#include "server/blockcache/block_cache.h"
#include "server/grpc/admin_service.h"
#include "server/grpc/health_service.h"
#include "server/grpc/page_pool_service.h"
#include "server/io/file_device.h"
#include "server/log/segment_log.h"
#include "server/main/config.h"
#include "server/metrics/metrics.h"
#include "server/nbd/nbd_server.h"
#include "server/pool/pool_engine.h"

namespace tmem::daemon {
namespace {

// Checks that `address` (host:port) can be bound now, so that a taken port is reported with its
// cause before any state is touched. gRPC itself binds it right after.
absl::Status CheckBindable(const std::string& address) {
  const auto colon = address.rfind(':');
  std::string host = address.substr(0, colon), port = address.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) return absl::InvalidArgumentError(absl::StrCat("cannot resolve ", address, ": ", gai_strerror(rc)));
  absl::Status status;
  int fd = ::socket(res->ai_family, res->ai_socktype, res->ai_protocol);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (fd < 0 || ::bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
    status = absl::UnavailableError(absl::StrCat("cannot listen on ", address, ": ", std::strerror(errno)));
  }
  if (fd >= 0) ::close(fd);
  ::freeaddrinfo(res);
  return status;
}

// Opens the device, creating and formatting it when absent; refuses what it must not overwrite.
absl::StatusOr<std::unique_ptr<io::FileDevice>> OpenDevice(const Config& c) {
  std::error_code ec;
  const bool exists = std::filesystem::exists(c.device_path, ec);
  if (!exists) {
    if (c.device_size_bytes == 0) {
      return absl::NotFoundError(
          absl::StrCat("device ", c.device_path, " does not exist; give --device-size to create it"));
    }
    auto dev = io::FileDevice::Open({.path = c.device_path, .create_size_bytes = c.device_size_bytes});
    if (!dev.ok()) return dev.status();
    absl::Status s = log::FormatLog(dev->get(), {.segment_bytes = c.segment_bytes});
    if (!s.ok()) {
      std::filesystem::remove(c.device_path, ec);  // we created it; leave nothing half-made
      return s;
    }
    std::filesystem::remove_all(c.metadata_dir, ec);
    return dev;
  }
  auto dev = io::FileDevice::Open({.path = c.device_path});
  if (!dev.ok()) return dev.status();
  absl::StatusOr<log::LogGeometry> g = log::ReadLogGeometry(dev->get());
  std::string problem;
  if (!g.ok()) {
    problem = std::string(g.status().message());
  } else if (c.segment_bytes_set && g->segment_bytes != c.segment_bytes) {
    problem = absl::StrCat(c.device_path, " has ", g->segment_bytes, "-byte segments but ", c.segment_bytes,
                           " were asked for");
  }
  if (problem.empty() && !c.format) return dev;
  if (!c.format) {
    return absl::FailedPreconditionError(
        absl::StrCat(problem, "; start with --format to format it (destroys its contents)"));
  }
  TMEM_LOG(Warning) << "formatting " << c.device_path << " as asked by --format" << (problem.empty() ? "" : ": ")
                    << problem;
  absl::Status s = log::FormatLog(dev->get(), {.segment_bytes = c.segment_bytes, .force = true});
  if (!s.ok()) return s;
  std::filesystem::remove_all(c.metadata_dir, ec);
  return dev;
}

int Run(const Config& c) {
  if (c.log_level == "debug") SetMinLogLevel(LogLevel::kDebug);
  if (c.log_level == "warning") SetMinLogLevel(LogLevel::kWarning);
  if (c.log_level == "error") SetMinLogLevel(LogLevel::kError);

  // Signals are taken by sigwait below; block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  for (const std::string& a : c.listen) {
    if (absl::Status s = CheckBindable(a); !s.ok()) {
      TMEM_LOG(Error) << s.message();
      return 1;
    }
  }
  auto device = OpenDevice(c);
  if (!device.ok()) {
    TMEM_LOG(Error) << device.status().message();
    return 1;
  }
  pool::EngineOptions eo;
  eo.device = device->get();
  eo.metadata_dir = c.metadata_dir;
  eo.index_cache_entries = c.index_cache_entries;
  auto engine = pool::PoolEngine::Open(eo);
  if (!engine.ok()) {
    TMEM_LOG(Error) << engine.status().message();
    return 1;
  }
  pool::PoolEngine* e = engine->get();

  // NBD exports: every backend opens (or the start fails, naming it) before anything listens.
  std::unique_ptr<nbd::NbdServer> nbd_server;
  // Cached exports, for their metrics (owned by their exports).
  std::vector<std::pair<std::string, blockcache::BlockCache*>> caches;
  if (!c.exports.empty()) {
    std::vector<std::unique_ptr<nbd::Export>> exports;
    for (const Config::ExportConfig& x : c.exports) {
      auto opened = backend::OpenBackend(x.backend, x.read_only, x.size_bytes);
      if (!opened.ok()) {
        TMEM_LOG(Error) << "export " << x.name << ": " << opened.status().message();
        return 1;
      }
      if (!x.cache.device.empty()) {
        auto cache_dev = io::FileDevice::Open({.path = x.cache.device, .create_size_bytes = x.cache.size_bytes});
        if (!cache_dev.ok()) {
          TMEM_LOG(Error) << "export " << x.name << ": cache device: " << cache_dev.status().message();
          return 1;
        }
        blockcache::BlockCacheOptions bo = x.cache.options;
        bo.format = c.format;
        // Up to eight segment writes in flight: one at a time per flusher is not enough to
        // keep an SSD busy (sequential writes ran at 250 MB/s with two, 380 with eight).
        bo.log.write_buffer_count = 12;
        bo.log.flusher_threads = 8;
        auto cache = blockcache::BlockCache::OpenOwning(std::move(*cache_dev), std::move(*opened), bo);
        if (!cache.ok()) {
          TMEM_LOG(Error) << "export " << x.name << ": " << cache.status().message();
          return 1;
        }
        caches.push_back({x.name, cache->get()});
        opened = std::unique_ptr<backend::BlockBackend>(std::move(*cache));
      }
      auto ex = std::make_unique<nbd::Export>();
      ex->name = x.name;
      ex->description = x.description;
      ex->read_only = x.read_only;
      ex->backend = std::move(*opened);
      exports.push_back(std::move(ex));
    }
    nbd::NbdServerOptions no;
    no.listen = c.nbd_listen;
    no.unix_socket = c.nbd_unix_socket;
    no.max_connections = c.nbd_max_connections;
    no.max_requests_in_flight = c.nbd_max_requests_in_flight;
    no.max_bytes_in_flight = c.nbd_max_bytes_in_flight;
    no.threads_per_connection = c.nbd_threads_per_connection;
    no.gather_us = c.nbd_gather_us;
    no.shutdown_timeout_ms = c.shutdown_timeout_ms;
    auto started = nbd::NbdServer::Start(no, std::move(exports));
    if (!started.ok()) {
      TMEM_LOG(Error) << started.status().message();
      return 1;
    }
    nbd_server = std::move(*started);
    for (const auto& x : nbd_server->exports()) {
      TMEM_LOG(Info) << "NBD export " << x->name << ": " << x->backend->Describe() << ", " << x->backend->size()
                     << " bytes" << (x->read_only ? ", read-only" : "");
    }
  }
  nbd::NbdServer* nbd_ptr = nbd_server.get();

  std::unique_ptr<metrics::Metrics> metrics;
  if (!c.metrics_listen.empty()) {
    auto m = metrics::Metrics::Start(c.metrics_listen, [e, nbd_ptr, caches](StatsVisitor& v) {
      e->VisitStats(v);
      if (nbd_ptr != nullptr) nbd_ptr->VisitStats(v);
      for (const auto& [name, cache] : caches) cache->VisitStats(v, {{"export", name}});
    });
    if (!m.ok()) {
      TMEM_LOG(Error) << m.status().message();
      return 1;
    }
    metrics = std::move(*m);
  }
  grpc_service::PagePoolService pages(e, metrics ? metrics->latency() : nullptr);
  grpc_service::AdminService admin(e, nbd_ptr);
  grpc_service::HealthService health;
  ::grpc::ServerBuilder builder;
  std::vector<int> ports(c.listen.size(), 0);
  for (size_t i = 0; i < c.listen.size(); ++i) {
    builder.AddListeningPort(c.listen[i], ::grpc::InsecureServerCredentials(), &ports[i]);
  }
  builder.SetMaxReceiveMessageSize(grpc_service::kMaxMessageBytes);
  // Keep enough handler threads alive between calls: by default gRPC lets all but two exit
  // after each burst and starts new ones on the next, and that churn (thread creation, and each
  // new thread's first io_uring use) cost more CPU than the page reads themselves.
  builder.SetSyncServerOption(::grpc::ServerBuilder::SyncServerOption::MIN_POLLERS, 2);
  builder.SetSyncServerOption(::grpc::ServerBuilder::SyncServerOption::MAX_POLLERS, c.rpc_threads);
  builder.RegisterService(&pages);
  builder.RegisterService(&admin);
  builder.RegisterService(&health);
  std::unique_ptr<::grpc::Server> server = builder.BuildAndStart();
  for (size_t i = 0; i < ports.size(); ++i) {
    if (server == nullptr || ports[i] == 0) {
      TMEM_LOG(Error) << "cannot listen on " << c.listen[i];
      return 1;
    }
  }
  // The health service answers for the whole server ("") and for each service by name; all
  // turn NOT_SERVING when a stop begins.
  for (const char* name : {"", "tmem.v1.PagePool", "tmem.v1.Admin"}) health.SetServing(name, true);
  TMEM_LOG(Info) << "tmemd " << kVersion << " serving: instance " << e->instance_id() << ", device " << c.device_path
                 << ", gRPC on " << absl::StrJoin(c.listen, ",") << ", metrics on "
                 << (metrics ? absl::StrCat(c.metrics_listen.substr(0, c.metrics_listen.rfind(':')), ":",
                                            metrics->port(), "/metrics")
                             : std::string("(off)"))
                 << (nbd_ptr != nullptr ? absl::StrCat(", NBD on ",
                                                       absl::StrJoin(nbd_ptr->tcp_ports(), ",",
                                                                     [](std::string* out, int p) {
                                                                       absl::StrAppend(out, "port ", p);
                                                                     }),
                                                       c.nbd_unix_socket.empty() ? "" : " and " + c.nbd_unix_socket)
                                        : std::string());

  int sig = 0;
  sigwait(&signals, &sig);
  TMEM_LOG(Info) << "received " << strsignal(sig) << "; stopping (up to " << c.shutdown_timeout_ms
                 << " ms for calls in flight)";
  health.Shutdown();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(c.shutdown_timeout_ms));
  server->Wait();
  if (nbd_server != nullptr) nbd_server->Stop();
  metrics.reset();
  absl::Status closed = e->Close();
  if (!closed.ok()) {
    TMEM_LOG(Error) << "clean stop failed, the next start drops every page: " << closed.message();
    return 1;
  }
  TMEM_LOG(Info) << "stopped cleanly";
  return 0;
}

int Main(int argc, char** argv) {
  if (argc >= 2 && (std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0)) {
    std::printf("%s", HelpText().c_str());
    return 0;
  }
  if (argc == 2 && std::strcmp(argv[1], "--example-config") == 0) {
    std::printf("%s", ExampleConfig().c_str());
    return 0;
  }
  if (argc == 2 && std::strcmp(argv[1], "--settings-markdown") == 0) {
    std::printf("%s", SettingsMarkdown().c_str());
    return 0;
  }
  if (argc == 2 && std::strcmp(argv[1], "--version") == 0) {
    std::printf("tmemd %s (device format %u)\n", kVersion, log::kFormatVersion);
    return 0;
  }
  auto flags = Flags::Parse(argc, argv, 1, ValueFlags(), BoolFlags());
  if (!flags.ok()) {
    std::fprintf(stderr, "tmemd: %s (tmemd --help lists the flags)\n", std::string(flags.status().message()).c_str());
    return 2;
  }
  if (!flags->positional().empty()) {
    std::fprintf(stderr, "tmemd: unexpected argument '%s' (tmemd --help lists the flags)\n",
                 flags->positional()[0].c_str());
    return 2;
  }
  Config base;
  if (flags->Has("config")) {
    auto loaded = LoadConfigFile(flags->Get("config"));
    if (!loaded.ok()) {
      std::fprintf(stderr, "tmemd: %s\n", std::string(loaded.status().message()).c_str());
      return 2;
    }
    base = *loaded;
  }
  auto config = ApplyFlags(*flags, base);
  if (!config.ok()) {
    std::fprintf(stderr, "tmemd: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  return Run(*config);
}

}  // namespace
}  // namespace tmem::daemon

int main(int argc, char** argv) {
  int rc = tmem::daemon::Main(argc, argv);
  // Everything tmemd owns is closed by now (a clean stop has persisted the pages and the index).
  // Skip the process-wide static teardown of gRPC and the HTTP server, which took ~1.7 s.
  std::fflush(nullptr);
  _exit(rc);
}
