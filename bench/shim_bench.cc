// The shim's data path on this machine, natively: the module's core logic (in-process, as in
// kshim/relay/fake_shim.h) -> ring -> Relay -> libtmemclient -> a tmemd process, and back.
//
//   shim_bench --server=127.0.0.1:PORT [--pages=20000] [--prefetch=32]
//
// Prints one line per measurement (key=value), for bench/run_shim_bench.sh:
//   put_pages_per_s     puts offered back to back (evictions), and how many the relay took
//   get_hit_us_random   one get at a time, random pages (no prefetch help): latency percentiles
//   get_hit_us_seq      one get at a time, a file read in order (prefetch helps)
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "client/tmem_client.h"
#include "common/flags.h"
#include "kshim/relay/fake_shim.h"
#include "kshim/relay/relay.h"

namespace {

using Clock = std::chrono::steady_clock;
using tmem::kshim::FakeShim;
using tmem::kshim::FileKey;

FileKey Inode(uint64_t ino) {
  FileKey k{};
  std::memcpy(k.data(), &ino, sizeof(ino));
  return k;
}

void Percentiles(const char* name, std::vector<double>& us) {
  std::sort(us.begin(), us.end());
  auto at = [&](double q) { return us[std::min(us.size() - 1, static_cast<size_t>(q * us.size()))]; };
  double sum = 0;
  for (double u : us) sum += u;
  std::printf("%s count=%zu mean=%.1f p50=%.1f p99=%.1f\n", name, us.size(), sum / us.size(), at(0.5), at(0.99));
}

}  // namespace

int main(int argc, char** argv) {
  auto flags = tmem::Flags::Parse(argc, argv, 1, {"server", "pages", "prefetch"}, {});
  if (!flags.ok()) {
    std::cerr << flags.status().message() << "\n";
    return 2;
  }
  auto server = flags->Require("server");
  auto pages = flags->GetUint("pages", 20000);
  auto prefetch = flags->GetUint("prefetch", 32);
  if (!server.ok() || !pages.ok() || !prefetch.ok() || *pages < 100) {
    std::cerr << "usage: shim_bench --server=HOST:PORT [--pages=N>=100] [--prefetch=N]\n";
    return 2;
  }
  tmem::client::ClientOptions co;
  co.servers = {*server};
  co.call_timeout_ms = 5000;
  auto client = tmem::client::TmemClient::Create(co);
  if (!client.ok()) {
    std::cerr << client.status() << "\n";
    return 1;
  }
  FakeShim shim(1024, 1024, 4096, 23);  // as tmem_shim.ko slots=1024 with its default filter
  tmem::kshim::RelayOptions ro;
  ro.tenant = "bench";
  ro.prefetch_pages = static_cast<int>(*prefetch);
  tmem::kshim::Relay relay(client->get(), ro);
  auto device = shim.Open();
  std::atomic<bool> stop{false};
  std::thread serve([&] { (void)relay.Serve(**device, stop); });

  tmem::kshim::PoolUuid uuid{};
  uuid[0] = 0xbe;
  uuid[1] = static_cast<uint8_t>(std::random_device{}());
  const int pool = shim.InitFs(uuid);
  std::vector<uint8_t> page(4096), out(4096);
  const uint64_t n = *pages;

  // Puts in bursts of a ring's worth, as evictions come, each burst taken whole before the next
  // (so that every page is in): the relay's rate of taking puts.
  const uint64_t burst = 512;
  while (shim.Counters().attaches == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  shim.WaitIdle(std::chrono::seconds(10));  // the pool's announcement answered
  const auto p0 = Clock::now();
  for (uint64_t i = 0; i < n; ++i) {
    std::memcpy(page.data(), &i, sizeof(i));
    shim.Put(pool, Inode(1 + i / 256), i % 256, page);
    if (i % burst == burst - 1 || i == n - 1) shim.WaitIdle(std::chrono::seconds(60));
  }
  const double put_s = std::chrono::duration<double>(Clock::now() - p0).count();
  const auto c = shim.Counters();
  std::printf("put_pages_per_s offered=%llu queued=%llu dropped=%llu queued_per_s=%.0f\n",
              static_cast<unsigned long long>(n), static_cast<unsigned long long>(c.puts_queued),
              static_cast<unsigned long long>(c.puts_dropped_full), c.puts_queued / put_s);
  if (c.puts_queued != n) {
    std::fprintf(stderr, "shim_bench: only %llu of %llu puts were taken (full %llu, unready %llu)\n",
                 static_cast<unsigned long long>(c.puts_queued), static_cast<unsigned long long>(n),
                 static_cast<unsigned long long>(c.puts_dropped_full),
                 static_cast<unsigned long long>(c.puts_dropped_detached));
    stop = true;
    serve.join();
    return 1;
  }

  // Random single gets (all hits): no page follows the one before, so nothing is fetched ahead.
  std::vector<uint64_t> order(n);
  for (uint64_t i = 0; i < n; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), std::mt19937_64(7));
  std::vector<double> us;
  uint64_t hits = 0;
  for (uint64_t k = 0; k < std::min<uint64_t>(n, 5000); ++k) {
    const uint64_t i = order[k];
    const auto t0 = Clock::now();
    hits += shim.Get(pool, Inode(1 + i / 256), i % 256, out);
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  std::printf("random_hits=%llu\n", static_cast<unsigned long long>(hits));
  Percentiles("get_hit_us_random", us);

  // The same gets straight through libtmemclient (what the shim adds is the difference).
  auto direct = client->get()->CreateSharedPool(uuid, 4096, "bench");
  us.clear();
  hits = 0;
  for (uint64_t k = 0; direct.ok() && k < std::min<uint64_t>(n, 5000); ++k) {
    const uint64_t i = order[k];
    const std::string object = tmem::kshim::ObjectKey(Inode(1 + i / 256));  // as the relay names it
    const auto t0 = Clock::now();
    auto got = client->get()->Get(*direct, object, i % 256, out);
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    hits += got.ok() && *got;
  }
  std::printf("client_random_hits=%llu\n", static_cast<unsigned long long>(hits));
  if (!us.empty()) Percentiles("client_get_hit_us_random", us);

  // A file read in order, one page at a time (as readahead asks cleancache).
  us.clear();
  hits = 0;
  const auto s0 = Clock::now();
  for (uint64_t i = 0; i < n; ++i) {
    const auto t0 = Clock::now();
    hits += shim.Get(pool, Inode(1 + i / 256), i % 256, out);
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  const double seq_s = std::chrono::duration<double>(Clock::now() - s0).count();
  std::printf("seq_hits=%llu seq_mib_per_s=%.1f prefetch_hits=%llu\n", static_cast<unsigned long long>(hits),
              n * 4096.0 / (1 << 20) / seq_s, static_cast<unsigned long long>(relay.counters().prefetch_hits.load()));
  Percentiles("get_hit_us_seq", us);
  stop = true;
  serve.join();
  return 0;
}
