#include "server/main/config.h"

#include <unistd.h>

#include <algorithm>

#include <yaml-cpp/yaml.h>

#include <set>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"

namespace tmem::daemon {
namespace {

absl::Status Bad(const std::string& key, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat("config ", key, ": ", why));
}

absl::StatusOr<uint64_t> SizeOf(const std::string& key, const YAML::Node& n) {
  if (!n.IsScalar()) return Bad(key, "want a size such as 10G");
  absl::StatusOr<uint64_t> v = ParseSize(n.as<std::string>());
  if (!v.ok()) return Bad(key, std::string(v.status().message()));
  return v;
}

absl::Status CheckLevel(const std::string& level) {
  static const std::set<std::string> kLevels = {"debug", "info", "warning", "error"};
  if (!kLevels.count(level)) {
    return absl::InvalidArgumentError(absl::StrCat("log level '", level, "' is not one of debug, info, warning, error"));
  }
  return absl::OkStatus();
}

absl::Status Check(const Config& c) {
  if (c.device_path.empty()) return absl::InvalidArgumentError("no device: give --device or device.path");
  if (c.listen.empty()) return absl::InvalidArgumentError("no listen address");
  for (const std::string& a : c.listen) {
    if (a.find(':') == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("listen address '", a, "' has no port (want host:port)"));
    }
  }
  if (c.shutdown_timeout_ms <= 0) return absl::InvalidArgumentError("shutdown timeout must be positive");
  std::set<std::string> names;
  for (const auto& e : c.exports) {
    if (e.name.empty() || e.name.size() > 4096) return absl::InvalidArgumentError("an export needs a name (1 to 4096 bytes)");
    if (!names.insert(e.name).second) return absl::InvalidArgumentError(absl::StrCat("export '", e.name, "' is declared twice"));
    if (e.backend.empty()) return absl::InvalidArgumentError(absl::StrCat("export '", e.name, "' has no backend"));
    if (!e.cache.device.empty()) {
      if (e.read_only) {
        return absl::InvalidArgumentError(absl::StrCat("export '", e.name, "': a read-only export cannot have a writeback cache"));
      }
      if (e.cache.barrier_deadline_us < 0 || e.cache.barrier_deadline_us > 1'000'000 || e.cache.migrate_idle_ms < 0 ||
          e.cache.migrate_max_age_ms < 0 || e.cache.full_write_timeout_ms < 0 ||
          e.cache.buffer_deadline_ms < 1 || e.cache.buffer_deadline_ms > 60'000 ||
          e.cache.migrate_batch_segments == 0 || e.cache.migrate_batch_segments > 4096) {
        return absl::InvalidArgumentError(absl::StrCat(
            "export '", e.name, "'.cache: barrier_deadline_us 0..1000000, migrate_idle_ms >= 0, migrate_max_age_ms >= 0, "
            "full_write_timeout_ms >= 0, "
            "buffer_deadline_ms 1..60000, migrate_batch_segments 1..4096"));
      }
      const uint64_t ram = static_cast<uint64_t>(::sysconf(_SC_PHYS_PAGES)) * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
      if (e.cache.ram_cache_bytes > ram / 2) {
        return absl::InvalidArgumentError(absl::StrCat("export '", e.name, "'.cache.ram_cache: ", e.cache.ram_cache_bytes,
                                                       " bytes is more than half of this machine's memory (", ram, ")"));
      }
    }
  }
  if (c.nbd_max_connections < 1 || c.nbd_max_requests_in_flight < 1 || c.nbd_threads_per_connection < 1 ||
      c.nbd_threads_per_connection > 1024) {
    return absl::InvalidArgumentError("nbd: max_connections, max_requests_in_flight and threads_per_connection must be positive");
  }
  if (c.nbd_gather_us < 0 || c.nbd_gather_us > 1000) {
    return absl::InvalidArgumentError(absl::StrCat("nbd.gather_us must be within 0..1000 (microseconds), not ", c.nbd_gather_us));
  }
  if (c.nbd_max_bytes_in_flight < (32u << 20)) {
    return absl::InvalidArgumentError("nbd.max_bytes_in_flight: at least 32M (one maximum request)");
  }
  if (c.index_cache_entries > (1ull << 32)) {
    return absl::InvalidArgumentError(absl::StrCat("index cache entries: ", c.index_cache_entries,
                                                   "; want at most 4294967296 (0 turns the cache off)"));
  }
  if (c.rpc_threads < 1 || c.rpc_threads > 1024) {
    return absl::InvalidArgumentError(absl::StrCat("rpc threads: ", c.rpc_threads, "; want 1 to 1024"));
  }
  return CheckLevel(c.log_level);
}

}  // namespace

const std::set<std::string>& ValueFlags() {
  static const auto* f = new std::set<std::string>{"config", "device", "device-size", "segment-size", "metadata-dir",
                                                   "listen", "metrics-listen", "log-level", "shutdown-timeout-ms",
                                                   "rpc-threads", "index-cache-entries", "export", "export-cache", "export-cache-ram",
                                                   "nbd-listen", "nbd-unix-socket"};
  return *f;
}

const std::set<std::string>& BoolFlags() {
  static const auto* f = new std::set<std::string>{"format"};
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
  if (!root.IsMap()) return Bad("(top level)", "want a mapping of keys");
  try {
    for (const auto& kv : root) {
      const std::string key = kv.first.as<std::string>();
      const YAML::Node& v = kv.second;
      if (key == "device") {
        if (!v.IsMap()) return Bad("device", "want path, size, segment_size");
        for (const auto& d : v) {
          const std::string k = d.first.as<std::string>();
          if (k == "path") {
            c.device_path = d.second.as<std::string>();
          } else if (k == "size") {
            TMEM_ASSIGN_OR_RETURN(c.device_size_bytes, SizeOf("device.size", d.second));
          } else if (k == "segment_size") {
            TMEM_ASSIGN_OR_RETURN(uint64_t s, SizeOf("device.segment_size", d.second));
            if (s > UINT32_MAX) return Bad("device.segment_size", "too large");
            c.segment_bytes = static_cast<uint32_t>(s);
            c.segment_bytes_set = true;
          } else {
            return Bad("device." + k, "unknown key");
          }
        }
      } else if (key == "metadata_dir") {
        c.metadata_dir = v.as<std::string>();
      } else if (key == "listen") {
        c.listen.clear();
        if (v.IsSequence()) {
          for (const auto& a : v) c.listen.push_back(a.as<std::string>());
        } else {
          c.listen.push_back(v.as<std::string>());
        }
      } else if (key == "metrics_listen") {
        c.metrics_listen = v.IsNull() ? "" : v.as<std::string>();
      } else if (key == "log_level") {
        c.log_level = v.as<std::string>();
      } else if (key == "shutdown_timeout_ms") {
        c.shutdown_timeout_ms = v.as<int64_t>();
      } else if (key == "rpc_threads") {
        c.rpc_threads = v.as<int>();
      } else if (key == "index_cache_entries") {
        c.index_cache_entries = v.as<uint64_t>();
      } else if (key == "nbd") {
        if (!v.IsMap()) return Bad("nbd", "want listen, unix_socket, max_connections, max_requests_in_flight, max_bytes_in_flight, threads_per_connection, gather_us");
        for (const auto& d : v) {
          const std::string k = d.first.as<std::string>();
          const YAML::Node& n = d.second;
          if (k == "listen") {
            c.nbd_listen.clear();
            if (n.IsSequence()) {
              for (const auto& a : n) c.nbd_listen.push_back(a.as<std::string>());
            } else if (!n.IsNull() && !n.as<std::string>().empty()) {
              c.nbd_listen.push_back(n.as<std::string>());
            }
          } else if (k == "unix_socket") {
            c.nbd_unix_socket = n.IsNull() ? "" : n.as<std::string>();
          } else if (k == "max_connections") {
            c.nbd_max_connections = n.as<int>();
          } else if (k == "max_requests_in_flight") {
            c.nbd_max_requests_in_flight = n.as<int>();
          } else if (k == "max_bytes_in_flight") {
            TMEM_ASSIGN_OR_RETURN(c.nbd_max_bytes_in_flight, SizeOf("nbd.max_bytes_in_flight", n));
          } else if (k == "threads_per_connection") {
            c.nbd_threads_per_connection = n.as<int>();
          } else if (k == "gather_us") {
            c.nbd_gather_us = n.as<int>();
          } else {
            return Bad("nbd." + k, "unknown key");
          }
        }
      } else if (key == "exports") {
        if (!v.IsSequence()) return Bad("exports", "want a list of exports");
        c.exports.clear();
        for (size_t i = 0; i < v.size(); ++i) {
          const YAML::Node& e = v[i];
          const std::string where = absl::StrCat("exports[", i, "]");
          if (!e.IsMap()) return Bad(where, "want name, backend, size, read_only, description");
          Config::ExportConfig x;
          for (const auto& d : e) {
            const std::string k = d.first.as<std::string>();
            if (k == "name") {
              x.name = d.second.as<std::string>();
            } else if (k == "backend") {
              x.backend = d.second.as<std::string>();
            } else if (k == "size") {
              TMEM_ASSIGN_OR_RETURN(x.size_bytes, SizeOf(where + ".size", d.second));
            } else if (k == "read_only") {
              x.read_only = d.second.as<bool>();
            } else if (k == "description") {
              x.description = d.second.as<std::string>();
            } else if (k == "cache") {
              if (!d.second.IsMap()) return Bad(where + ".cache", "want device, size, barrier_deadline_us, migrate_batch_segments, migrate_idle_ms, migrate_max_age_ms, full_write_timeout_ms, buffer_deadline_ms, read_cache, read_cache_threshold_lines, ram_cache");
              for (const auto& cd : d.second) {
                const std::string ck = cd.first.as<std::string>();
                const std::string cw = where + ".cache." + ck;
                if (ck == "device") {
                  x.cache.device = cd.second.as<std::string>();
                } else if (ck == "size") {
                  TMEM_ASSIGN_OR_RETURN(x.cache.size_bytes, SizeOf(cw, cd.second));
                } else if (ck == "barrier_deadline_us") {
                  x.cache.barrier_deadline_us = cd.second.as<int64_t>();
                } else if (ck == "migrate_batch_segments") {
                  x.cache.migrate_batch_segments = cd.second.as<uint32_t>();
                } else if (ck == "migrate_idle_ms") {
                  x.cache.migrate_idle_ms = cd.second.as<int64_t>();
                } else if (ck == "migrate_max_age_ms") {
                  x.cache.migrate_max_age_ms = cd.second.as<int64_t>();
                } else if (ck == "full_write_timeout_ms") {
                  x.cache.full_write_timeout_ms = cd.second.as<int64_t>();
                } else if (ck == "buffer_deadline_ms") {
                  x.cache.buffer_deadline_ms = cd.second.as<int64_t>();
                } else if (ck == "read_cache") {
                  x.cache.read_cache = cd.second.as<bool>();
                } else if (ck == "read_cache_threshold_lines") {
                  x.cache.read_cache_threshold_lines = cd.second.as<uint32_t>();
                } else if (ck == "ram_cache") {
                  TMEM_ASSIGN_OR_RETURN(x.cache.ram_cache_bytes, SizeOf(cw, cd.second));
                } else {
                  return Bad(cw, "unknown key");
                }
              }
            } else {
              return Bad(where + "." + k, "unknown key");
            }
          }
          c.exports.push_back(std::move(x));
        }
      } else {
        return Bad(key, "unknown key");
      }
    }
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config file ", path, ": ", e.what()));
  }
  return c;
}

absl::StatusOr<Config> ApplyFlags(const Flags& flags, Config c) {
  if (flags.Has("device")) c.device_path = flags.Get("device");
  if (flags.Has("device-size")) {
    TMEM_ASSIGN_OR_RETURN(c.device_size_bytes, flags.GetSize("device-size", 0));
  }
  if (flags.Has("segment-size")) {
    TMEM_ASSIGN_OR_RETURN(uint64_t s, flags.GetSize("segment-size", 0));
    if (s > UINT32_MAX) return absl::InvalidArgumentError("--segment-size is too large");
    c.segment_bytes = static_cast<uint32_t>(s);
    c.segment_bytes_set = true;
  }
  if (flags.Has("metadata-dir")) c.metadata_dir = flags.Get("metadata-dir");
  if (flags.Has("listen")) c.listen = absl::StrSplit(flags.Get("listen"), ',', absl::SkipEmpty());
  if (flags.Has("metrics-listen")) c.metrics_listen = flags.Get("metrics-listen");
  if (flags.Has("log-level")) c.log_level = flags.Get("log-level");
  if (flags.Has("shutdown-timeout-ms")) {
    TMEM_ASSIGN_OR_RETURN(uint64_t t, flags.GetUint("shutdown-timeout-ms", 0));
    c.shutdown_timeout_ms = static_cast<int64_t>(t);
  }
  if (flags.Has("rpc-threads")) {
    TMEM_ASSIGN_OR_RETURN(uint64_t t, flags.GetUint("rpc-threads", 0));
    c.rpc_threads = static_cast<int>(std::min<uint64_t>(t, 1u << 20));
  }
  if (flags.Has("index-cache-entries")) {
    TMEM_ASSIGN_OR_RETURN(c.index_cache_entries, flags.GetUint("index-cache-entries", 0));
  }
  if (flags.Has("nbd-listen")) c.nbd_listen = absl::StrSplit(flags.Get("nbd-listen"), ',', absl::SkipEmpty());
  if (flags.Has("nbd-unix-socket")) c.nbd_unix_socket = flags.Get("nbd-unix-socket");
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
      return absl::InvalidArgumentError("--export-cache applies to the one export of --export (or of a config with one)");
    }
    std::string spec = flags.Get("export-cache");
    const auto colon = spec.rfind(':');
    if (colon != std::string::npos) {
      absl::StatusOr<uint64_t> size = ParseSize(spec.substr(colon + 1));
      if (!size.ok()) return absl::InvalidArgumentError(absl::StrCat("--export-cache: size: ", size.status().message()));
      c.exports[0].cache.size_bytes = *size;
      spec.resize(colon);
    }
    if (spec.empty()) return absl::InvalidArgumentError("--export-cache=PATH[:SIZE]: the path is empty");
    c.exports[0].cache.device = spec;
  }
  if (flags.Has("export-cache-ram")) {
    if (c.exports.size() != 1 || c.exports[0].cache.device.empty()) {
      return absl::InvalidArgumentError("--export-cache-ram applies to the one cached export (--export-cache)");
    }
    absl::StatusOr<uint64_t> size = ParseSize(flags.Get("export-cache-ram"));
    if (!size.ok()) return absl::InvalidArgumentError(absl::StrCat("--export-cache-ram: ", size.status().message()));
    c.exports[0].cache.ram_cache_bytes = *size;
  }
  c.format = flags.Has("format");
  if (c.metadata_dir.empty() && !c.device_path.empty()) c.metadata_dir = c.device_path + ".index";
  TMEM_RETURN_IF_ERROR(Check(c));
  return c;
}

}  // namespace tmem::daemon
