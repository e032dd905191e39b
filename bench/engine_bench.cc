// Page pool engine benchmark, in-process on a real O_DIRECT device file.
// Prints one "key value" per line; bench/run_engine_bench.sh runs it beside fio and prints the
// ratios. Phases:
//   fill     2 writer threads put --fill_pages 4 KiB pages into a shared pool on a fresh device;
//            RSS is sampled at --rss_at_pages (default 1M) and at the end
//   get      --readers threads get random pages of the filled set for --seconds
//   steady   a second, smaller device (--steady_gib) is written for --seconds by 2 writers, several
//            times its capacity, so puts run with reclaim
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/crc32c.h"
#include "server/io/file_device.h"
#include "server/log/segment_log.h"
#include "server/pool/pool_engine.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Flags {
  std::string dir = "/var/tmp/tmem-bench";
  uint64_t device_gib = 17;
  uint64_t fill_pages = 4 << 20;
  uint64_t rss_at_pages = 1 << 20;
  // The DRAM tier is off unless asked for: RAM per cached page is measured without it (its bytes
  // are a setting, counted apart).
  uint64_t ram_cache_mb = 0;
  int64_t index_write_behind = -1;   // -1: the engine's default
  int64_t index_cache_entries = -1;  // -1: the engine's default
  int index_write_back = -1;         // -1: the engine's default; 0 or 1
  int readers = 32;
  int writers = 2;
  double seconds = 15;
  uint64_t steady_gib = 4;
  std::string engine = "pread";
  // sequential: each writer puts consecutive page indexes of its own object (a file evicted in
  // order); random: indexes scattered over the object (no locality for the index).
  bool random_order = false;
  // Pages per PutMany call (1: Put), as a network client's batches arrive.
  int put_batch = 1;
};

// The page index the i-th put of a writer uses.
uint64_t IndexFor(bool random_order, uint64_t i) { return random_order ? (i * 0x9E3779B97F4A7C15ull) >> 20 : i; }

uint64_t ReadStatusKb(const char* field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(field, 0) == 0) return std::stoull(line.substr(std::strlen(field) + 1));
  }
  return 0;
}

// CPU seconds (user + system) of the whole process, every thread included.
double CpuSeconds() {
  rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

void Die(const absl::Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, s.ToString().c_str());
    std::exit(1);
  }
}

std::unique_ptr<tmem::io::FileDevice> MakeDevice(const Flags& f, const std::string& name, uint64_t gib) {
  const std::string path = f.dir + "/" + name;
  std::filesystem::remove(path);
  auto engine = tmem::io::ParseIoEngine(f.engine);
  Die(engine.status(), "engine");
  auto dev = tmem::io::FileDevice::Open({.path = path, .create_size_bytes = gib << 30, .engine = *engine});
  Die(dev.status(), "open device");
  Die(tmem::log::FormatLog(dev->get(), {}), "format");
  return std::move(*dev);
}

uint64_t g_ram_cache_mb = 0;
int64_t g_index_write_behind = -1;
int64_t g_index_cache_entries = -1;
int g_index_write_back = -1;

std::unique_ptr<tmem::pool::PoolEngine> OpenEngine(tmem::io::BlockDevice* dev, const std::string& meta) {
  std::filesystem::remove_all(meta);
  tmem::pool::EngineOptions o;
  o.ram_cache_bytes = g_ram_cache_mb << 20;
  if (g_index_write_behind >= 0) o.index_write_behind = static_cast<size_t>(g_index_write_behind);
  if (g_index_cache_entries >= 0) o.index_cache_entries = static_cast<size_t>(g_index_cache_entries);
  if (g_index_write_back >= 0) o.index_write_back = g_index_write_back != 0;
  o.device = dev;
  o.metadata_dir = meta;
  auto e = tmem::pool::PoolEngine::Open(o);
  Die(e.status(), "open engine");
  return std::move(*e);
}

// Puts pages [begin, end) of object "w<thread>" split across `writers` threads.
bool g_random_order = false;
int g_put_batch = 1;

double PutRange(tmem::pool::PoolEngine& e, tmem::pool::PoolId pool, uint64_t begin, uint64_t end, int writers) {
  auto t0 = Clock::now();
  std::vector<std::thread> threads;
  for (int w = 0; w < writers; ++w) {
    threads.emplace_back([&, w] {
      std::vector<std::vector<uint8_t>> pages(g_put_batch, std::vector<uint8_t>(4096));
      std::mt19937_64 rng(w);
      for (auto& page : pages) {
        for (auto& b : page) b = static_cast<uint8_t>(rng());
      }
      const std::string obj = "w" + std::to_string(w);
      std::vector<tmem::pool::PoolEngine::PagePut> batch;
      for (uint64_t i = begin + w; i < end; i += writers) {
        std::vector<uint8_t>& page = pages[batch.size()];
        std::memcpy(page.data(), &i, 8);
        if (g_put_batch == 1) {
          Die(e.Put(pool, obj, IndexFor(g_random_order, i), page), "put");
          continue;
        }
        batch.push_back({obj, IndexFor(g_random_order, i), page});
        if (batch.size() == static_cast<size_t>(g_put_batch) || i + writers >= end) {
          Die(e.PutMany(pool, batch), "put");
          batch.clear();
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  Die(e.segment_log().FlushAll(), "flush");
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&](const char* name) -> const char* {
      std::string p = std::string("--") + name + "=";
      return a.rfind(p, 0) == 0 ? argv[i] + p.size() : nullptr;
    };
    if (auto v = val("dir"))
      f.dir = v;
    else if (auto v = val("device_gib"))
      f.device_gib = std::stoull(v);
    else if (auto v = val("fill_pages"))
      f.fill_pages = std::stoull(v);
    else if (auto v = val("rss_at_pages"))
      f.rss_at_pages = std::stoull(v);
    else if (auto v = val("readers"))
      f.readers = std::stoi(v);
    else if (auto v = val("writers"))
      f.writers = std::stoi(v);
    else if (auto v = val("seconds"))
      f.seconds = std::stod(v);
    else if (auto v = val("steady_gib"))
      f.steady_gib = std::stoull(v);
    else if (auto v = val("io_engine"))
      f.engine = v;
    else if (auto v = val("put_order"))
      f.random_order = std::string(v) == "random";
    else if (auto v = val("ram_cache_mb"))
      f.ram_cache_mb = std::stoull(v);
    else if (auto v = val("index_cache_entries"))
      f.index_cache_entries = std::stoll(v);
    else if (auto v = val("index_write_behind"))
      f.index_write_behind = std::stoll(v);
    else if (auto v = val("index_write_back"))
      f.index_write_back = std::stoi(v);
    else if (auto v = val("put_batch"))
      f.put_batch = std::max(1, std::stoi(v));
    else {
      std::fprintf(stderr, "unknown flag %s\n", argv[i]);
      return 2;
    }
  }
  std::filesystem::create_directories(f.dir);
  g_random_order = f.random_order;
  g_put_batch = f.put_batch;
  g_ram_cache_mb = f.ram_cache_mb;
  g_index_write_behind = f.index_write_behind;
  g_index_cache_entries = f.index_cache_entries;
  g_index_write_back = f.index_write_back;
  std::printf("put_order %s\n", f.random_order ? "random" : "sequential");
  std::printf("put_batch %d\n", f.put_batch);
  std::printf("crc32c_hardware %d\n", tmem::crc32c::HardwareAccelerated() ? 1 : 0);
  std::printf("io_engine %s\n", f.engine.c_str());
  std::printf("ram_cache_mb %lu\n", f.ram_cache_mb);
  std::printf("index_write_behind %ld\n", f.index_write_behind);
  std::printf("index_cache_entries %ld\n", f.index_cache_entries);
  std::printf("index_write_back %d\n", f.index_write_back);

  // --- fill + RSS ---
  uint64_t rss_first = 0, rss_first_anon = 0, rss_end = 0, rss_end_anon = 0;
  {
    auto dev = MakeDevice(f, "engine.dev", f.device_gib);
    auto engine = OpenEngine(dev.get(), f.dir + "/engine.meta");
    tmem::pool::Uuid uuid{};
    uuid[0] = 1;
    auto pool = engine->CreateSharedPool(uuid, 4096);
    Die(pool.status(), "pool");
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    const uint64_t rss0 = ReadStatusKb("VmRSS:"), anon0 = ReadStatusKb("RssAnon:");
    const uint64_t first = std::min(f.rss_at_pages, f.fill_pages);
    const double cpu0 = CpuSeconds();
    double t1 = PutRange(*engine, *pool, 0, first, f.writers);
    std::this_thread::sleep_for(std::chrono::seconds(2));  // let RocksDB finish its flushes
    rss_first = ReadStatusKb("VmRSS:") - rss0;
    rss_first_anon = ReadStatusKb("RssAnon:") - anon0;
    double t2 = PutRange(*engine, *pool, first, f.fill_pages, f.writers);
    const double fill_cpu = CpuSeconds() - cpu0;  // includes RocksDB work during the 2 s pause
    std::this_thread::sleep_for(std::chrono::seconds(2));
    rss_end = ReadStatusKb("VmRSS:") - rss0;
    rss_end_anon = ReadStatusKb("RssAnon:") - anon0;
    const auto& lc = engine->segment_log().counters();
    std::printf("fill_pages %lu\n", f.fill_pages);
    std::printf("fill_put_mb_per_s %.1f\n", f.fill_pages * 4096.0 / (t1 + t2) / 1e6);
    std::printf("fill_put_pages_per_s %.0f\n", f.fill_pages / (t1 + t2));
    std::printf("fill_cpu_us_per_put %.2f\n", fill_cpu * 1e6 / double(f.fill_pages));
    std::printf("rss_bytes_per_page_at_%lu %.1f\n", first, rss_first * 1024.0 / first);
    std::printf("rss_anon_bytes_per_page_at_%lu %.1f\n", first, rss_first_anon * 1024.0 / first);
    std::printf("rss_bytes_per_page_at_%lu %.1f\n", f.fill_pages, rss_end * 1024.0 / f.fill_pages);
    std::printf("rss_anon_bytes_per_page_at_%lu %.1f\n", f.fill_pages, rss_end_anon * 1024.0 / f.fill_pages);
    if (f.fill_pages > first) {
      // What each page past the first sample added: the per-page cost without the fixed share
      // (write buffers, memtables and caches filled by then).
      std::printf("rss_bytes_per_added_page_%lu_to_%lu %.1f\n", first, f.fill_pages,
                  (double(rss_end) - double(rss_first)) * 1024.0 / double(f.fill_pages - first));
    }
    std::printf("write_amplification %.4f\n", double(lc.bytes_written.load()) / double(lc.appended_bytes.load()));
    std::printf("segments_reclaimed_during_fill %lu\n", lc.segments_reclaimed.load());

    // --- get ---
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> hits{0}, misses{0};
    std::vector<std::thread> readers;
    for (int r = 0; r < f.readers; ++r) {
      readers.emplace_back([&, r] {
        std::vector<uint8_t> out(4096);
        std::mt19937_64 rng(1000 + r);
        uint64_t h = 0, m = 0;
        while (!stop.load(std::memory_order_relaxed)) {
          uint64_t i = rng() % f.fill_pages;
          const std::string obj = "w" + std::to_string(i % f.writers);
          auto res = engine->Get(*pool, obj, IndexFor(f.random_order, i), out);
          if (!res.ok()) Die(res.status(), "get");
          if (*res == tmem::pool::GetOutcome::kHit) {
            uint64_t tag;
            std::memcpy(&tag, out.data(), 8);
            if (tag != i) Die(absl::DataLossError("wrong page"), "get");
            ++h;
          } else {
            ++m;
          }
        }
        hits += h;
        misses += m;
      });
    }
    auto g0 = Clock::now();
    std::this_thread::sleep_for(std::chrono::duration<double>(f.seconds));
    stop = true;
    for (auto& t : readers) t.join();
    double gs = std::chrono::duration<double>(Clock::now() - g0).count();
    std::printf("get_readers %d\n", f.readers);
    std::printf("get_hits_per_s %.0f\n", hits / gs);
    std::printf("get_hit_ratio %.4f\n", double(hits) / double(hits + misses));
    Die(engine->Close(), "close");
  }
  std::filesystem::remove(f.dir + "/engine.dev");
  std::filesystem::remove_all(f.dir + "/engine.meta");

  // --- steady state with reclaim ---
  {
    auto dev = MakeDevice(f, "steady.dev", f.steady_gib);
    auto engine = OpenEngine(dev.get(), f.dir + "/steady.meta");
    auto pool = engine->CreatePool(4096);
    Die(pool.status(), "pool");
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> puts{0};
    std::vector<std::thread> writers;
    for (int w = 0; w < f.writers; ++w) {
      writers.emplace_back([&, w] {
        std::vector<uint8_t> page(4096, static_cast<uint8_t>(w));
        const std::string obj = "s" + std::to_string(w);
        uint64_t n = 0;
        while (!stop.load(std::memory_order_relaxed)) {
          std::memcpy(page.data(), &n, 8);
          Die(engine->Put(*pool, obj, IndexFor(f.random_order, n), page), "put");
          ++n;
        }
        puts += n;
      });
    }
    auto s0 = Clock::now();
    const double cpu0 = CpuSeconds();
    std::this_thread::sleep_for(std::chrono::duration<double>(f.seconds));
    stop = true;
    for (auto& t : writers) t.join();
    Die(engine->segment_log().FlushAll(), "flush");
    double ss = std::chrono::duration<double>(Clock::now() - s0).count();
    std::printf("steady_cpu_us_per_put %.2f\n", (CpuSeconds() - cpu0) * 1e6 / double(puts.load()));
    const auto& lc = engine->segment_log().counters();
    const double capacity =
        double(engine->segment_log().geometry().segment_count) * engine->segment_log().geometry().segment_bytes;
    std::printf("steady_put_mb_per_s %.1f\n", puts * 4096.0 / ss / 1e6);
    std::printf("steady_device_capacities_written %.2f\n", lc.bytes_written.load() / capacity);
    std::printf("steady_segments_reclaimed %lu\n", lc.segments_reclaimed.load());
    std::printf("steady_append_waits %lu\n", lc.append_waits.load());
    std::printf("steady_write_amplification %.4f\n",
                double(lc.bytes_written.load()) / double(lc.appended_bytes.load()));
    Die(engine->Close(), "close");
  }
  std::filesystem::remove(f.dir + "/steady.dev");
  std::filesystem::remove_all(f.dir + "/steady.meta");
  return 0;
}
