// Compares FileDevice's two I/O engines on the log's two access patterns:
//   4 KiB random reads from --readers threads (gets) and 1 MiB sequential writes from
//   --writers threads (segment flushes). Prints "<engine>_<pattern> <value>" lines.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "server/io/file_device.h"

namespace {

void Die(const absl::Status& s) {
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    std::exit(1);
  }
}

template <typename Fn>
double RunFor(int threads, double seconds, Fn fn) {
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> ops{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      uint64_t n = 0;
      std::mt19937_64 rng(t);
      while (!stop.load(std::memory_order_relaxed)) {
        fn(t, rng, n);
        ++n;
      }
      ops += n;
    });
  }
  auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : ts) t.join();
  return ops / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = argc > 1 ? argv[1] : "/var/tmp/tmem-bench";
  double seconds = argc > 2 ? std::stod(argv[2]) : 5;
  const int readers = 32, writers = 2;
  const uint64_t size = 4ull << 30;
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/io_engine.dev";
  std::filesystem::remove(path);
  {
    // Lay the file out so that reads hit allocated blocks.
    auto dev = tmem::io::FileDevice::Open({.path = path, .create_size_bytes = size});
    Die(dev.status());
    tmem::io::AlignedBuffer b(1 << 20);
    for (uint64_t off = 0; off < size; off += b.size()) Die((*dev)->Write(off, b.data(), b.size()));
    Die((*dev)->Sync());
  }
  for (auto engine : {tmem::io::IoEngine::kPread, tmem::io::IoEngine::kUring}) {
    auto dev = tmem::io::FileDevice::Open({.path = path, .engine = engine});
    Die(dev.status());
    tmem::io::FileDevice* d = dev->get();
    double iops = RunFor(readers, seconds, [&](int, std::mt19937_64& rng, uint64_t) {
      thread_local tmem::io::AlignedBuffer buf(4096);
      Die(d->Read((rng() % (size / 4096)) * 4096, buf.data(), 4096));
    });
    double wps = RunFor(writers, seconds, [&](int t, std::mt19937_64&, uint64_t n) {
      thread_local tmem::io::AlignedBuffer buf(1 << 20);
      const uint64_t slots = size / (1 << 20) / writers;
      Die(d->Write(((n % slots) * writers + t) * (1 << 20), buf.data(), 1 << 20));
    });
    std::printf("%s_randread_4k_iops %.0f\n", tmem::io::IoEngineName(engine), iops);
    std::printf("%s_seqwrite_1m_mb_per_s %.1f\n", tmem::io::IoEngineName(engine), wps * 1.048576);
  }
  std::filesystem::remove(path);
  return 0;
}
