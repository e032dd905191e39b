// tmemd's settings tables: every config key and flag with its default, range and help
// (common/settings.h). The loader, the flags, --help, the example config and docs/settings.md
// read them (config.cc).
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "server/blockcache/cache_settings.h"
#include "server/log/log_format.h"
#include "server/main/config.h"

namespace tmem::daemon {
namespace {

using settings::Table;

constexpr const char* kCacheFlagPrefix = "export-cache-";

absl::Status CheckLevel(const std::string& level) {
  static const std::set<std::string> kLevels = {"debug", "info", "warning", "error"};
  if (!kLevels.count(level))
    return absl::InvalidArgumentError(absl::StrCat("'", level, "' is not one of debug, info, warning, error"));
  return absl::OkStatus();
}

Table<Config>* BuildConfigSettings() {
  auto* t = new Table<Config>;
  t->String("device.path", "device", &Config::device_path,
            "The page store: a file (created with device.size when absent) or a block device.",
            "/var/lib/tmem/cache.img")
      .Size("device.size", "device-size", &Config::device_size_bytes, 0, uint64_t{1} << 50,
            "Size of the file to create when device.path does not exist (0: it must exist).", "100G")
      .SizeFn(
          "device.segment_size", "segment-size", log::kMinSegmentBytes, log::kMaxSegmentBytes,
          "Segment size when formatting; an existing device must match when given.",
          [](const Config& c) { return uint64_t{c.segment_bytes}; },
          [](Config& c, uint64_t v) {
            c.segment_bytes = static_cast<uint32_t>(v);
            c.segment_bytes_set = true;
          })
      .String("metadata_dir", "metadata-dir", &Config::metadata_dir,
              "The RocksDB page index (default: the device path + .index).", "/var/lib/tmem/index")
      .List("listen", "listen", &Config::listen, "gRPC listeners (tmem.v1.PagePool, tmem.v1.Admin, grpc.health.v1).",
            "0.0.0.0:7070")
      .String("metrics_listen", "metrics-listen", &Config::metrics_listen,
              "Prometheus /metrics listener; empty turns it off.", "0.0.0.0:9464")
      .String("log_level", "log-level", &Config::log_level, "debug, info, warning or error.", "", CheckLevel)
      .Int("shutdown_timeout_ms", "shutdown-timeout-ms", &Config::shutdown_timeout_ms, 1, 3'600'000,
           "Time calls in flight get on SIGTERM before the clean stop.")
      .Int("stop_timeout_ms", "stop-timeout-ms", &Config::stop_timeout_ms, 1, 3'600'000,
           "The whole stop on SIGTERM (calls in flight, then writing buffered pages and the index) must end "
           "within this; past it (a hung device) tmemd exits 1 without a clean stop, and the next start drops "
           "every page. Keep it above shutdown_timeout_ms and below the supervisor's grace period.")
      .Int("pool.write_buffers", "pool-write-buffers", &Config::pool_write_buffers, 2, 256,
           "RAM write buffers of the page log, one segment each: one takes appends while the others are written. "
           "Puts wait for room (tmem_put_room_waits_total) when every one is in flight, so the buffers together "
           "carry the puts through a slow device write (16 x 1 MiB: 4096 pages, 25 ms of puts at 160k pages/s).")
      .Int("pool.flushers", "pool-flushers", &Config::pool_flushers, 1, 64,
           "Threads writing the page log's full buffers; each keeps one segment write in flight.")
      .Int("pool.put_wait_ms", "put-wait-ms", &Config::pool_put_wait_ms, 0, 60'000,
           "How long a put waits for room in the page log (no lock held) before the page is dropped and "
           "counted in tmem_puts_dropped_no_room_total.")
      .Int("health.check_interval_ms", "health-check-interval-ms", &Config::health_check_interval_ms, 10, 60'000,
           "How often each service's health is decided (grpc.health.v1, tmemctl info, tmem_service_serving).")
      .Int("health.io_deadline_ms", "health-io-deadline-ms", &Config::health_io_deadline_ms, 1, 3'600'000,
           "A device I/O in flight this long is hung: its service turns NOT_SERVING until it completes.")
      .Int("health.io_error_threshold", "health-io-error-threshold", &Config::health_io_error_threshold, 1, 1'000'000,
           "This many device I/O errors within health.window_ms turn the service NOT_SERVING.")
      .Int("health.window_ms", "health-window-ms", &Config::health_window_ms, 100, 3'600'000,
           "Errors and dropped puts count over this window; a service serves again once a whole window "
           "passed without them.")
      .Int("rpc_threads", "rpc-threads", &Config::rpc_threads, 1, 1024,
           "gRPC handler threads kept alive between bursts of calls.")
      .Int("grpc.max_streams_per_connection", "grpc-max-streams-per-connection",
           &Config::grpc_max_streams_per_connection, 1, 65536, "Calls in flight at once on one gRPC connection.")
      .Int("grpc.max_sessions_per_tenant", "grpc-max-sessions-per-tenant", &Config::grpc_max_sessions_per_tenant, 1,
           65536, "Session streams one tenant may hold open at once (more are RESOURCE_EXHAUSTED).")
      .Int("grpc.max_calls_per_tenant", "grpc-max-calls-per-tenant", &Config::grpc_max_calls_per_tenant, 1, 65536,
           "Unary calls of one tenant running at once (more are RESOURCE_EXHAUSTED), so that one tenant cannot "
           "take every handler thread.")
      .Int("grpc.idle_timeout_ms", "grpc-idle-timeout-ms", &Config::grpc_idle_timeout_ms, 1000, int64_t{1} << 40,
           "A gRPC connection without calls for this long is closed.")
      .Int("grpc.keepalive_ms", "grpc-keepalive-ms", &Config::grpc_keepalive_ms, 1000, int64_t{1} << 40,
           "Idle gRPC connections are pinged this often; one that does not answer within 20 s is closed.")
      .Include<trust::TlsOptions>(
          "tls.", "", [](Config& c) -> trust::TlsOptions& { return c.tls; }, trust::TlsSettings())
      .List("plaintext_listen", "plaintext-listen", &Config::plaintext_listen,
            "Plaintext gRPC listeners beside the TLS ones (loopback or unix: only, unless insecure_plaintext): "
            "for local tools and probes. Their callers are the local tenant.",
            "127.0.0.1:7071")
      .Bool("insecure_plaintext", "insecure-plaintext", &Config::insecure_plaintext,
            "Allow plaintext gRPC and NBD listeners on non-loopback addresses. Any peer that reaches them acts as "
            "the local tenant: logged at every start and exported as tmem_insecure_plaintext_listeners.")
      .String("local_tenant", "local-tenant", &Config::local_tenant,
              "The tenant of plaintext (loopback and unix socket) peers; it has the pages and admin roles unless "
              "tenants lists it.")
      .Int("index_cache_entries", "index-cache-entries", &Config::index_cache_entries, 0, int64_t{1} << 32,
           "Page index entries kept in RAM (about 80 bytes each; 0 turns the cache off).")
      .Size("index_write_buffer", "index-write-buffer", &Config::index_write_buffer_bytes, 1 << 20, uint64_t{1} << 30,
            "RocksDB memtable size of the page index (up to three are held: count 3x this in tmemd's memory). "
            "Larger ones flush and compact less often.")
      .Int("index_write_behind", "index-write-behind", &Config::index_write_behind, 0, int64_t{1} << 24,
           "Page index writes accepted ahead of RocksDB and applied in batches (write-behind; readers see them at "
           "once; tmem_index_pending_writes). A put that finds this many waiting applies them itself. 0: every "
           "index write reaches RocksDB before the put returns.")
      .Bool("index_write_back", "index-write-back", &Config::index_write_back,
            "A put's index entry stays only in the RAM index cache (dirty; tmem_index_cache_dirty_entries) and "
            "reaches RocksDB when the cache drops it or at a clean stop: a page put again while cached costs no "
            "RocksDB write. Needs index_cache_entries and index_write_behind; false: every put's entry is written "
            "behind to RocksDB.")
      .Size("ram_cache", "ram-cache", &Config::ram_cache_bytes, 0, uint64_t{1} << 40,
            "The DRAM tier: hot pages kept in memory beside the log and served without a device read "
            "(write-through: every put is also written to the log; tmem_ram_tier_*). 0 turns it off; it needs "
            "index_cache_entries. Count it in the memory tmemd may use.")
      .List("wire.listen", "wire-listen", &Config::wire_listen,
            "Page wire protocol listeners (docs/wire.md): TLS from the first byte when tls.cert is set; plaintext "
            "only on loopback otherwise (unless insecure_plaintext). None when empty. Port 0 takes a free port; "
            "clients learn the ports from ServerInfo either way.",
            "0.0.0.0:7072")
      .List("wire.plaintext_listen", "wire-plaintext-listen", &Config::wire_plaintext_listen,
            "Plaintext page wire protocol listeners beside the TLS ones (loopback only, unless insecure_plaintext); "
            "their peers are the local tenant.",
            "127.0.0.1:7073")
      .Int("wire.threads", "wire-threads", &Config::wire_threads, 0, 1024,
           "Page wire protocol event loops (each owns its connections; 0: one per core).")
      .Int("wire.max_connections", "wire-max-connections", &Config::wire_max_connections, 1, 1 << 20,
           "More page wire protocol connections are accepted and closed at once.")
      .Int("wire.max_connections_per_tenant", "wire-max-connections-per-tenant",
           &Config::wire_max_connections_per_tenant, 1, 1 << 20,
           "Wire connections one tenant may hold at once (more are refused at HELLO with RESOURCE_EXHAUSTED).")
      .Int("wire.handshake_timeout_ms", "wire-handshake-timeout-ms", &Config::wire_handshake_timeout_ms, 100, 3'600'000,
           "A wire connection that has not finished its TLS handshake and HELLO within this is closed.")
      .Int("wire.idle_timeout_ms", "wire-idle-timeout-ms", &Config::wire_idle_timeout_ms, 1000, int64_t{1} << 40,
           "A wire connection with nothing in flight for this long is closed.")
      .Size("wire.max_pending_reply_bytes", "wire-max-pending-reply-bytes", &Config::wire_max_pending_reply_bytes,
            64 << 10, uint64_t{1} << 32,
            "Replies waiting to be sent on one wire connection before tmemd stops reading its requests (a client "
            "that does not read its replies holds at most this plus one request).")
      .Int("wire.max_in_flight", "wire-max-in-flight", &Config::wire_max_in_flight, 1, 65536,
           "Requests a wire client is told to keep unanswered at most (announced in the HELLO reply).")
      .List("nbd.listen", "nbd-listen", &Config::nbd_listen, "NBD TCP listeners (none when empty).")
      .String("nbd.unix_socket", "nbd-unix-socket", &Config::nbd_unix_socket, "An NBD unix socket (none when empty).")
      .Int("nbd.max_connections", "nbd-max-connections", &Config::nbd_max_connections, 1, 65536,
           "More NBD connections are accepted and closed at once.")
      .Int("nbd.max_requests_in_flight", "nbd-max-requests-in-flight", &Config::nbd_max_requests_in_flight, 1, 65536,
           "Requests in flight per NBD connection.")
      .Size("nbd.max_bytes_in_flight", "nbd-max-bytes-in-flight", &Config::nbd_max_bytes_in_flight, 32 << 20,
            uint64_t{1} << 40, "Request and reply bytes in flight per NBD connection (at least one 32M request).")
      .Size("nbd.max_total_bytes_in_flight", "nbd-max-total-bytes-in-flight", &Config::nbd_max_total_bytes_in_flight,
            32 << 20, uint64_t{1} << 40,
            "Request and reply bytes in flight over every NBD connection; at most half the memory tmemd may use "
            "(its cgroup's memory.max, else the machine's).")
      .Int("nbd.threads_per_connection", "nbd-threads-per-connection", &Config::nbd_threads_per_connection, 1, 1024,
           "Request threads per NBD connection.")
      .Int("nbd.gather_us", "nbd-gather-us", &Config::nbd_gather_us, 0, 1000,
           "Cached exports: wait this long before reading again while a busy client's small requests arrive "
           "several per read (0: never).");
  return t;
}

Table<Config::ExportConfig>* BuildExportSettings() {
  using X = Config::ExportConfig;
  auto* t = new Table<X>;
  t->String("name", "", &X::name, "The export's name (1 to 4096 bytes).", "disk0")
      .String("backend", "", &X::backend,
              "A file or block device, file:PATH, nbd://HOST[:PORT]/NAME or nbd+unix:///NAME?socket=PATH.",
              "/var/lib/tmem/disk0.img")
      .Size("size", "", &X::size_bytes, 0, uint64_t{1} << 50, "Size of a file backend to create when absent.", "100G")
      .Bool("read_only", "", &X::read_only, "Serve the export read-only.")
      .String("description", "", &X::description, "Shown to clients by NBD_OPT_INFO.", "scratch disk")
      .String("tls", "", &X::tls,
              "require: a TLS-only export (a plaintext client gets NBD_REP_ERR_TLS_REQD); optional: plaintext "
              "loopback and unix socket clients may open it too. Plaintext clients from other addresses always "
              "need TLS unless insecure_plaintext.",
              "",
              [](const std::string& v) -> absl::Status {
                if (v == "require" || v == "optional") return absl::OkStatus();
                return absl::InvalidArgumentError(absl::StrCat("'", v, "' is not one of require, optional"));
              })
      .List("allow", "", &X::allow,
            "Tenants that may open the export: NAME (read-write), NAME:ro, * or *:ro (any peer, also a TLS peer "
            "without a certificate). Admins and local peers open every export; an empty list admits only them.",
            "node-1, node-2:ro")
      .Int("backend_request_timeout_ms", "", &X::backend_request_timeout_ms, 100, 3'600'000,
           "nbd:// backends: a request with no reply this long ends its connection. A read or flush is tried "
           "again on a new one; a write, trim or zero is not (it may still land) and fails with EIO.")
      .Int("backend_fence_timeout_ms", "", &X::backend_fence_timeout_ms, 0, 86'400'000,
           "nbd:// backends: after a write got no reply, later writes wait until its connection closed cleanly "
           "after NBD_CMD_DISC (the server then finished it); a connection that died instead holds them this long.")
      .StringFn(
          "cache.device", "",
          "A writeback cache in front of the backend (docs/blockcache.md): a file or block device; a missing file "
          "is created.",
          [](const X& x) -> const std::string& { return x.cache.device; },
          [](X& x, const std::string& v) { x.cache.device = v; }, "/var/lib/tmem/disk0-cache.img")
      .SizeFn(
          "cache.size", "", 0, uint64_t{1} << 50, "Size of the cache file to create when absent.",
          [](const X& x) { return x.cache.size_bytes; }, [](X& x, uint64_t v) { x.cache.size_bytes = v; }, "8G")
      .Include<blockcache::BlockCacheOptions>(
          "cache.", kCacheFlagPrefix, [](X& x) -> blockcache::BlockCacheOptions& { return x.cache.options; },
          blockcache::CacheSettings());
  return t;
}

}  // namespace

const Table<Config>& ConfigSettings() {
  static const Table<Config>* t = BuildConfigSettings();
  return *t;
}

const Table<Config::ExportConfig>& ExportSettings() {
  static const Table<Config::ExportConfig>* t = BuildExportSettings();
  return *t;
}

}  // namespace tmem::daemon
