// tmemd's configuration: a YAML file, then command-line flags that override it. Every setting
// is defined once, in the tables below (common/settings.h): its key, flag, default (the member
// initializers here), range and help. `tmemd --help`, `tmemd --example-config` (the shipped
// tmemd.example.yaml) and docs/settings.md are generated from them, and tests check that the
// shipped files match.
#ifndef TMEM_SERVER_MAIN_CONFIG_H_
#define TMEM_SERVER_MAIN_CONFIG_H_

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/flags.h"
#include "common/settings.h"
#include "server/blockcache/options.h"
#include "server/trust/tenants.h"
#include "server/trust/tls_options.h"

namespace tmem::daemon {

struct Config {
  std::string device_path;           // device.path / --device (required)
  uint64_t device_size_bytes = 0;    // device.size: create a file this large if absent
  uint32_t segment_bytes = 1 << 20;  // device.segment_size
  bool segment_bytes_set = false;    // given explicitly: an existing device must match
  std::string metadata_dir;          // default: <device>.index
  std::vector<std::string> listen = {"127.0.0.1:7070"};
  std::string metrics_listen = "127.0.0.1:9464";  // "" = off
  std::string log_level = "info";
  int64_t shutdown_timeout_ms = 10000;
  int64_t stop_timeout_ms = 30000;  // the whole stop; past it tmemd exits without a clean stop
  int64_t pool_write_buffers = 16;  // the page log's RAM write buffers (one segment each)
  int64_t pool_flushers = 2;        // threads writing them, one segment write in flight each
  int64_t pool_put_wait_ms = 500;   // a put waits this long for room in the log, then is dropped
  // Health (server/grpc/health_monitor.h).
  int64_t health_check_interval_ms = 1000;
  int64_t health_io_deadline_ms = 5000;
  uint64_t health_io_error_threshold = 8;
  int64_t health_window_ms = 10000;
  int rpc_threads = 16;
  int grpc_max_streams_per_connection = 256;  // HTTP/2 streams (calls) at once on one connection
  int grpc_max_sessions_per_tenant = 64;      // Session streams open at once per tenant
  int grpc_max_calls_per_tenant = 256;        // unary calls running at once per tenant
  int64_t grpc_idle_timeout_ms = 300000;      // a connection without calls this long is closed
  int64_t grpc_keepalive_ms = 60000;          // idle connections are pinged this often
  uint64_t index_cache_entries = 1 << 21;
  uint64_t index_write_behind = 16384;
  bool index_write_back = true;
  uint64_t index_write_buffer_bytes = 8 << 20;
  uint64_t ram_cache_bytes = 256ull << 20;  // the DRAM tier
  bool format = false;  // --format only: format a device that is foreign, corrupt or of another geometry
  std::set<std::string> format_export_caches;  // --format-export-cache=NAME,...: format these exports' caches

  // Trust (docs/trust.md).
  trust::TlsOptions tls;                      // tls.*: set, gRPC listeners speak TLS and NBD offers STARTTLS
  std::vector<std::string> plaintext_listen;  // extra plaintext gRPC listeners (loopback or unix: only)
  bool insecure_plaintext = false;            // allow plaintext listeners on non-loopback addresses
  std::string local_tenant = "local";         // the tenant of plaintext peers
  std::vector<trust::TenantConfig> tenants;   // tenants: [...]

  // The page wire protocol (docs/wire.md).
  std::vector<std::string> wire_listen = {"127.0.0.1:0"};  // TLS when tls.cert is set; [] = none; port 0: any
  std::vector<std::string> wire_plaintext_listen;          // loopback only, unless insecure_plaintext
  int wire_threads = 0;                                    // event loops; 0 = one per core
  int wire_max_connections = 1024;
  int wire_max_connections_per_tenant = 256;
  int64_t wire_handshake_timeout_ms = 10000;
  int64_t wire_idle_timeout_ms = 300000;
  uint64_t wire_max_pending_reply_bytes = 8ull << 20;  // per connection
  int wire_max_in_flight = 64;                         // announced to clients

  // NBD block exports.
  struct ExportConfig {
    std::string name;
    std::string backend;      // a path, file:PATH, nbd://HOST[:PORT]/NAME, nbd+unix:///NAME?socket=PATH
    uint64_t size_bytes = 0;  // a file backend that does not exist is created this large
    bool read_only = false;
    std::string description;
    std::string tls = "optional";                // require: TLS-only export (before STARTTLS only ABORT and STARTTLS)
    std::vector<std::string> allow;              // tenants that may open it: "NAME", "NAME:ro", "*", "*:ro"
    int64_t backend_request_timeout_ms = 30000;  // nbd:// backends: a request with no reply
    int64_t backend_fence_timeout_ms = 60000;    // nbd:// backends: a dead connection's write in doubt
    // A writeback cache in front of the backend (docs/blockcache.md). Empty device = no cache.
    struct Cache {
      std::string device;                     // file or block device; a file that does not exist is created
      uint64_t size_bytes = 0;                // size of a cache file to create
      blockcache::BlockCacheOptions options;  // the settings of blockcache::CacheSettings()
    } cache;
  };
  std::vector<ExportConfig> exports;                          // exports: [...] / --export=NAME=BACKEND[:SIZE][:ro]
  std::vector<std::string> nbd_listen = {"127.0.0.1:10809"};  // "" / [] = no TCP
  std::string nbd_unix_socket;
  int nbd_max_connections = 64;
  uint64_t nbd_max_bytes_in_flight = 64ull << 20;       // per connection
  uint64_t nbd_max_total_bytes_in_flight = 1ull << 30;  // over every connection
  int nbd_max_requests_in_flight = 128;                 // per connection
  int nbd_threads_per_connection = 16;
  int nbd_gather_us = 30;
};

// The settings of the config file's top level and `nbd` section (keys "listen", "nbd.gather_us").
const settings::Table<Config>& ConfigSettings();
// The settings of one entry of `exports` (keys "name", "cache.migrate_idle_ms"); the cache's own
// flags apply to the one export of --export and are named --export-cache-KEY.
const settings::Table<Config::ExportConfig>& ExportSettings();

// The flags tmemd accepts (value flags, then boolean flags).
const std::set<std::string>& ValueFlags();
const std::set<std::string>& BoolFlags();

// Reads `path` (YAML). Unknown keys, malformed values and values out of range are
// InvalidArgument naming the key.
absl::StatusOr<Config> LoadConfigFile(const std::string& path, Config base = {});
// Applies the flags over `base`, then checks the result.
absl::StatusOr<Config> ApplyFlags(const Flags& flags, Config base);

// `tmemd --help`: usage and every flag with its key, default and range.
std::string HelpText();
// The example config file (server/main/tmemd.example.yaml): every key, with its help.
std::string ExampleConfig();
// docs/settings.md: every setting in a table.
std::string SettingsMarkdown();

}  // namespace tmem::daemon

#endif  // TMEM_SERVER_MAIN_CONFIG_H_
