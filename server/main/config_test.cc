#include "server/main/config.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

namespace tmem::daemon {
namespace {

std::string WriteFile(const std::string& name, const std::string& text) {
  std::string path = std::string(std::getenv("TEST_TMPDIR")) + "/" + name;
  std::ofstream(path) << text;
  return path;
}

absl::StatusOr<Config> Parse(std::vector<const char*> args, Config base = {}) {
  args.insert(args.begin(), "tmemd");
  auto flags = Flags::Parse(static_cast<int>(args.size()), const_cast<char**>(args.data()), 1, ValueFlags(), BoolFlags());
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
)"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->device_path, "/data/cache.img");
  EXPECT_EQ(c->device_size_bytes, 10ull << 30);
  EXPECT_EQ(c->segment_bytes, 2u << 20);
  EXPECT_TRUE(c->segment_bytes_set);
  EXPECT_EQ(c->listen, (std::vector<std::string>{"0.0.0.0:7070", "[::]:7071"}));
  EXPECT_EQ(c->shutdown_timeout_ms, 2500);
  EXPECT_EQ(c->rpc_threads, 32);
  auto merged = Parse({"--listen=127.0.0.1:1", "--log-level", "debug", "--format"}, *c);
  ASSERT_TRUE(merged.ok()) << merged.status();
  EXPECT_EQ(merged->listen, std::vector<std::string>{"127.0.0.1:1"});
  EXPECT_EQ(merged->log_level, "debug");
  EXPECT_EQ(merged->metadata_dir, "/data/index");
  EXPECT_TRUE(merged->format);
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
  EXPECT_NE(Parse({"--device=/d", "--rpc-threads=0"}).status().message().find("rpc threads: 0"), std::string::npos);
  EXPECT_NE(Parse({"--device=/d", "--rpc-threads=99999999999"}).status().message().find("want 1 to 1024"),
            std::string::npos);
}

}  // namespace
}  // namespace tmem::daemon
