#include "server/main/config.h"

#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "server/blockcache/cache_settings.h"
#include "server/log/log_format.h"

namespace tmem::daemon {
namespace {

using settings::Kind;
using settings::Setting;
using settings::Table;

// Flags that are not one setting each.
struct SpecialFlag {
  const char* flag;
  const char* value;  // nullptr for a boolean flag
  const char* help;
};
constexpr SpecialFlag kSpecialFlags[] = {
    {"config", "FILE", "Read the settings from this YAML file first (tmemd --example-config prints one)."},
    {"format", nullptr,
     "Format the page device (device.path) if it is foreign, corrupt or of another geometry (destroys its "
     "contents). It formats nothing else."},
    {"format-export-cache", "NAME[,NAME...]",
     "Format these exports' cache devices if they are foreign or corrupt (discards what they hold; a cache "
     "with dirty data of another backing store is still refused)."},
    {"export", "NAME=BACKEND[:SIZE][:ro]", "One NBD export (replaces the file's exports)."},
    {"export-cache", "PATH[:SIZE]", "A writeback cache device for the export of --export."},
};
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
           "Page index entries kept in RAM (about 100 bytes each; 0 turns the cache off).")
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

uint64_t MachineMemory() {
  return static_cast<uint64_t>(::sysconf(_SC_PHYS_PAGES)) * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

// The memory this process may use: its cgroup's memory.max (cgroup v2), else the machine's RAM.
uint64_t MemoryLimit() {
  const uint64_t ram = MachineMemory();
  std::ifstream cg("/proc/self/cgroup");
  std::string line;
  while (std::getline(cg, line)) {
    if (line.rfind("0::", 0) != 0) continue;
    std::ifstream max("/sys/fs/cgroup" + line.substr(3) + "/memory.max");
    std::string v;
    if (max >> v && v != "max") {
      absl::StatusOr<uint64_t> n = settings::ParseSizeValue(v);
      if (n.ok() && *n > 0 && *n < ram) return *n;
    }
  }
  return ram;
}

// Machine-wide checks that are not one setting's range.
absl::Status Check(const Config& c) {
  if (c.device_path.empty()) return absl::InvalidArgumentError("no device: give --device or device.path");
  TMEM_RETURN_IF_ERROR(ConfigSettings().Validate(c, "config "));
  if (c.listen.empty()) return absl::InvalidArgumentError("no listen address");
  for (const std::string& a : c.listen) {
    if (a.find(':') == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("listen address '", a, "' has no port (want host:port)"));
    }
  }
  TMEM_RETURN_IF_ERROR(trust::CheckTlsOptions(c.tls));
  for (size_t i = 0; i < c.tenants.size(); ++i) {
    TMEM_RETURN_IF_ERROR(trust::TenantSettings().Validate(c.tenants[i], absl::StrCat("config tenants[", i, "].")));
  }
  TMEM_RETURN_IF_ERROR(trust::TenantTable::Build(c.tenants, c.local_tenant).status());
  if (!c.tls.x509() && !c.tenants.empty() && c.tls.psk_file.empty()) {
    return absl::InvalidArgumentError(
        "tenants are listed but TLS is not configured: without tls.cert (or tls.psk_file for NBD) every peer is the "
        "local tenant");
  }
  for (const std::string& a : c.plaintext_listen) {
    if (a.find(':') == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("plaintext_listen address '", a, "' has no port"));
    }
  }
  if (!c.exports.empty()) {
    const uint64_t memory = MemoryLimit();
    if (c.nbd_max_total_bytes_in_flight > memory / 2) {
      return absl::InvalidArgumentError(absl::StrCat("nbd.max_total_bytes_in_flight: ", c.nbd_max_total_bytes_in_flight,
                                                     " bytes is more than half of the memory tmemd may use (", memory,
                                                     "); lower it or give tmemd more memory"));
    }
  }
  std::set<std::string> names;
  for (const auto& e : c.exports) {
    if (e.name.empty() || e.name.size() > 4096)
      return absl::InvalidArgumentError("an export needs a name (1 to 4096 bytes)");
    if (!names.insert(e.name).second)
      return absl::InvalidArgumentError(absl::StrCat("export '", e.name, "' is declared twice"));
    if (e.backend.empty()) return absl::InvalidArgumentError(absl::StrCat("export '", e.name, "' has no backend"));
    TMEM_RETURN_IF_ERROR(ExportSettings().Validate(e, absl::StrCat("export '", e.name, "': ")));
    if (absl::Status s = trust::CheckAllowList(e.allow); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("export '", e.name, "': allow: ", s.message()));
    }
    if (e.tls == "require" && !c.tls.any()) {
      return absl::InvalidArgumentError(
          absl::StrCat("export '", e.name, "' has tls: require but TLS is not configured (tls.cert or tls.psk_file)"));
    }
    if (!e.cache.device.empty()) {
      if (e.read_only) {
        return absl::InvalidArgumentError(
            absl::StrCat("export '", e.name, "': a read-only export cannot have a writeback cache"));
      }
      const uint64_t ram = MachineMemory();
      if (e.cache.options.ram_cache_bytes > ram / 2) {
        return absl::InvalidArgumentError(
            absl::StrCat("export '", e.name, "'.cache.ram_cache: ", e.cache.options.ram_cache_bytes,
                         " bytes is more than half of this machine's memory (", ram, ")"));
      }
    }
  }
  return absl::OkStatus();
}

// The keys and list items one config file may hold (a real one has a few hundred). YAML aliases
// let a small file name one mapping many times over, and a mapping of aliases of a mapping of
// aliases... doubles what a walk visits at every level: 1 KB of text was 2^39 keys, a hang.
constexpr size_t kMaxConfigNodes = 1 << 16;

// YAML → (dotted key, text) for a map, calling `set` for each scalar or list; `exports` and
// `tenants` (lists of maps) go to `on_list`. Each key and list item visited takes one of
// `budget`; none left is InvalidArgument.
absl::Status Walk(const YAML::Node& map, const std::string& prefix, size_t& budget,
                  const std::function<absl::Status(const std::string&, const std::string&)>& set,
                  const std::function<absl::Status(const std::string&, const YAML::Node&)>& on_list) {
  if (!map.IsMap())
    return absl::InvalidArgumentError(absl::StrCat(
        "config ", prefix.empty() ? "(top level)" : prefix.substr(0, prefix.size() - 1), ": want a mapping of keys"));
  const auto spend = [&budget](size_t n) {
    if (n > budget) {
      return absl::InvalidArgumentError(absl::StrCat("config: more than ", kMaxConfigNodes,
                                                     " keys and list items (counting each use of a YAML alias)"));
    }
    budget -= n;
    return absl::OkStatus();
  };
  for (const auto& kv : map) {
    TMEM_RETURN_IF_ERROR(spend(1 + (kv.second.IsSequence() ? kv.second.size() : 0)));
    const std::string key = prefix + kv.first.as<std::string>();
    const YAML::Node& v = kv.second;
    if ((key == "exports" || key == "tenants") && on_list) {
      TMEM_RETURN_IF_ERROR(on_list(key, v));
    } else if (v.IsMap()) {
      TMEM_RETURN_IF_ERROR(Walk(v, key + ".", budget, set, nullptr));
    } else if (v.IsSequence()) {
      std::vector<std::string> items;
      for (const auto& item : v) {
        if (!item.IsScalar())
          return absl::InvalidArgumentError(absl::StrCat("config ", key, ": want a list of values"));
        items.push_back(item.as<std::string>());
      }
      TMEM_RETURN_IF_ERROR(set(key, settings::JoinList(items)));
    } else {
      TMEM_RETURN_IF_ERROR(set(key, v.IsNull() ? std::string() : v.as<std::string>()));
    }
  }
  return absl::OkStatus();
}

// `table`'s setting `key` from `text`; unknown keys are refused. `where` prefixes the key.
template <typename T>
absl::Status SetKey(const Table<T>& table, T& v, const std::string& where, const std::string& key,
                    const std::string& text) {
  const Setting<T>* s = table.Find(key);
  if (s == nullptr) return absl::InvalidArgumentError(absl::StrCat("config ", where, key, ": unknown key"));
  return table.Set(v, *s, text, absl::StrCat("config ", where, key));
}

std::string YamlValue(const Setting<Config>& s, const std::string& text) {
  if (s.kind == Kind::kList) {
    std::vector<std::string> quoted;
    for (const std::string& item : settings::SplitList(text)) quoted.push_back(absl::StrCat("\"", item, "\""));
    return absl::StrCat("[", absl::StrJoin(quoted, ", "), "]");
  }
  if (s.kind == Kind::kString && text.empty()) return "\"\"";
  return text;
}

template <typename T>
std::string ShownDefault(const Setting<T>& s) {
  std::string d = s.show(T{});
  return d.empty() ? "(none)" : d;
}

// `text` wrapped at about 100 columns, each line indented and starting with `marker`.
void AppendWrapped(std::string& out, const std::string& indent, const std::string& marker, const std::string& text) {
  std::string line;
  for (absl::string_view word : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
    if (!line.empty() && indent.size() + marker.size() + line.size() + 1 + word.size() > 100) {
      absl::StrAppend(&out, indent, marker, line, "\n");
      line.clear();
    }
    absl::StrAppend(&line, line.empty() ? "" : " ", word);
  }
  if (!line.empty()) absl::StrAppend(&out, indent, marker, line, "\n");
}

// "# help" lines.
void AppendComment(std::string& out, const std::string& indent, const std::string& text) {
  AppendWrapped(out, indent, "# ", text);
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

const std::set<std::string>& ValueFlags() {
  static const auto* f = [] {
    auto* set = new std::set<std::string>;
    for (const auto& s : ConfigSettings().settings()) {
      if (!s.flag.empty()) set->insert(s.flag);
    }
    for (const auto& s : ExportSettings().settings()) {
      if (!s.flag.empty()) set->insert(s.flag);
    }
    for (const SpecialFlag& x : kSpecialFlags) {
      if (x.value != nullptr) set->insert(x.flag);
    }
    return set;
  }();
  return *f;
}

const std::set<std::string>& BoolFlags() {
  static const auto* f = [] {
    auto* set = new std::set<std::string>;
    for (const SpecialFlag& x : kSpecialFlags) {
      if (x.value == nullptr) set->insert(x.flag);
    }
    return set;
  }();
  return *f;
}

absl::StatusOr<Config> LoadConfigFile(const std::string& path, Config c) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    return absl::NotFoundError(absl::StrCat("cannot read config file ", path));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config file ", path, ": ", e.what()));
  }
  if (root.IsNull()) return c;
  size_t budget = kMaxConfigNodes;
  try {
    // Each entry of a list of maps (exports, tenants) through its own table.
    auto read_list = [&budget](const std::string& name, const YAML::Node& v, const auto& table,
                               auto& out) -> absl::Status {
      if (!v.IsSequence()) return absl::InvalidArgumentError(absl::StrCat("config ", name, ": want a list of maps"));
      out.clear();
      for (size_t i = 0; i < v.size(); ++i) {
        const std::string where = absl::StrCat(name, "[", i, "].");
        typename std::decay_t<decltype(out)>::value_type x;
        if (!v[i].IsMap()) return absl::InvalidArgumentError(absl::StrCat("config ", name, "[", i, "]: want a map"));
        TMEM_RETURN_IF_ERROR(Walk(
            v[i], "", budget,
            [&](const std::string& key, const std::string& text) { return SetKey(table, x, where, key, text); },
            nullptr));
        out.push_back(std::move(x));
      }
      return absl::OkStatus();
    };
    auto on_list = [&](const std::string& key, const YAML::Node& v) -> absl::Status {
      if (key == "tenants") return read_list(key, v, trust::TenantSettings(), c.tenants);
      return read_list(key, v, ExportSettings(), c.exports);
    };
    TMEM_RETURN_IF_ERROR(Walk(
        root, "", budget,
        [&](const std::string& key, const std::string& text) { return SetKey(ConfigSettings(), c, "", key, text); },
        on_list));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config file ", path, ": ", e.what()));
  }
  return c;
}

absl::StatusOr<Config> ApplyFlags(const Flags& flags, Config c) {
  for (const auto& s : ConfigSettings().settings()) {
    if (!s.flag.empty() && flags.Has(s.flag)) {
      TMEM_RETURN_IF_ERROR(ConfigSettings().Set(c, s, flags.Get(s.flag), "--" + s.flag));
    }
  }
  if (flags.Has("export")) {
    // NAME=BACKEND[:SIZE]; ":ro" at the end makes it read-only.
    std::string spec = flags.Get("export");
    Config::ExportConfig x;
    const auto eq = spec.find('=');
    if (eq == std::string::npos || eq == 0) {
      return absl::InvalidArgumentError(absl::StrCat("--export=", spec, ": want NAME=BACKEND[:SIZE][:ro]"));
    }
    x.name = spec.substr(0, eq);
    std::string rest = spec.substr(eq + 1);
    if (rest.size() > 3 && rest.substr(rest.size() - 3) == ":ro") {
      x.read_only = true;
      rest.resize(rest.size() - 3);
    }
    const auto colon = rest.rfind(':');
    if (colon != std::string::npos && rest.find("://") == std::string::npos && rest.rfind("file:", 0) != 0) {
      absl::StatusOr<uint64_t> size = ParseSize(rest.substr(colon + 1));
      if (!size.ok()) return absl::InvalidArgumentError(absl::StrCat("--export: size: ", size.status().message()));
      x.size_bytes = *size;
      rest.resize(colon);
    }
    x.backend = rest;
    c.exports = {x};
  }
  if (flags.Has("export-cache")) {
    if (c.exports.size() != 1) {
      return absl::InvalidArgumentError(
          "--export-cache applies to the one export of --export (or of a config with one)");
    }
    std::string spec = flags.Get("export-cache");
    const auto colon = spec.rfind(':');
    if (colon != std::string::npos) {
      absl::StatusOr<uint64_t> size = ParseSize(spec.substr(colon + 1));
      if (!size.ok())
        return absl::InvalidArgumentError(absl::StrCat("--export-cache: size: ", size.status().message()));
      c.exports[0].cache.size_bytes = *size;
      spec.resize(colon);
    }
    if (spec.empty()) return absl::InvalidArgumentError("--export-cache=PATH[:SIZE]: the path is empty");
    c.exports[0].cache.device = spec;
  }
  for (const auto& s : ExportSettings().settings()) {
    if (s.flag.empty() || !flags.Has(s.flag)) continue;
    if (c.exports.size() != 1 || c.exports[0].cache.device.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", s.flag, " applies to the one cached export (--export-cache)"));
    }
    TMEM_RETURN_IF_ERROR(ExportSettings().Set(c.exports[0], s, flags.Get(s.flag), "--" + s.flag));
  }
  c.format = flags.Has("format");
  if (flags.Has("format-export-cache")) {
    for (const std::string& name : settings::SplitList(flags.Get("format-export-cache"))) {
      bool known = false;
      for (const auto& e : c.exports) known |= e.name == name && !e.cache.device.empty();
      if (!known) {
        return absl::InvalidArgumentError(
            absl::StrCat("--format-export-cache: no export named '", name, "' has a cache device"));
      }
      c.format_export_caches.insert(name);
    }
  }
  if (c.metadata_dir.empty() && !c.device_path.empty()) c.metadata_dir = c.device_path + ".index";
  TMEM_RETURN_IF_ERROR(Check(c));
  return c;
}

std::string HelpText() {
  std::string out =
      "usage: tmemd --device=PATH [flags]      or      tmemd --config=FILE [flags]\n"
      "       tmemd --version | --help | --example-config | --settings-markdown\n"
      "  A device that does not exist is created with --device-size and formatted. A device that\n"
      "  holds other data, is corrupt, or has another segment size is refused unless --format\n"
      "  (which destroys its contents). Flags override the config file; each setting's config key is\n"
      "  in brackets.\n\n";
  auto flag_line = [&](const std::string& flag, const std::string& value, const std::string& rest,
                       const std::string& help) {
    const std::string head = absl::StrCat("  --", flag, value.empty() ? "" : "=" + value);
    if (rest.empty()) {
      absl::StrAppend(&out, head, "\n");
    } else {
      absl::StrAppend(&out, head, std::string(head.size() < 34 ? 34 - head.size() : 1, ' '), rest, "\n");
    }
    AppendWrapped(out, "      ", "", help);
  };
  for (const SpecialFlag& x : kSpecialFlags) flag_line(x.flag, x.value == nullptr ? "" : x.value, "", x.help);
  auto add = [&](const auto& s, const std::string& key_prefix, const std::string& dflt) {
    if (s.flag.empty()) return;
    std::string rest = absl::StrCat("[", key_prefix, s.key, "] default ", dflt);
    if (s.kind == Kind::kInt || s.kind == Kind::kSize) absl::StrAppend(&rest, ", ", s.Range());
    flag_line(s.flag, std::string(settings::KindName(s.kind)), rest, s.help);
  };
  for (const auto& s : ConfigSettings().settings()) add(s, "", ShownDefault(s));
  absl::StrAppend(&out, "\n  The cache of the one export of --export (keys of exports[].cache):\n");
  for (const auto& s : ExportSettings().settings()) add(s, "exports[].", ShownDefault(s));
  return out;
}

std::string ExampleConfig() {
  std::string out =
      "# tmemd configuration. Generated from tmemd's settings table (tmemd --example-config); every key\n"
      "# is optional except device.path, and command-line flags override these values (tmemd --help).\n";
  const Config defaults;
  std::string section;
  for (const auto& s : ConfigSettings().settings()) {
    const auto dot = s.key.find('.');
    const std::string sect = dot == std::string::npos ? "" : s.key.substr(0, dot);
    const std::string leaf = dot == std::string::npos ? s.key : s.key.substr(dot + 1);
    if (sect != section) {
      if (!sect.empty()) absl::StrAppend(&out, "\n", sect, ":\n");
      section = sect;
    }
    const std::string indent = sect.empty() ? "" : "  ";
    AppendComment(out, indent, s.help);
    absl::StrAppend(&out, indent, leaf, ": ", YamlValue(s, s.example.empty() ? s.show(defaults) : s.example), "\n");
  }
  // Exports, commented out: a running tmemd with them creates files.
  absl::StrAppend(&out,
                  "\n# NBD block exports (docs/nbd.md). Without exports tmemd does not listen for NBD. An example\n"
                  "# export with every key, and a writeback cache in front of its backend:\n"
                  "# exports:\n");
  const Config::ExportConfig xd;
  bool first = true, in_cache = false;
  for (const auto& s : ExportSettings().settings()) {
    const bool cache = s.key.rfind("cache.", 0) == 0;
    if (cache && !in_cache) {
      absl::StrAppend(&out, "#     cache:\n");
      in_cache = true;
    }
    const std::string indent = cache ? "#       " : "#     ";
    const std::string leaf = cache ? s.key.substr(6) : s.key;
    std::string value = s.example.empty() ? s.show(xd) : s.example;
    if (s.kind == Kind::kString && value.empty()) value = "\"\"";
    if (s.kind == Kind::kList) value = absl::StrCat("[", value, "]");
    std::string comment;
    AppendComment(comment, "", s.help);
    for (absl::string_view line : absl::StrSplit(comment, '\n', absl::SkipEmpty())) {
      absl::StrAppend(&out, indent, std::string(line), "\n");
    }
    absl::StrAppend(&out, first ? "#   - " : indent, leaf, ": ", value, "\n");
    first = false;
  }
  // Tenants, commented out: they need TLS (docs/trust.md).
  absl::StrAppend(&out,
                  "\n# Tenants (docs/trust.md): who a TLS peer is, from its client certificate or PSK identity. Each\n"
                  "# tenant sees only its own page pools and the exports whose allow list names it.\n"
                  "# tenants:\n");
  const trust::TenantConfig td;
  first = true;
  for (const auto& s : trust::TenantSettings().settings()) {
    std::string comment;
    AppendComment(comment, "", s.help);
    for (absl::string_view line : absl::StrSplit(comment, '\n', absl::SkipEmpty())) {
      absl::StrAppend(&out, "#     ", std::string(line), "\n");
    }
    std::string value = s.example.empty() ? s.show(td) : s.example;
    if (s.kind == Kind::kList) value = absl::StrCat("[", value, "]");
    absl::StrAppend(&out, first ? "#   - " : "#     ", s.key, ": ", value, "\n");
    first = false;
  }
  return out;
}

std::string SettingsMarkdown() {
  std::string out =
      "# tmemd settings\n\n"
      "Generated from tmemd's settings table (`tmemd --settings-markdown`); a test keeps this page equal to\n"
      "it. Each setting is a config file key and, where it has one, a command-line flag (flags override\n"
      "the file). Values out of range are refused at start, naming the setting and its range; the\n"
      "cache tunables are checked against the same ranges when changed at run time (Admin\n"
      "`SET_TUNABLES`, `tmemctl cache --action=set`). Sizes take K, M, G and T (powers of 1024).\n\n";
  auto row = [&](const auto& s, const std::string& key_prefix, const std::string& dflt) {
    std::string range =
        s.kind == Kind::kInt || s.kind == Kind::kSize ? s.Range() : std::string(settings::KindName(s.kind));
    absl::StrAppend(&out, "| `", key_prefix, s.key, "` | ", s.flag.empty() ? "" : absl::StrCat("`--", s.flag, "`"),
                    " | ", dflt, " | ", range, " | ", s.help, " |\n");
  };
  const char* kHead = "| key | flag | default | range | meaning |\n|---|---|---|---|---|\n";
  absl::StrAppend(&out, "## Daemon and NBD server\n\n", kHead);
  for (const auto& s : ConfigSettings().settings()) row(s, "", ShownDefault(s));
  absl::StrAppend(&out,
                  "\n## Exports (`exports[]`)\n\nThe `--export-cache-*` flags apply to the one export given by "
                  "`--export` and `--export-cache`.\n\n",
                  kHead);
  for (const auto& s : ExportSettings().settings()) row(s, "exports[].", ShownDefault(s));
  absl::StrAppend(&out, "\n## Tenants (`tenants[]`)\n\nWho a TLS peer is (docs/trust.md).\n\n", kHead);
  for (const auto& s : trust::TenantSettings().settings()) row(s, "tenants[].", ShownDefault(s));
  return out;
}

}  // namespace tmem::daemon
