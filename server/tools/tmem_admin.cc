// tmem-admin: local operations on a tmem cache device.
//   tmem-admin format  --device=PATH [--size=SIZE] [--segment-size=1M] [--metadata-dir=DIR] [--force]
//   tmem-admin inspect --device=PATH
//   tmem-admin demo    --device=PATH --metadata-dir=DIR
// Exit status: 0 success, 1 operation failed, 2 bad command line.
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "common/flags.h"
#include "common/logging.h"
#include "common/stats.h"
#include "server/io/device_lock.h"
#include "server/io/file_device.h"
#include "server/log/segment_log.h"
#include "server/pool/pool_engine.h"

namespace tmem {
namespace {

constexpr char kUsage[] =
    "usage:\n"
    "  tmem-admin format  --device=PATH [--size=SIZE] [--segment-size=1M] [--metadata-dir=DIR] [--force]\n"
    "      Writes a new tmem log on PATH (a block device, or a file created with --size).\n"
    "      Refuses a device that holds a tmem log or other data unless --force. With\n"
    "      --metadata-dir, also empties that page-index directory, which belonged to the old log.\n"
    "  tmem-admin inspect --device=PATH\n"
    "      Prints the superblock and the newest checkpoint; changes nothing.\n"
    "  tmem-admin demo    --device=PATH --metadata-dir=DIR\n"
    "      Runs the page pool engine on PATH: private and shared pools, puts, gets, flushes and\n"
    "      a clean restart, then prints the engine's statistics.\n";

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "tmem-admin: %s\n", std::string(s.message()).c_str());
  return 1;
}

int Usage(const std::string& why) {
  std::fprintf(stderr, "tmem-admin: %s\n%s", why.c_str(), kUsage);
  return 2;
}

std::string Uuid(const uint8_t (&u)[16]) {
  return absl::StrFormat("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2], u[3],
                         u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
}

int Format(const Flags& flags) {
  auto device = flags.Require("device");
  if (!device.ok()) return Usage(std::string(device.status().message()));
  auto size = flags.GetSize("size", 0);
  auto segment = flags.GetSize("segment-size", 1 << 20);
  if (!size.ok()) return Usage(std::string(size.status().message()));
  if (!segment.ok()) return Usage(std::string(segment.status().message()));
  if (*segment > UINT32_MAX) return Usage("--segment-size is too large");
  auto dev = io::FileDevice::Open({.path = *device, .create_size_bytes = *size});
  if (!dev.ok()) return Fail(dev.status());
  // Never a device a running tmemd holds (nor its metadata directory).
  auto held = io::DeviceLock::Acquire(*device, "device");
  if (!held.ok()) return Fail(held.status());
  std::optional<io::DeviceLock> held_dir;
  if (flags.Has("metadata-dir") && std::filesystem::exists(flags.Get("metadata-dir"))) {
    auto d = io::DeviceLock::Acquire(flags.Get("metadata-dir"), "metadata directory");
    if (!d.ok()) return Fail(d.status());
    held_dir = std::move(*d);
  }
  absl::Status s =
      log::FormatLog(dev->get(), {.segment_bytes = static_cast<uint32_t>(*segment), .force = flags.Has("force")});
  if (!s.ok()) return Fail(s);
  if (flags.Has("metadata-dir")) {
    std::error_code ec;
    std::filesystem::remove_all(flags.Get("metadata-dir"), ec);
    if (ec) return Fail(absl::InternalError("cannot empty " + flags.Get("metadata-dir") + ": " + ec.message()));
  }
  auto g = log::ReadLogGeometry(dev->get());
  if (!g.ok()) return Fail(g.status());
  std::printf("formatted %s: %lu segments of %u bytes (%.1f GiB of cache), uuid %s\n", device->c_str(),
              g->segment_count, g->segment_bytes, g->segment_count * double(g->segment_bytes) / (1 << 30),
              Uuid(g->device_uuid).c_str());
  return 0;
}

int Inspect(const Flags& flags) {
  auto device = flags.Require("device");
  if (!device.ok()) return Usage(std::string(device.status().message()));
  auto dev = io::FileDevice::Open({.path = *device});
  if (!dev.ok()) return Fail(dev.status());
  auto g = log::ReadLogGeometry(dev->get());
  if (!g.ok()) return Fail(g.status());
  auto cp = log::ReadLogCheckpoint(dev->get());
  if (!cp.ok()) return Fail(cp.status());
  std::printf("device          %s\n", device->c_str());
  std::printf("format version  %u\n", g->format_version);
  std::printf("uuid            %s\n", Uuid(g->device_uuid).c_str());
  std::printf("segments        %lu x %u bytes\n", g->segment_count, g->segment_bytes);
  std::printf("last instance   %lu (%s)\n", cp->instance,
              cp->clean ? "stopped cleanly" : "running, or stopped uncleanly");
  std::printf("head seq        %lu\n", cp->head_seq);
  std::printf("reclaimed seq   %lu\n", cp->reclaimed_seq);
  std::printf("seq lease       %lu\n", cp->seq_lease);
  return 0;
}

class PrintVisitor : public StatsVisitor {
 public:
  void Counter(std::string_view name, std::string_view, uint64_t value, const StatLabels& labels) override {
    Print(name, static_cast<double>(value), labels);
  }
  void Gauge(std::string_view name, std::string_view, double value, const StatLabels& labels) override {
    Print(name, value, labels);
  }

 private:
  static void Print(std::string_view name, double value, const StatLabels& labels) {
    std::string l;
    for (const auto& [k, v] : labels) l += (l.empty() ? "{" : ",") + k + "=" + v;
    if (!l.empty()) l += "}";
    std::printf("  %-50s %.0f\n", (std::string(name) + l).c_str(), value);
  }
};

std::vector<uint8_t> DemoPage(uint32_t bytes, const std::string& text) {
  std::vector<uint8_t> page(bytes, 0);
  std::memcpy(page.data(), text.data(), std::min<size_t>(text.size(), bytes));
  return page;
}

const char* Outcome(const absl::StatusOr<pool::GetOutcome>& r) {
  if (!r.ok()) return "error";
  return *r == pool::GetOutcome::kHit ? "hit" : "miss";
}

int Demo(const Flags& flags) {
  auto device = flags.Require("device");
  auto meta = flags.Require("metadata-dir");
  if (!device.ok()) return Usage(std::string(device.status().message()));
  if (!meta.ok()) return Usage(std::string(meta.status().message()));
  auto dev = io::FileDevice::Open({.path = *device});
  if (!dev.ok()) return Fail(dev.status());
  pool::EngineOptions o;
  o.device = dev->get();
  o.metadata_dir = *meta;
  auto engine = pool::PoolEngine::Open(o);
  if (!engine.ok()) return Fail(engine.status());
  pool::PoolEngine* e = engine->get();
  std::printf("engine open: instance %lu, %s\n", e->instance_id(),
              e->kept_pages_from_previous_run() ? "pages kept from the previous run" : "no pages from before");

  auto priv = e->CreatePool(4096);
  pool::Uuid uuid{};
  for (int i = 0; i < 16; ++i) uuid[i] = static_cast<uint8_t>(0xA0 + i);
  auto shared = e->CreateSharedPool(uuid, 4096, "demo");
  if (!priv.ok()) return Fail(priv.status());
  if (!shared.ok()) return Fail(shared.status());
  std::printf("private pool %u, shared pool %u (the same id on every run for this UUID)\n", *priv, *shared);

  std::vector<uint8_t> out(4096);
  for (uint64_t i = 0; i < 8; ++i) {
    auto st = e->Put(*priv, "inode-42", i, DemoPage(4096, "private page " + std::to_string(i)));
    if (st.ok()) st = e->Put(*shared, "inode-7", i, DemoPage(4096, "shared page " + std::to_string(i)));
    if (!st.ok()) return Fail(st);
  }
  std::printf("put 8 pages into each pool\n");
  auto r1 = e->Get(*priv, "inode-42", 3, out);
  std::printf("private get inode-42/3: %s (\"%s\")\n", Outcome(r1), reinterpret_cast<char*>(out.data()));
  std::printf("private get inode-42/3 again: %s (a private hit removes the page)\n",
              Outcome(e->Get(*priv, "inode-42", 3, out)));
  auto r2 = e->Get(*shared, "inode-7", 3, out);
  std::printf("shared get inode-7/3: %s (\"%s\")\n", Outcome(r2), reinterpret_cast<char*>(out.data()));
  std::printf("shared get inode-7/3 again: %s (shared pages stay)\n", Outcome(e->Get(*shared, "inode-7", 3, out)));
  if (auto st = e->FlushPage(*shared, "inode-7", 4); !st.ok()) return Fail(st);
  std::printf("flush_page inode-7/4, then get: %s\n", Outcome(e->Get(*shared, "inode-7", 4, out)));
  if (auto st = e->FlushObject(*priv, "inode-42"); !st.ok()) return Fail(st);
  std::printf("flush_object inode-42, then get inode-42/5: %s\n", Outcome(e->Get(*priv, "inode-42", 5, out)));
  std::vector<uint8_t> wrong(512);
  auto bad = e->Put(*shared, "inode-7", 0, wrong);
  std::printf("put of a 512-byte page into a 4096-byte pool: %s\n", bad.ToString().c_str());

  const uint64_t instance = e->instance_id();
  if (auto st = e->Close(); !st.ok()) return Fail(st);
  engine->reset();
  std::printf("closed cleanly; reopening\n");
  engine = pool::PoolEngine::Open(o);
  if (!engine.ok()) return Fail(engine.status());
  e = engine->get();
  std::printf("engine open: instance %lu (was %lu), %s\n", e->instance_id(), instance,
              e->kept_pages_from_previous_run() ? "pages kept (warm restart)" : "no pages kept");
  auto r3 = e->Get(*shared, "inode-7", 6, out);
  std::printf("shared get inode-7/6 after restart: %s (\"%s\")\n", Outcome(r3), reinterpret_cast<char*>(out.data()));
  std::printf("shared get inode-7/4 after restart: %s (flushes are not lost)\n",
              Outcome(e->Get(*shared, "inode-7", 4, out)));
  if (auto st = e->DestroyPool(*priv); !st.ok()) return Fail(st);
  std::printf("destroyed private pool %u; get from it: %s\n", *priv,
              e->Get(*priv, "inode-42", 0, out).status().ToString().c_str());
  std::printf("statistics:\n");
  PrintVisitor v;
  e->VisitStats(v);
  if (auto st = e->Close(); !st.ok()) return Fail(st);
  return 0;
}

int Main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "help") == 0) {
    std::printf("%s", kUsage);
    return argc < 2 ? 2 : 0;
  }
  const std::string command = argv[1];
  auto flags = Flags::Parse(argc, argv, 2, {"device", "size", "segment-size", "metadata-dir"}, {"force"});
  if (!flags.ok()) return Usage(std::string(flags.status().message()));
  if (!flags->positional().empty()) return Usage("unexpected argument '" + flags->positional()[0] + "'");
  if (command == "format") return Format(*flags);
  if (command == "inspect") return Inspect(*flags);
  if (command == "demo") return Demo(*flags);
  return Usage("unknown command '" + command + "'");
}

}  // namespace
}  // namespace tmem

int main(int argc, char** argv) { return tmem::Main(argc, argv); }
