// libFuzzer target over tmemd's config file: the input is the file's text, read by
// LoadConfigFile (from a memfd, so no file is written), then checked by ApplyFlags without
// flags as tmemd does at start. Every input must give a config or an error status: no crash, no
// exception out of either, no hang. Invariants on a config LoadConfigFile accepts: every
// setting of every table (top level, each export, each tenant) is within its range, and each
// setting's shown value parses back to itself (what --example-config and Admin print is what
// the loader takes).
//   scripts/fuzz_formats.sh [RUNS]        (libFuzzer)
//   //server/main:config_fuzz_test        (the default suite: the seeds and a few thousand mutations)
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/flags.h"
#include "common/fuzz_support.h"
#include "common/settings.h"
#include "server/main/config.h"
#include "server/trust/tenants.h"

namespace tmem::daemon {
namespace {

// The config text lives in a memfd, read through /proc/self/fd (LoadConfigFile takes a path).
struct ConfigFile {
  int fd = -1;
  std::string path;
  ConfigFile() {
    fd = ::memfd_create("tmem-config-fuzz", MFD_CLOEXEC);
    if (fd < 0) {
      std::perror("memfd_create");
      abort();
    }
    path = "/proc/self/fd/" + std::to_string(fd);
  }
  void Set(const uint8_t* data, size_t size) {
    TMEM_FUZZ_CHECK(::ftruncate(fd, 0) == 0);
    size_t done = 0;
    while (done < size) {
      const ssize_t n = ::pwrite(fd, data + done, size - done, static_cast<off_t>(done));
      TMEM_FUZZ_CHECK(n > 0);
      done += static_cast<size_t>(n);
    }
  }
};

ConfigFile& File() {
  static ConfigFile* f = new ConfigFile();
  return *f;
}

// Every setting of `table` on `v` is in range, and set(show(v)) gives v's shown value again.
template <typename T>
void CheckTable(const settings::Table<T>& table, const T& v) {
  TMEM_FUZZ_CHECK(table.Validate(v).ok());
  for (const settings::Setting<T>& s : table.settings()) {
    const std::string shown = s.show(v);
    T again = v;
    const absl::Status st = s.set(again, shown);
    if (!st.ok()) {
      std::fprintf(stderr, "setting %s: its shown value '%s' does not load: %s\n", s.key.c_str(), shown.c_str(),
                   std::string(st.message()).c_str());
      abort();
    }
    TMEM_FUZZ_CHECK(s.show(again) == shown);
  }
}

void Run(const uint8_t* data, size_t size) {
  File().Set(data, size);
  absl::StatusOr<Config> c;
  try {
    c = LoadConfigFile(File().path);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "LoadConfigFile threw: %s\n", e.what());
    abort();
  } catch (...) {
    std::fprintf(stderr, "LoadConfigFile threw something that is not a std::exception\n");
    abort();
  }
  if (!c.ok()) {
    TMEM_FUZZ_CHECK(c.status().code() == absl::StatusCode::kInvalidArgument);
    return;
  }
  CheckTable(ConfigSettings(), *c);
  for (const Config::ExportConfig& e : c->exports) CheckTable(ExportSettings(), e);
  for (const trust::TenantConfig& t : c->tenants) CheckTable(trust::TenantSettings(), t);
  try {
    (void)ApplyFlags(Flags{}, *c);
  } catch (...) {
    std::fprintf(stderr, "ApplyFlags threw\n");
    abort();
  }
}

std::vector<std::string> Seeds() {
  return {
      // The shipped example, as --example-config prints it (every key with its default or example).
      ExampleConfig(),
      // A cached export, tenants and TLS (what the tests use).
      R"(device:
  path: /data/cache.img
  size: 10G
  segment_size: 2M
listen: ["0.0.0.0:7070", "[::]:7071"]
log_level: warning
tls:
  cert: /etc/tmem/server.crt
  key: /etc/tmem/server.key
  ca: /etc/tmem/ca.crt
tenants:
  - name: node-1
    roles: [pages]
    max_pools: 16
  - name: ops
    roles: [admin, pages]
    certs: [ops.example]
nbd:
  listen: ["127.0.0.1:10809"]
  gather_us: 40
exports:
  - name: disk0
    backend: /var/lib/tmem/disk0.img
    size: 1G
    allow: [node-1, "ops:ro"]
    cache:
      device: /var/lib/tmem/disk0-cache.img
      size: 256M
      migrate_idle_ms: 100
      ram_cache: 64M
  - name: remote
    backend: nbd://10.0.0.2:10809/vol
    read_only: true
)",
      // Anchors and aliases, flow style, null values.
      "device: {path: &p /dev/nvme0n1}\nmetadata_dir: *p\nplaintext_listen: []\nmetrics_listen: ~\n",
  };
}

}  // namespace
}  // namespace tmem::daemon

std::vector<std::string> TmemFuzzSeeds() { return tmem::daemon::Seeds(); }

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  tmem::daemon::File();
  tmem::fuzz::WriteSeedsIfAsked(TmemFuzzSeeds());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tmem::daemon::Run(data, size);
  return 0;
}
