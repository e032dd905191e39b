#include "server/main/config.h"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace tmem::daemon {
namespace {

std::string WriteFile(const std::string& name, const std::string& text) {
  std::string path = std::string(std::getenv("TEST_TMPDIR")) + "/" + name;
  std::ofstream(path) << text;
  return path;
}

absl::StatusOr<Config> Parse(std::vector<const char*> args, Config base = {}) {
  args.insert(args.begin(), "tmemd");
  auto flags =
      Flags::Parse(static_cast<int>(args.size()), const_cast<char**>(args.data()), 1, ValueFlags(), BoolFlags());
  if (!flags.ok()) return flags.status();
  return ApplyFlags(*flags, base);
}

TEST(ConfigTest, FileValuesAndFlagOverrides) {
  auto c = LoadConfigFile(WriteFile("full.yaml", R"(
device:
  path: /data/cache.img
  size: 10G
  segment_size: 2M
metadata_dir: /data/index
listen: ["0.0.0.0:7070", "[::]:7071"]
metrics_listen: 0.0.0.0:9464
log_level: warning
shutdown_timeout_ms: 2500
rpc_threads: 32
index_cache_entries: 5000
)"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->device_path, "/data/cache.img");
  EXPECT_EQ(c->device_size_bytes, 10ull << 30);
  EXPECT_EQ(c->segment_bytes, 2u << 20);
  EXPECT_TRUE(c->segment_bytes_set);
  EXPECT_EQ(c->listen, (std::vector<std::string>{"0.0.0.0:7070", "[::]:7071"}));
  EXPECT_EQ(c->shutdown_timeout_ms, 2500);
  EXPECT_EQ(c->rpc_threads, 32);
  EXPECT_EQ(c->index_cache_entries, 5000u);
  auto merged = Parse({"--listen=127.0.0.1:1", "--log-level", "debug", "--format"}, *c);
  ASSERT_TRUE(merged.ok()) << merged.status();
  EXPECT_EQ(merged->listen, std::vector<std::string>{"127.0.0.1:1"});
  EXPECT_EQ(merged->log_level, "debug");
  EXPECT_EQ(merged->metadata_dir, "/data/index");
  EXPECT_TRUE(merged->format);
}

TEST(ConfigTest, NbdExportsFromFileAndFlag) {
  auto c = LoadConfigFile(WriteFile("nbd.yaml", R"(
device:
  path: /d.img
nbd:
  listen: ["127.0.0.1:10809", "[::1]:10809"]
  unix_socket: /run/tmem/nbd.sock
  max_connections: 8
  max_bytes_in_flight: 128M
  threads_per_connection: 4
  gather_us: 50
exports:
  - name: disk0
    backend: /data/disk0.img
    size: 10G
    description: first disk
  - name: remote
    backend: nbd://10.0.0.2/vol
    read_only: true
)"));
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->exports.size(), 2u);
  EXPECT_EQ(c->exports[0].name, "disk0");
  EXPECT_EQ(c->exports[0].size_bytes, 10ull << 30);
  EXPECT_EQ(c->exports[0].description, "first disk");
  EXPECT_TRUE(c->exports[1].read_only);
  EXPECT_EQ(c->exports[1].backend, "nbd://10.0.0.2/vol");
  EXPECT_EQ(c->nbd_listen, (std::vector<std::string>{"127.0.0.1:10809", "[::1]:10809"}));
  EXPECT_EQ(c->nbd_unix_socket, "/run/tmem/nbd.sock");
  EXPECT_EQ(c->nbd_max_connections, 8);
  EXPECT_EQ(c->nbd_max_bytes_in_flight, 128ull << 20);
  EXPECT_EQ(c->nbd_threads_per_connection, 4);
  EXPECT_EQ(c->nbd_gather_us, 50);
  EXPECT_TRUE(Parse({}, *c).ok());

  auto flag = Parse({"--device=/d", "--export=scratch=/tmp/s.img:64M:ro", "--nbd-listen=0.0.0.0:10810"});
  ASSERT_TRUE(flag.ok()) << flag.status();
  ASSERT_EQ(flag->exports.size(), 1u);
  EXPECT_EQ(flag->exports[0].name, "scratch");
  EXPECT_EQ(flag->exports[0].backend, "/tmp/s.img");
  EXPECT_EQ(flag->exports[0].size_bytes, 64ull << 20);
  EXPECT_TRUE(flag->exports[0].read_only);
  auto uri = Parse({"--device=/d", "--export=r=nbd+unix:///v?socket=/s"});
  ASSERT_TRUE(uri.ok()) << uri.status();
  EXPECT_EQ(uri->exports[0].backend, "nbd+unix:///v?socket=/s");
}

TEST(ConfigTest, CachedExportsFromFileAndFlag) {
  auto c = LoadConfigFile(WriteFile("cached.yaml", R"(
device: {path: /d.img}
exports:
  - name: db
    backend: /srv/slow.img
    cache:
      device: /var/lib/tmem/db-cache.img
      size: 8G
      barrier_deadline_us: 500
      migrate_batch_segments: 16
      migrate_idle_ms: 100
      migrate_max_age_ms: 9000
      full_write_timeout_ms: 5000
      buffer_deadline_ms: 10
      read_cache: true
      read_cache_threshold_lines: 64
      ram_cache: 256M
)"));
  ASSERT_TRUE(c.ok()) << c.status();
  const auto& cache = c->exports[0].cache;
  EXPECT_EQ(cache.device, "/var/lib/tmem/db-cache.img");
  EXPECT_EQ(cache.size_bytes, 8ull << 30);
  EXPECT_EQ(cache.options.tunables.barrier_deadline_us, 500);
  EXPECT_EQ(cache.options.tunables.migrate_batch_segments, 16u);
  EXPECT_EQ(cache.options.tunables.migrate_idle_ms, 100);
  EXPECT_EQ(cache.options.tunables.migrate_max_age_ms, 9000);
  EXPECT_EQ(cache.options.full_write_timeout_ms, 5000);
  EXPECT_EQ(cache.options.log.flush_deadline_ns, 10'000'000);
  EXPECT_TRUE(cache.options.read_cache);
  EXPECT_EQ(cache.options.read_cache_threshold_lines, 64u);
  EXPECT_EQ(cache.options.ram_cache_bytes, 256ull << 20);

  auto flag = Parse({"--device=/d", "--export=x=/b.img", "--export-cache=/c.img:1G"});
  ASSERT_TRUE(flag.ok()) << flag.status();
  EXPECT_EQ(flag->exports[0].cache.device, "/c.img");
  EXPECT_EQ(flag->exports[0].cache.size_bytes, 1ull << 30);

  auto ro = Parse({"--device=/d", "--export=x=/b.img:ro", "--export-cache=/c.img"});
  EXPECT_NE(ro.status().message().find("read-only export cannot have a writeback cache"), std::string::npos)
      << ro.status();
  auto ram = Parse({"--device=/d", "--export=x=/b.img", "--export-cache=/c.img:1G", "--export-cache-ram=64M"});
  ASSERT_TRUE(ram.ok()) << ram.status();
  EXPECT_EQ(ram->exports[0].cache.options.ram_cache_bytes, 64ull << 20);
  auto tuned = Parse({"--device=/d", "--export=x=/b.img", "--export-cache=/c.img", "--export-cache-migrate-idle-ms=7"});
  ASSERT_TRUE(tuned.ok()) << tuned.status();
  EXPECT_EQ(tuned->exports[0].cache.options.tunables.migrate_idle_ms, 7);
  auto tuned_bad =
      Parse({"--device=/d", "--export=x=/b.img", "--export-cache=/c.img", "--export-cache-migrate-idle-ms=-1"});
  EXPECT_NE(tuned_bad.status().message().find("--export-cache-migrate-idle-ms: -1 is outside 0..86400000"),
            std::string::npos)
      << tuned_bad.status();
  auto ram_alone = Parse({"--device=/d", "--export=x=/b.img", "--export-cache-ram=64M"});
  EXPECT_NE(ram_alone.status().message().find("--export-cache-ram applies"), std::string::npos) << ram_alone.status();
  auto ram_huge = Parse({"--device=/d", "--export=x=/b.img", "--export-cache=/c.img", "--export-cache-ram=1024T"});
  EXPECT_NE(ram_huge.status().message().find("more than half of this machine's memory"), std::string::npos)
      << ram_huge.status();
  auto alone = Parse({"--device=/d", "--export-cache=/c.img"});
  EXPECT_EQ(alone.status().code(), absl::StatusCode::kInvalidArgument);
  auto key = LoadConfigFile(
      WriteFile("cachekey.yaml", "exports:\n  - {name: a, backend: /x, cache: {device: /c, speed: 1}}\n"));
  EXPECT_NE(key.status().message().find("exports[0].cache.speed"), std::string::npos) << key.status();
  auto batch = LoadConfigFile(WriteFile(
      "cachebatch.yaml",
      "device: {path: /d}\nexports:\n  - {name: a, backend: /x, cache: {device: /c, migrate_batch_segments: 0}}\n"));
  EXPECT_NE(batch.status().message().find("exports[0].cache.migrate_batch_segments: 0 is outside 1..4096"),
            std::string::npos)
      << batch.status();
}

TEST(ConfigTest, BadNbdConfigNamesTheCulprit) {
  auto twice = LoadConfigFile(WriteFile(
      "twice.yaml", "device: {path: /d}\nexports:\n  - {name: a, backend: /x}\n  - {name: a, backend: /y}\n"));
  ASSERT_TRUE(twice.ok());
  EXPECT_NE(Parse({}, *twice).status().message().find("export 'a' is declared twice"), std::string::npos);
  auto nobackend = LoadConfigFile(WriteFile("nob.yaml", "device: {path: /d}\nexports:\n  - {name: a}\n"));
  ASSERT_TRUE(nobackend.ok());
  EXPECT_NE(Parse({}, *nobackend).status().message().find("has no backend"), std::string::npos);
  auto key = LoadConfigFile(WriteFile("key.yaml", "exports:\n  - {name: a, backend: /x, colour: red}\n"));
  EXPECT_NE(key.status().message().find("exports[0].colour"), std::string::npos) << key.status();
  auto nbdkey = LoadConfigFile(WriteFile("nbdkey.yaml", "nbd:\n  speed: fast\n"));
  EXPECT_NE(nbdkey.status().message().find("nbd.speed"), std::string::npos) << nbdkey.status();
  auto small = LoadConfigFile(WriteFile("small.yaml", "device: {path: /d}\nnbd:\n  max_bytes_in_flight: 1M\n"));
  EXPECT_NE(small.status().message().find("nbd.max_bytes_in_flight: 1M is outside 32M..1T"), std::string::npos)
      << small.status();
  auto gather = LoadConfigFile(WriteFile("gather.yaml", "device: {path: /d}\nnbd:\n  gather_us: 5000\n"));
  EXPECT_NE(gather.status().message().find("config nbd.gather_us: 5000 is outside 0..1000"), std::string::npos)
      << gather.status();
  EXPECT_NE(Parse({"--device=/d", "--export=noequals"}).status().message().find("NAME=BACKEND"), std::string::npos);
  EXPECT_NE(Parse({"--device=/d", "--export=a=/x:12Q"}).status().message().find("size"), std::string::npos);
}

TEST(ConfigTest, TheShippedExampleParses) {
  auto c = LoadConfigFile(std::string(std::getenv("TEST_SRCDIR")) + "/tmem/server/main/tmemd.example.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->device_path, "/var/lib/tmem/cache.img");
  EXPECT_EQ(c->device_size_bytes, 100ull << 30);
  EXPECT_EQ(c->listen, std::vector<std::string>{"0.0.0.0:7070"});
  auto checked = Parse({}, *c);
  EXPECT_TRUE(checked.ok()) << checked.status();
}

TEST(ConfigTest, DefaultsNeedOnlyADevice) {
  auto c = Parse({"--device=/d.img"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->metadata_dir, "/d.img.index");
  EXPECT_FALSE(c->segment_bytes_set);
  EXPECT_EQ(c->listen, std::vector<std::string>{"127.0.0.1:7070"});
}

TEST(ConfigTest, BadInputNamesTheCulprit) {
  auto unknown = LoadConfigFile(WriteFile("unknown.yaml", "device:\n  path: /x\n  colour: blue\n"));
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(unknown.status().message().find("device.colour"), std::string::npos) << unknown.status();
  auto size = LoadConfigFile(WriteFile("size.yaml", "device:\n  size: 10X\n"));
  EXPECT_NE(size.status().message().find("device.size"), std::string::npos) << size.status();
  auto broken = LoadConfigFile(WriteFile("broken.yaml", "listen: [unclosed\n"));
  EXPECT_EQ(broken.status().code(), absl::StatusCode::kInvalidArgument) << broken.status();
  EXPECT_EQ(LoadConfigFile("/nonexistent/tmemd.yaml").status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(Parse({}).status().message().find("no device"), std::string::npos);
  EXPECT_NE(Parse({"--device=/d", "--log-level=loud"}).status().message().find("loud"), std::string::npos);
  EXPECT_NE(Parse({"--device=/d", "--listen=localhost"}).status().message().find("no port"), std::string::npos);
  EXPECT_NE(Parse({"--device=/d", "--shutdown-timeout-ms=soon"}).status().message().find("shutdown-timeout-ms"),
            std::string::npos);
  EXPECT_FALSE(Parse({"--device=/d", "--colour=blue"}).ok());
  EXPECT_EQ(Parse({"--device=/d", "--index-cache-entries=0"})->index_cache_entries, 0u);
  EXPECT_NE(Parse({"--device=/d", "--index-cache-entries=99999999999"})
                .status()
                .message()
                .find("--index-cache-entries: 99999999999 is outside 0..4294967296"),
            std::string::npos);
  EXPECT_NE(Parse({"--device=/d", "--rpc-threads=0"}).status().message().find("--rpc-threads: 0 is outside 1..1024"),
            std::string::npos);
  EXPECT_NE(Parse({"--device=/d", "--rpc-threads=99999999999"}).status().message().find("is outside 1..1024"),
            std::string::npos);
}

TEST(ConfigTest, AFileOfAliasesOfAliasesIsRefusedInsteadOfWalkedForever) {
  // 40 levels of a mapping that names the previous one twice: 1 KB of YAML, 2^39 keys to walk
  // (config_fuzzer found LoadConfigFile hanging on such a file).
  std::string text = "l0: &l0 {}\n";
  for (int i = 1; i < 40; ++i) absl::StrAppend(&text, "l", i, ": &l", i, " {a: *l", i - 1, ", b: *l", i - 1, "}\n");
  const auto start = std::chrono::steady_clock::now();
  auto c = LoadConfigFile(WriteFile("aliases.yaml", text));
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << c.status();
  EXPECT_NE(c.status().message().find("alias"), std::string::npos) << c.status();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  // One list named by alias many times: each use counts.
  std::string list = "listen: &x [";
  for (int i = 0; i < 1000; ++i) absl::StrAppend(&list, i == 0 ? "" : ", ", "\"127.0.0.1:", i, "\"");
  list += "]\n";
  for (int i = 0; i < 100; ++i) list += "plaintext_listen: *x\n";
  c = LoadConfigFile(WriteFile("lists.yaml", list));
  EXPECT_NE(c.status().message().find("alias"), std::string::npos) << c.status();
  // Aliases used a few times are fine.
  auto fine = LoadConfigFile(WriteFile("fine.yaml", "device: {path: &p /dev/x}\nmetadata_dir: *p\n"));
  ASSERT_TRUE(fine.ok()) << fine.status();
  EXPECT_EQ(fine->metadata_dir, "/dev/x");
}

std::string ReadRunfile(const std::string& path) {
  std::ifstream in(std::string(std::getenv("TEST_SRCDIR")) + "/tmem/" + path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Every dotted key of a YAML mapping ("nbd.gather_us", "exports.cache.migrate_idle_ms").
void Keys(const YAML::Node& node, const std::string& prefix, std::set<std::string>& out) {
  for (const auto& kv : node) {
    const std::string key = prefix + kv.first.as<std::string>();
    if (kv.second.IsMap()) {
      Keys(kv.second, key + ".", out);
    } else if (kv.second.IsSequence() && kv.second.size() > 0 && kv.second[0].IsMap()) {
      for (const auto& item : kv.second) Keys(item, key + ".", out);
    } else {
      out.insert(key);
    }
  }
}

TEST(SettingsTableTest, TheShippedExampleConfigIsTheOneTheTableGenerates) {
  EXPECT_EQ(ReadRunfile("server/main/tmemd.example.yaml"), ExampleConfig())
      << "regenerate it: bazel-bin/server/main/tmemd --example-config > server/main/tmemd.example.yaml";
}

TEST(SettingsTableTest, TheExampleConfigListsEverySettingAndLoadsWithItsExportUncommented) {
  // Uncomment the example export, then every key of the tables must be there, and nothing else.
  std::string text;
  for (absl::string_view line : absl::StrSplit(ExampleConfig(), '\n')) {
    if (absl::StartsWith(line, "# exports:") || absl::StartsWith(line, "# tenants:") ||
        absl::StartsWith(line, "#   ") || absl::StartsWith(line, "#     ")) {
      line.remove_prefix(2);
    }
    absl::StrAppend(&text, line, "\n");
  }
  std::set<std::string> listed;
  Keys(YAML::Load(text), "", listed);
  std::set<std::string> want;
  for (const auto& s : ConfigSettings().settings()) want.insert(s.key);
  for (const auto& s : ExportSettings().settings()) want.insert("exports." + s.key);
  for (const auto& s : trust::TenantSettings().settings()) want.insert("tenants." + s.key);
  EXPECT_EQ(listed, want);
  auto loaded = LoadConfigFile(WriteFile("example-with-export.yaml", text));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_EQ(loaded->exports.size(), 1u);
  EXPECT_EQ(loaded->exports[0].cache.device, "/var/lib/tmem/disk0-cache.img");
  ASSERT_EQ(loaded->tenants.size(), 1u);
  EXPECT_EQ(loaded->tenants[0].name, "node-1");
  EXPECT_EQ(loaded->tls.cert, "/etc/tmem/tls/server.crt") << "the example uses TLS";
  EXPECT_TRUE(Parse({}, *loaded).ok()) << Parse({}, *loaded).status();
}

TEST(SettingsTableTest, HelpListsEveryFlagWithItsKeyAndRange) {
  const std::string help = HelpText();
  int flags = 0;
  for (const auto& s : ConfigSettings().settings()) {
    ASSERT_FALSE(s.flag.empty()) << s.key << " has no flag";
    EXPECT_NE(help.find("--" + s.flag + "="), std::string::npos) << s.flag;
    EXPECT_NE(help.find("[" + s.key + "]"), std::string::npos) << s.key;
    if (s.kind == settings::Kind::kInt) EXPECT_NE(help.find(s.Range()), std::string::npos) << s.key;
    EXPECT_TRUE(ValueFlags().count(s.flag)) << s.flag;
    ++flags;
  }
  for (const auto& s : ExportSettings().settings()) {
    if (s.flag.empty()) continue;
    EXPECT_NE(help.find("--" + s.flag + "="), std::string::npos) << s.flag;
    EXPECT_NE(help.find("[exports[]." + s.key + "]"), std::string::npos) << s.key;
    EXPECT_TRUE(ValueFlags().count(s.flag)) << s.flag;
    ++flags;
  }
  EXPECT_GE(flags, 28);  // 17 of the daemon and NBD server, 11 of the export cache
  for (const char* special : {"--config=", "--format", "--export=", "--export-cache="}) {
    EXPECT_NE(help.find(special), std::string::npos) << special;
  }
}

TEST(SettingsTableTest, TheSettingsPageIsTheOneTheTableGenerates) {
  const std::string page = ReadRunfile("docs/settings.md");
  EXPECT_EQ(page, SettingsMarkdown())
      << "regenerate it: bazel-bin/server/main/tmemd --settings-markdown > docs/settings.md";
  for (const auto& s : ExportSettings().settings())
    EXPECT_NE(page.find("`exports[]." + s.key + "`"), std::string::npos);
}

TEST(SettingsTableTest, EveryIntegerSettingIsRefusedJustOutsideItsRangeAndTakenAtItsEnds) {
  for (const auto& s : ConfigSettings().settings()) {
    if (s.kind != settings::Kind::kInt) continue;
    SCOPED_TRACE(s.key);
    Config c;
    EXPECT_FALSE(s.set(c, std::to_string(s.min - 1)).ok());
    EXPECT_FALSE(s.set(c, std::to_string(s.max + 1)).ok());
    EXPECT_TRUE(s.set(c, std::to_string(s.min)).ok());
    EXPECT_TRUE(s.set(c, std::to_string(s.max)).ok());
    EXPECT_EQ(s.show(c), std::to_string(s.max));
  }
}

}  // namespace
}  // namespace tmem::daemon
