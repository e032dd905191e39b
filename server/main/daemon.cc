// The tmem daemon (tmemd's main is tmemd.cc). Opens (creating and formatting when absent) the cache device, serves
// tmem.v1.PagePool, tmem.v1.Admin and grpc.health.v1 over gRPC and /metrics over HTTP, and on
// SIGTERM or SIGINT stops cleanly: in-flight calls get --shutdown-timeout-ms to finish, then every
// buffered page and index entry is written and the stop is marked clean (exit 0).
//
// Exit status: 0 clean stop, 1 failed to start or to stop cleanly, 2 bad command line or config.
#include "server/main/daemon.h"

#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <netdb.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/flags.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/version.h"
#include "server/backend/block_backend.h"
#include "server/blockcache/block_cache.h"
#include "server/grpc/admin_service.h"
#include "server/grpc/health_monitor.h"
#include "server/grpc/health_service.h"
#include "server/grpc/page_pool_service.h"
#include "server/io/device_lock.h"
#include "server/io/file_device.h"
#include "server/io/monitored_device.h"
#include "server/log/segment_log.h"
#include "server/main/config.h"
#include "server/metrics/metrics.h"
#include "server/nbd/nbd_server.h"
#include "server/pool/pool_engine.h"
#include "server/trust/audit.h"
#include "server/trust/tenants.h"
#include "server/trust/tls_context.h"
#include "server/trust/tls_options.h"
#include "server/wire/wire_server.h"

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

// The safe defaults (DESIGN.md "Trust"): a plaintext listener off loopback needs
// insecure_plaintext. Returns how many such listeners the operator allowed.
absl::StatusOr<int> CheckListeners(const Config& c) {
  int insecure = 0;
  auto plaintext = [&](const char* what, const std::string& a) -> absl::Status {
    if (trust::IsLocalAddress(a)) return absl::OkStatus();
    if (absl::Status s = trust::CheckPlaintextListener(what, a, c.insecure_plaintext); !s.ok()) return s;
    ++insecure;
    TMEM_LOG(Warning) << "insecure_plaintext: " << what << " " << a
                      << " serves plaintext off loopback; any peer that reaches it acts as tenant '" << c.local_tenant
                      << "'";
    return absl::OkStatus();
  };
  if (!c.tls.x509()) {
    for (const std::string& a : c.listen) TMEM_RETURN_IF_ERROR(plaintext("gRPC listener", a));
  }
  for (const std::string& a : c.plaintext_listen) TMEM_RETURN_IF_ERROR(plaintext("gRPC plaintext_listen", a));
  if (!c.tls.x509()) {
    for (const std::string& a : c.wire_listen) TMEM_RETURN_IF_ERROR(plaintext("wire listener", a));
  }
  for (const std::string& a : c.wire_plaintext_listen) TMEM_RETURN_IF_ERROR(plaintext("wire.plaintext_listen", a));
  if (!c.exports.empty() && !c.tls.any()) {
    for (const std::string& a : c.nbd_listen) {
      if (!a.empty()) TMEM_RETURN_IF_ERROR(plaintext("NBD listener", a));
    }
  }
  return insecure;
}

// gRPC's TLS credentials: the server certificate is watched by gRPC (a changed file is loaded
// within `refresh_s`; a bad one is refused and the old kept); every client must show a
// certificate, which `verifier` checks against tls.ca (the CA that `tls` holds and SIGHUP reloads).
std::shared_ptr<::grpc::ServerCredentials> GrpcTlsCredentials(const trust::TlsOptions& t, unsigned refresh_s,
                                                              const trust::TlsContext* tls, trust::Audit* audit) {
  auto provider =
      std::make_shared<::grpc::experimental::FileWatcherCertificateProvider>(t.key, t.cert, t.ca, refresh_s);
  ::grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_root_certs();  // the CA names the server sends in its certificate request
  options.watch_identity_key_cert_pairs();
  // Taken in unjudged, so that every refusal reaches the verifier (and is counted); a missing
  // certificate is the verifier's refusal too.
  options.set_cert_request_type(GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_BUT_DONT_VERIFY);
  options.set_certificate_verifier(
      ::grpc::experimental::ExternalCertificateVerifier::Create<grpc_service::ClientCertificateVerifier>(tls, audit));
  return ::grpc::experimental::TlsServerCredentials(options);
}

int Run(const Config& c, const DaemonHooks& hooks) {
  if (c.log_level == "debug") SetMinLogLevel(LogLevel::kDebug);
  if (c.log_level == "warning") SetMinLogLevel(LogLevel::kWarning);
  if (c.log_level == "error") SetMinLogLevel(LogLevel::kError);
  TMEM_LOG(Info) << "tmemd " << kVersion << " starting (pid " << ::getpid() << "), device " << c.device_path;

  // Signals are taken by sigwait below; block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  if (absl::Status s = trust::CheckTlsOptions(c.tls, /*files=*/true); !s.ok()) {
    TMEM_LOG(Error) << s.message();
    return 2;
  }
  absl::StatusOr<int> insecure = CheckListeners(c);
  if (!insecure.ok()) {
    TMEM_LOG(Error) << insecure.status().message();
    return 2;
  }
  absl::StatusOr<trust::TenantTable> tenants = trust::TenantTable::Build(c.tenants, c.local_tenant);
  if (!tenants.ok()) {
    TMEM_LOG(Error) << tenants.status().message();
    return 2;
  }
  trust::Audit audit;
  audit.set_insecure_listeners(static_cast<uint64_t>(*insecure));
  // The TLS credentials load (and the key is checked against its certificate) before anything
  // else starts; NBD uses them, gRPC loads the same files itself.
  std::unique_ptr<trust::TlsContext> tls;
  if (c.tls.any()) {
    auto created = trust::TlsContext::Create(c.tls);
    if (!created.ok()) {
      TMEM_LOG(Error) << created.status().message();
      return 2;
    }
    tls = std::move(*created);
  }
  std::vector<std::string> grpc_listeners = c.listen;
  grpc_listeners.insert(grpc_listeners.end(), c.plaintext_listen.begin(), c.plaintext_listen.end());
  for (const std::string& a : grpc_listeners) {
    if (absl::Status s = CheckBindable(a); !s.ok()) {
      TMEM_LOG(Error) << s.message();
      return 1;
    }
  }
  // The device is ours alone: locked before anything reads or formats it (a device created
  // here is locked right after), then the metadata directory.
  std::vector<io::DeviceLock> locks;
  auto lock = [&locks](const std::string& path, const char* what) -> bool {
    absl::StatusOr<io::DeviceLock> l = io::DeviceLock::Acquire(path, what);
    if (!l.ok()) {
      TMEM_LOG(Error) << l.status().message();
      return false;
    }
    locks.push_back(std::move(*l));
    return true;
  };
  std::error_code ec;
  const bool device_existed = std::filesystem::exists(c.device_path, ec);
  if (device_existed && !lock(c.device_path, "device")) return 1;
  auto device = OpenDevice(c);
  if (!device.ok()) {
    TMEM_LOG(Error) << device.status().message();
    return 1;
  }
  if (!device_existed && !lock(c.device_path, "device")) return 1;
  std::filesystem::create_directories(c.metadata_dir, ec);
  if (!lock(c.metadata_dir, "metadata directory")) return 1;
  // The log runs on the page device (or a test build's wrapper of it), watched for health.
  std::unique_ptr<io::BlockDevice> wrapped;
  if (hooks.wrap_page_device) wrapped = hooks.wrap_page_device(device->get());
  io::MonitoredDevice page_device(wrapped != nullptr ? wrapped.get() : device->get());
  pool::EngineOptions eo;
  eo.device = &page_device;
  eo.put_wait_ms = c.pool_put_wait_ms;
  eo.v1_private_owner = c.local_tenant;
  eo.quota_of = [&tenants](std::string_view owner) {
    pool::EngineOptions::OwnerQuota q;
    // Shared pools an admin made for a tenant of no entry (e.g. nodes of a plaintext relay) have
    // no quota.
    if (const trust::TenantConfig* t = tenants->Find(absl::string_view(owner.data(), owner.size()))) {
      q.max_pools = t->max_pools;
      q.log_share_percent = t->log_share_percent;
    }
    return q;
  };
  eo.metadata_dir = c.metadata_dir;
  eo.index_cache_entries = c.index_cache_entries;
  eo.index_write_behind = c.index_write_behind;
  eo.index_write_back = c.index_write_back;
  eo.index_write_buffer_bytes = c.index_write_buffer_bytes;
  eo.log.write_buffer_count = static_cast<uint32_t>(c.pool_write_buffers);
  eo.log.flusher_threads = static_cast<uint32_t>(c.pool_flushers);
  eo.ram_cache_bytes = c.ram_cache_bytes;
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
  // Their cache devices, for health (owned by their caches).
  std::vector<const io::MonitoredDevice*> cache_devices;
  if (!c.exports.empty()) {
    std::vector<std::unique_ptr<nbd::Export>> exports;
    for (const Config::ExportConfig& x : c.exports) {
      auto opened = backend::OpenBackend(
          x.backend, x.read_only, x.size_bytes,
          {.request_timeout_ms = x.backend_request_timeout_ms, .fence_timeout_ms = x.backend_fence_timeout_ms});
      if (!opened.ok()) {
        TMEM_LOG(Error) << "export " << x.name << ": " << opened.status().message();
        return 1;
      }
      if (!x.cache.device.empty()) {
        const bool cache_existed = std::filesystem::exists(x.cache.device, ec);
        if (cache_existed && !lock(x.cache.device, "cache device")) return 1;
        auto cache_dev = io::FileDevice::Open({.path = x.cache.device, .create_size_bytes = x.cache.size_bytes});
        if (!cache_dev.ok()) {
          TMEM_LOG(Error) << "export " << x.name << ": cache device: " << cache_dev.status().message();
          return 1;
        }
        if (!cache_existed && !lock(x.cache.device, "cache device")) return 1;
        blockcache::BlockCacheOptions bo = x.cache.options;
        // --format formats only the page device; an export's cache only when named.
        bo.format = c.format_export_caches.count(x.name) > 0;
        // Up to eight segment writes in flight: one at a time per flusher is not enough to
        // keep an SSD busy (sequential writes ran at 250 MB/s with two, 380 with eight).
        bo.log.write_buffer_count = 12;
        bo.log.flusher_threads = 8;
        auto watched = std::make_unique<io::MonitoredDevice>(std::move(*cache_dev));
        const io::MonitoredDevice* watched_ptr = watched.get();
        auto cache = blockcache::BlockCache::OpenOwning(std::move(watched), std::move(*opened), bo);
        if (!cache.ok()) {
          TMEM_LOG(Error) << "export " << x.name << ": " << cache.status().message();
          return 1;
        }
        caches.push_back({x.name, cache->get()});
        cache_devices.push_back(watched_ptr);
        opened = std::unique_ptr<backend::BlockBackend>(std::move(*cache));
      }
      auto ex = std::make_unique<nbd::Export>();
      ex->name = x.name;
      ex->description = x.description;
      ex->read_only = x.read_only;
      ex->tls_required = x.tls == "require";
      ex->allow = x.allow;
      ex->backend = std::move(*opened);
      exports.push_back(std::move(ex));
    }
    nbd::NbdServerOptions no;
    no.listen = c.nbd_listen;
    no.unix_socket = c.nbd_unix_socket;
    no.max_connections = c.nbd_max_connections;
    no.max_requests_in_flight = c.nbd_max_requests_in_flight;
    no.max_bytes_in_flight = c.nbd_max_bytes_in_flight;
    no.max_total_bytes_in_flight = c.nbd_max_total_bytes_in_flight;
    no.threads_per_connection = c.nbd_threads_per_connection;
    no.gather_us = c.nbd_gather_us;
    no.shutdown_timeout_ms = c.shutdown_timeout_ms;
    no.tls = tls.get();
    no.audit = &audit;
    no.tenants = *tenants;
    no.insecure_plaintext = c.insecure_plaintext;
    no.handshake_timeout_ms = c.tls.handshake_timeout_ms;
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

  // The page wire protocol (docs/wire.md): TLS on wire.listen when tls.cert is set, plaintext on
  // wire.plaintext_listen (and on wire.listen without TLS).
  std::unique_ptr<wire::WireServer> wire_server;
  uint32_t wire_tls_port = 0, wire_plaintext_port = 0;
  if (!c.wire_listen.empty() || !c.wire_plaintext_listen.empty()) {
    wire::WireServerOptions wo;
    for (const std::string& a : c.wire_listen) wo.listeners.push_back({a, c.tls.x509()});
    for (const std::string& a : c.wire_plaintext_listen) wo.listeners.push_back({a, false});
    wo.threads = c.wire_threads;
    wo.max_connections = c.wire_max_connections;
    wo.max_connections_per_tenant = c.wire_max_connections_per_tenant;
    wo.handshake_timeout_ms = c.wire_handshake_timeout_ms;
    wo.idle_timeout_ms = c.wire_idle_timeout_ms;
    wo.limits.max_pending_reply_bytes = c.wire_max_pending_reply_bytes;
    wo.limits.max_in_flight = static_cast<uint32_t>(c.wire_max_in_flight);
    wo.engine = e;
    wo.tenants = &*tenants;
    wo.tls = tls.get();
    wo.audit = &audit;
    auto started = wire::WireServer::Start(wo);
    if (!started.ok()) {
      TMEM_LOG(Error) << started.status().message();
      return 1;
    }
    wire_server = std::move(*started);
    for (size_t i = 0; i < wo.listeners.size(); ++i) {
      uint32_t& port = wo.listeners[i].tls ? wire_tls_port : wire_plaintext_port;
      if (port == 0) port = static_cast<uint32_t>(wire_server->ports()[i]);
    }
  }
  wire::WireServer* wire_ptr = wire_server.get();

  // Health: each service serves while its probes find nothing wrong (health_monitor.h).
  grpc_service::HealthService health;
  const grpc_service::HealthLimits limits{.interval_ms = c.health_check_interval_ms,
                                          .io_deadline_ms = c.health_io_deadline_ms,
                                          .io_error_threshold = c.health_io_error_threshold,
                                          .window_ms = c.health_window_ms};
  grpc_service::HealthMonitor monitor(&health, limits);
  monitor.AddService("tmem.v1.PagePool", grpc_service::PagePoolProbes(e, &page_device, limits));
  for (size_t i = 0; i < caches.size(); ++i) {
    monitor.AddService(absl::StrCat("nbd:", caches[i].first),
                       grpc_service::CachedExportProbes(caches[i].first, caches[i].second, cache_devices[i], limits));
  }
  if (nbd_ptr != nullptr) {
    for (const auto& x : nbd_ptr->exports()) {
      const bool cached = std::any_of(caches.begin(), caches.end(), [&](const auto& c) { return c.first == x->name; });
      if (cached) continue;
      monitor.AddService(absl::StrCat("nbd:", x->name),
                         grpc_service::PlainExportProbes(x->name, x->backend.get(), limits));
    }
  }
  monitor.CheckNow();
  monitor.Start();

  std::unique_ptr<metrics::Metrics> metrics;
  if (!c.metrics_listen.empty()) {
    auto m = metrics::Metrics::Start(c.metrics_listen, [e, nbd_ptr, wire_ptr, &audit, &monitor](StatsVisitor& v) {
      e->VisitStats(v);
      monitor.VisitStats(v);
      audit.VisitStats(v);
      if (nbd_ptr != nullptr) nbd_ptr->VisitStats(v);
      if (wire_ptr != nullptr) wire_ptr->VisitStats(v);
      // Every export's backend: a cache (with its store's), a remote store's fence.
      if (nbd_ptr != nullptr) {
        for (const auto& x : nbd_ptr->exports()) x->backend->VisitStats(v, {{"export", x->name}});
      }
    });
    if (!m.ok()) {
      TMEM_LOG(Error) << m.status().message();
      return 1;
    }
    metrics = std::move(*m);
  }
  const grpc_service::CallerResolver callers(*tenants, c.tls.tenant_from, &audit, c.grpc_max_calls_per_tenant);
  grpc_service::PagePoolService pages(e, metrics ? metrics->latency() : nullptr, &callers,
                                      c.grpc_max_sessions_per_tenant);
  grpc_service::AdminService admin(e, nbd_ptr, &callers, &health);
  if (wire_server != nullptr) admin.set_wire_ports(wire_tls_port, wire_plaintext_port);
  ::grpc::ServerBuilder builder;
  std::vector<int> ports(grpc_listeners.size(), 0);
  std::shared_ptr<::grpc::ServerCredentials> tls_creds;
  if (c.tls.x509())
    tls_creds = GrpcTlsCredentials(c.tls, static_cast<unsigned>(c.tls.reload_interval_s), tls.get(), &audit);
  for (size_t i = 0; i < grpc_listeners.size(); ++i) {
    const bool tls = tls_creds != nullptr && i < c.listen.size();
    builder.AddListeningPort(grpc_listeners[i], tls ? tls_creds : ::grpc::InsecureServerCredentials(), &ports[i]);
  }
  builder.SetMaxReceiveMessageSize(grpc_service::kMaxMessageBytes);
  // Limits at the edge: calls per connection, idle connections closed, dead peers found.
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, c.grpc_max_streams_per_connection);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS,
                             static_cast<int>(std::min<int64_t>(c.grpc_idle_timeout_ms, INT32_MAX)));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                             static_cast<int>(std::min<int64_t>(c.grpc_keepalive_ms, INT32_MAX)));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20000);
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
      TMEM_LOG(Error) << "cannot listen on " << grpc_listeners[i];
      return 1;
    }
  }
  // The health service answers for the whole server ("": every service serves), for the page
  // pools and each cached export by what the monitor finds, and for tmem.v1.Admin, which serves
  // while the process runs (the liveness probe's); all turn NOT_SERVING when a stop begins.
  health.SetServing("tmem.v1.Admin", true);
  TMEM_LOG(Info)
      << "tmemd " << kVersion << " serving: instance " << e->instance_id() << ", device " << c.device_path
      << ", gRPC on " << absl::StrJoin(c.listen, ",") << (c.tls.x509() ? " (TLS)" : " (plaintext)")
      << (c.plaintext_listen.empty() ? "" : " and " + absl::StrJoin(c.plaintext_listen, ",") + " (plaintext)")
      << ", metrics on "
      << (metrics
              ? absl::StrCat(c.metrics_listen.substr(0, c.metrics_listen.rfind(':')), ":", metrics->port(), "/metrics")
              : std::string("(off)"))
      << (wire_ptr != nullptr
              ? absl::StrCat(", page wire protocol on port ", wire_tls_port != 0 ? wire_tls_port : wire_plaintext_port,
                             wire_tls_port != 0 ? " (TLS)" : " (plaintext)",
                             wire_tls_port != 0 && wire_plaintext_port != 0
                                 ? absl::StrCat(" and ", wire_plaintext_port, " (plaintext)")
                                 : std::string())
              : std::string())
      << (nbd_ptr != nullptr
              ? absl::StrCat(", NBD on ",
                             absl::StrJoin(nbd_ptr->tcp_ports(), ",",
                                           [](std::string* out, int p) { absl::StrAppend(out, "port ", p); }),
                             c.nbd_unix_socket.empty() ? "" : " and " + c.nbd_unix_socket)
              : std::string());

  // Signals: SIGHUP (and a changed certificate file) reloads the TLS credentials; SIGTERM and
  // SIGINT stop.
  int sig = 0;
  while (true) {
    timespec wait{static_cast<time_t>(c.tls.reload_interval_s), 0};
    sig = sigtimedwait(&signals, nullptr, &wait);
    if (sig == SIGTERM || sig == SIGINT) break;
    if (tls == nullptr) continue;
    if (sig != SIGHUP && !tls->FilesChanged()) continue;
    if (absl::Status s = tls->Reload(); s.ok()) {
      TMEM_LOG(Info) << "TLS credentials reloaded (" << (sig == SIGHUP ? "SIGHUP" : "a file changed")
                     << "): NBD's and the CA for gRPC clients; gRPC loads its server certificate itself within "
                     << c.tls.reload_interval_s << " s";
    } else {
      TMEM_LOG(Error) << "TLS reload refused, the credentials in use stay: " << s.message();
    }
  }
  TMEM_LOG(Info) << "received " << strsignal(sig) << "; stopping (up to " << c.shutdown_timeout_ms
                 << " ms for calls in flight)";
  // The whole stop is bounded: a hung device must not hold the process (the supervisor would
  // kill it anyway, later). Past the bound, exit without a clean stop: the next start drops
  // every page, which is the truth about pages whose writes never finished.
  std::thread([timeout_ms = c.stop_timeout_ms] {
    std::this_thread::sleep_for(std::chrono::milliseconds(timeout_ms));
    TMEM_LOG(Error) << "the stop did not finish within stop_timeout_ms (" << timeout_ms
                    << " ms; a hung device?): exiting without a clean stop, the next start drops every page";
    std::fflush(nullptr);
    _exit(1);
  }).detach();
  health.Shutdown();
  monitor.Stop();
  // Session streams never end by themselves: cancelled now, so that the stop does not wait out
  // shutdown_timeout_ms for them (their clients reconnect to the next instance).
  pages.CancelSessions();
  const auto stop_began = std::chrono::steady_clock::now();
  const auto ms_since = [](std::chrono::steady_clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t).count();
  };
  // gRPC calls and NBD requests in flight get the same shutdown_timeout_ms, side by side.
  std::thread nbd_stop([&nbd_server, &wire_server] {
    if (wire_server != nullptr) wire_server->Stop();
    if (nbd_server != nullptr) nbd_server->Stop();
  });
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(c.shutdown_timeout_ms));
  server->Wait();
  nbd_stop.join();
  const int64_t calls_ms = ms_since(stop_began);
  metrics.reset();
  const auto close_began = std::chrono::steady_clock::now();
  absl::Status closed = e->Close();
  if (!closed.ok()) {
    TMEM_LOG(Error) << "clean stop failed, the next start drops every page: " << closed.message();
    return 1;
  }
  TMEM_LOG(Info) << "stopped cleanly in " << ms_since(stop_began) << " ms (calls and requests in flight " << calls_ms
                 << " ms, pages and index written " << ms_since(close_began) << " ms)";
  return 0;
}

}  // namespace

int DaemonMain(int argc, char** argv, const DaemonHooks& hooks) {
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
  return Run(*config, hooks);
}

}  // namespace tmem::daemon
