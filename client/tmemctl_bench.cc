#include "client/tmemctl_bench.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <span>
#include <thread>

#include "client/tmem_client.h"

namespace tmem::ctl {
namespace {

using Clock = std::chrono::steady_clock;

// Page `i` of the benchmark: its number in every 8-byte word, so that any page can be checked.
void FillPage(uint64_t i, std::span<uint8_t> page) {
  for (size_t k = 0; k + 8 <= page.size(); k += 8) std::memcpy(page.data() + k, &i, 8);
}

bool IsPage(uint64_t i, std::span<const uint8_t> page) {
  for (size_t k = 0; k + 8 <= page.size(); k += 8) {
    uint64_t w;
    std::memcpy(&w, page.data() + k, 8);
    if (w != i) return false;
  }
  return true;
}

std::string ObjectOf(uint64_t i) { return "bench-" + std::to_string(i / 1024); }

template <typename Fn>
double Parallel(int threads, Fn fn) {
  const auto t0 = Clock::now();
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) ts.emplace_back([&, t] { fn(t); });
  for (auto& t : ts) t.join();
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double Quantile(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(v.size() * q))];
}

}  // namespace

int RunBench(const BenchOptions& o) {
  client::ClientOptions co;
  co.servers = o.servers;
  co.call_timeout_ms = o.timeout_ms;
  co.tls = o.tls;
  co.streams_per_server = std::clamp(o.threads, 1, 64);
  co.transport = o.transport;
  auto c = client::TmemClient::Create(co);
  if (!c.ok()) {
    std::fprintf(stderr, "tmemctl: %s\n", std::string(c.status().message()).c_str());
    return 2;
  }
  client::TmemClient& tc = **c;
  std::array<uint8_t, 16> uuid;
  std::random_device rd;
  for (auto& b : uuid) b = static_cast<uint8_t>(rd());
  auto pool = tc.CreateSharedPool(uuid, o.page_bytes);
  if (!pool.ok()) {
    std::fprintf(stderr, "tmemctl: bench: cannot create a pool: %s\n", std::string(pool.status().message()).c_str());
    return 1;
  }
  std::printf("servers %zu, threads %d, batch %d, %lu pages of %u bytes\n", o.servers.size(), o.threads, o.batch,
              o.pages, o.page_bytes);
  std::fflush(stdout);
  const uint64_t per_thread = o.pages / o.threads;
  const uint64_t total = per_thread * o.threads;
  if (total == 0) {
    std::fprintf(stderr, "tmemctl: bench: --pages must be at least --threads\n");
    return 2;
  }
  std::atomic<bool> wrong{false};

  // Puts, batched; timed until every put is answered (PutPages returns once a put is sent).
  const auto put_t0 = std::chrono::steady_clock::now();
  Parallel(o.threads, [&](int t) {
    std::vector<std::vector<uint8_t>> pages(o.batch, std::vector<uint8_t>(o.page_bytes));
    std::vector<std::string> objects(o.batch);
    std::vector<client::TmemClient::PagePut> batch;
    for (uint64_t i = t * per_thread; i < (t + 1) * per_thread;) {
      batch.clear();
      for (int b = 0; b < o.batch && i < (t + 1) * per_thread; ++b, ++i) {
        FillPage(i, pages[b]);
        objects[b] = ObjectOf(i);
        batch.push_back({objects[b], i, pages[b]});
      }
      (void)tc.PutPages(*pool, batch);
    }
  });
  tc.WaitForPuts();
  const double put_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - put_t0).count();
  const uint64_t dropped = tc.counters().puts_dropped.load();
  std::printf("put         %10.0f pages/s  %8.1f MiB/s  (%lu of %lu dropped)\n", total / put_s,
              total / put_s * o.page_bytes / (1 << 20), dropped, total);
  std::fflush(stdout);

  // Random gets, batched, for a fixed time.
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> hits{0}, misses{0};
  std::thread timer([&] {
    std::this_thread::sleep_for(std::chrono::duration<double>(o.seconds));
    stop = true;
  });
  const double get_s = Parallel(o.threads, [&](int t) {
    std::mt19937_64 rng(t + 1);
    std::vector<std::vector<uint8_t>> outs(o.batch, std::vector<uint8_t>(o.page_bytes));
    std::vector<std::string> objects(o.batch);
    std::vector<uint64_t> ids(o.batch);
    std::vector<client::TmemClient::PageGet> batch(o.batch);
    uint64_t h = 0, m = 0;
    while (!stop) {
      for (int b = 0; b < o.batch; ++b) {
        ids[b] = rng() % total;
        objects[b] = ObjectOf(ids[b]);
        batch[b] = {objects[b], ids[b], outs[b]};
      }
      auto got = tc.GetPages(*pool, batch);
      if (!got.ok()) break;
      for (int b = 0; b < o.batch; ++b) {
        if (!(*got)[b]) {
          ++m;
        } else if (!IsPage(ids[b], outs[b])) {
          wrong = true;
        } else {
          ++h;
        }
      }
    }
    hits += h;
    misses += m;
  });
  timer.join();
  std::printf("get         %10.0f hits/s   %8.1f MiB/s  (%lu misses)\n", hits / get_s,
              hits / get_s * o.page_bytes / (1 << 20), misses.load());
  std::fflush(stdout);

  // Single-page gets, for latency.
  std::vector<std::vector<double>> lat(o.threads);
  Parallel(o.threads, [&](int t) {
    std::mt19937_64 rng(1000 + t);
    std::vector<uint8_t> out(o.page_bytes);
    for (int n = 0; n < o.singles; ++n) {
      const uint64_t i = rng() % total;
      const std::string object = ObjectOf(i);
      const auto t0 = Clock::now();
      auto got = tc.Get(*pool, object, i, out);
      lat[t].push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
      if (got.ok() && *got && !IsPage(i, out)) wrong = true;
    }
  });
  std::vector<double> all;
  for (auto& v : lat) all.insert(all.end(), v.begin(), v.end());
  const double p50 = Quantile(all, 0.5), p99 = Quantile(all, 0.99), p999 = Quantile(all, 0.999);
  std::printf("single get  p50 %.0f us  p99 %.0f us  p99.9 %.0f us\n", p50, p99, p999);
  const uint64_t wire = tc.counters().wire_streams_opened.load(), opened = tc.counters().streams_opened.load();
  std::printf("transport   %s (%lu page wire protocol connections, %lu gRPC Session streams)\n",
              wire == opened ? "wire"
              : wire == 0    ? "grpc"
                             : "mixed",
              static_cast<unsigned long>(wire), static_cast<unsigned long>(opened - wire));
  if (absl::Status s = tc.DestroyPool(*pool); !s.ok()) {
    std::fprintf(stderr, "tmemctl: bench: could not destroy its pool: %s\n", std::string(s.message()).c_str());
  }
  if (wrong) {
    std::fprintf(stderr, "tmemctl: bench: a server returned a wrong page\n");
    return 1;
  }
  if (dropped == total || hits == 0) {
    std::fprintf(stderr, "tmemctl: bench: no page was stored or found; are the servers up?\n");
    return 1;
  }
  return 0;
}

}  // namespace tmem::ctl
