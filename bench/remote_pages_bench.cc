// tmemd vs memcached for remote pages: the same client concurrency, 4 KiB values, batching and
// pipelining on both sides. tmemd is driven through libtmemclient over the page wire protocol
// (batches pipelined, one connection per client thread), and again over gRPC Session streams as
// a second row; memcached through libmemcached (one connection per thread, buffered no-reply
// sets, multi-gets). With --tmemd-pid and --memcached-pid, each server's CPU per page (user +
// system, from /proc) is printed for the put and get phases. Prints "key value" lines; bench/run_remote_pages_bench.sh
// starts the servers, runs fio and prints ratios.
//   remote_pages_bench --tmemd=HOST:PORT --memcached=HOST:PORT [--sink=HOST:PORT] [--threads=8]
//                      [--pages=200000] [--batch=32] [--seconds=10]
// --sink: a grpc_sink (bench/grpc_sink.cc), which takes the same puts over gRPC and stores
// nothing; its rate is gRPC's ceiling for puts (the reason pages moved to the wire protocol).
#include <libmemcached/memcached.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "client/tmem_client.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Flags {
  std::string tmemd = "127.0.0.1:7070", memcached = "127.0.0.1:11211";
  std::string sink;  // grpc_sink's address: the puts are run against it too
  // The same tmemd's TLS listener, and a client certificate: every tmemd phase runs there too.
  std::string tls_tmemd;
  tmem::client::TlsClientOptions tls;
  int threads = 8, batch = 32;
  int tmemd_pid = 0, memcached_pid = 0;  // for CPU per page (0: not measured)
  // A tmemd with the DRAM tier on (the main one runs without it): get hits and single-get
  // latency over a hot set that fits in its RAM.
  std::string ram_tmemd;
  int ram_tmemd_pid = 0;
  uint64_t hot_pages = 32768;
  bool grpc_row = true;    // the same phases over gRPC Session streams
  bool puts_only = false;  // stop after the put phases (to profile them)
  // A perf control FIFO (perf record --control=fifo:PATH -D -1): "enable" is written to it just
  // before the phase `perf_phase` names (puts: tmemd's second put pass; gets: its batched gets of
  // pages on the device; singles: its single gets of them; ram-gets: the DRAM tier's batched get
  // hits; tls-puts, tls-gets: the second put pass and the batched gets over TLS) and "disable"
  // after it, so that a profile covers that phase alone.
  std::string perf_ctl;
  std::string perf_phase = "puts";
  uint64_t pages = 200000;
  double seconds = 10;
};

std::string Key(uint64_t i) { return "page-" + std::to_string(i); }

std::string Value(uint64_t i) {
  std::string v(4096, '\0');
  for (size_t k = 0; k < v.size(); k += 8) std::memcpy(&v[k], &i, 8);
  return v;
}

// True when `p` holds Value(i): both servers' answers are checked the same way, without
// building the expected page.
bool IsValue(const char* p, size_t len, uint64_t i) {
  if (len != 4096) return false;
  for (size_t k = 0; k < len; k += 8) {
    uint64_t w;
    std::memcpy(&w, p + k, 8);
    if (w != i) return false;
  }
  return true;
}

[[noreturn]] void Die(const std::string& why) {
  std::fprintf(stderr, "remote_pages_bench: %s\n", why.c_str());
  std::exit(1);
}

memcached_st* Memcached(const std::string& addr, bool pipelined) {
  std::string conf = "--SERVER=" + addr + " --BINARY-PROTOCOL";
  memcached_st* m = memcached(conf.c_str(), conf.size());
  if (m == nullptr) Die("memcached configuration");
  if (pipelined) {
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_BUFFER_REQUESTS, 1);
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_NOREPLY, 1);
  }
  return m;
}

// Runs fn(thread) on every thread; returns seconds.
template <typename Fn>
double Parallel(int threads, Fn fn) {
  auto t0 = Clock::now();
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) ts.emplace_back([&, t] { fn(t); });
  for (auto& t : ts) t.join();
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double Quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(v.size() * q))];
}
double P99(std::vector<double> v) { return Quantile(std::move(v), 0.99); }

// CPU seconds (user + system) the process has used; 0 without a pid.
double CpuSeconds(int pid) {
  if (pid <= 0) return 0;
  FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
  if (f == nullptr) return 0;
  char buf[4096];
  const size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
  std::fclose(f);
  buf[n] = 0;
  const char* p = std::strrchr(buf, ')');  // the name may hold spaces
  if (p == nullptr) return 0;
  unsigned long utime = 0, stime = 0;
  // Fields after the name: state (3) ... utime (14), stime (15).
  if (std::sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2) return 0;
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

}  // namespace

int main(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&](const char* n) -> const char* {
      std::string p = std::string("--") + n + "=";
      return a.rfind(p, 0) == 0 ? argv[i] + p.size() : nullptr;
    };
    if (auto v = val("tmemd"))
      f.tmemd = v;
    else if (auto v = val("memcached"))
      f.memcached = v;
    else if (auto v = val("sink"))
      f.sink = v;
    else if (auto v = val("tls-tmemd"))
      f.tls_tmemd = v;
    else if (auto v = val("tls-ca"))
      f.tls.ca = v;
    else if (auto v = val("tls-cert"))
      f.tls.cert = v;
    else if (auto v = val("tls-key"))
      f.tls.key = v;
    else if (a == "--tls-gnutls-records")  // GnuTLS's record layer on the client (for comparisons)
      f.tls.own_records = false;
    else if (auto v = val("threads"))
      f.threads = std::stoi(v);
    else if (auto v = val("batch"))
      f.batch = std::stoi(v);
    else if (auto v = val("pages"))
      f.pages = std::stoull(v);
    else if (auto v = val("seconds"))
      f.seconds = std::stod(v);
    else if (auto v = val("tmemd-pid"))
      f.tmemd_pid = std::stoi(v);
    else if (auto v = val("memcached-pid"))
      f.memcached_pid = std::stoi(v);
    else if (auto v = val("ram-tmemd"))
      f.ram_tmemd = v;
    else if (auto v = val("ram-tmemd-pid"))
      f.ram_tmemd_pid = std::stoi(v);
    else if (auto v = val("hot-pages"))
      f.hot_pages = std::stoull(v);
    else if (a == "--no-grpc-row")
      f.grpc_row = false;
    else if (a == "--puts-only")
      f.puts_only = true;
    else if (auto v = val("perf-ctl"))
      f.perf_ctl = v;
    else if (auto v = val("perf-phase"))
      f.perf_phase = v;
    else
      Die("unknown flag " + a);
  }
  std::printf("threads %d\nbatch %d\npages %lu\n", f.threads, f.batch, f.pages);

  // A shared pool on tmemd (and on the sink), reached through libtmemclient.
  auto connect = [&](const std::string& address, const tmem::client::TlsClientOptions& tls = {},
                     const std::string& transport = "wire", char uuid_byte = 'B') {
    tmem::client::ClientOptions co;
    co.servers = {address};
    co.tls = tls;
    co.transport = transport;
    co.streams_per_server = f.threads;
    co.call_timeout_ms = 10000;
    auto c = tmem::client::TmemClient::Create(co);
    if (!c.ok()) Die(std::string(c.status().message()));
    std::array<uint8_t, 16> uuid;
    uuid.fill(uuid_byte);
    auto p = (*c)->CreateSharedPool(uuid, 4096);
    if (!p.ok()) Die(address + ": " + std::string(p.status().message()));
    return std::make_pair(std::move(*c), *p);
  };
  auto tmemd_conn = connect(f.tmemd);
  auto* client = &tmemd_conn.first;
  const tmem::client::PoolRef pool = tmemd_conn.second;
  const uint64_t per_thread = f.pages / f.threads;

  // --- puts, batched (tmemd: PutPages of `batch` pages; memcached: buffered no-reply sets) ---
  // Two passes over the same keys. The first fills both servers: memcached then touches its
  // slab memory for the first time, which in a VM costs a host page fault per page and made it
  // 3-4x slower than later (66k vs 270k sets/s here). The second pass overwrites every page and
  // is the steady state an operator's servers run in; the ratio is taken there.
  // Each thread puts pages [t * per, (t + 1) * per).
  // Timed until every put is answered (the client returns once a put is sent).
  auto puts_to = [&](tmem::client::TmemClient& c, tmem::client::PoolRef pool, uint64_t per) {
    const auto t0 = std::chrono::steady_clock::now();
    Parallel(f.threads, [&](int t) {
      std::vector<std::string> keys, values;
      std::vector<tmem::client::TmemClient::PagePut> batch;
      for (uint64_t i = t * per; i < (t + 1) * per;) {
        keys.clear();
        values.clear();
        batch.clear();
        for (int b = 0; b < f.batch && i < (t + 1) * per; ++b, ++i) {
          keys.push_back(Key(i / 1024));
          values.push_back(Value(i));
        }
        for (size_t b = 0; b < keys.size(); ++b) {
          const uint64_t idx = i - keys.size() + b;
          batch.push_back(
              {keys[b], idx, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(values[b].data()), 4096)});
        }
        if (!c.PutPages(pool, batch).ok()) Die("put");
      }
    });
    c.WaitForPuts();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (c.counters().puts_dropped.load() > 0) Die("the client dropped puts (a server unreachable on its transport?)");
    return seconds;
  };
  auto tmem_puts = [&] { return puts_to(**client, pool, per_thread); };
  // The same tmemd over gRPC Session streams: its own pool, the same pages.
  std::unique_ptr<tmem::client::TmemClient> grpc_client;
  tmem::client::PoolRef grpc_pool = 0;
  if (f.grpc_row) {
    auto c = connect(f.tmemd, {}, "grpc", 'G');
    grpc_client = std::move(c.first);
    grpc_pool = c.second;
  }
  // Over TLS: the same tmemd, its own pool (the certificate's tenant), the same pages.
  std::unique_ptr<tmem::client::TmemClient> tls_client;
  tmem::client::PoolRef tls_pool = 0;
  if (!f.tls_tmemd.empty()) {
    auto c = connect(f.tls_tmemd, f.tls);
    tls_client = std::move(c.first);
    tls_pool = c.second;
  }
  auto mc_puts = [&] {
    return Parallel(f.threads, [&](int t) {
      memcached_st* m = Memcached(f.memcached, true);
      int n = 0;
      for (uint64_t i = t * per_thread; i < (t + 1) * per_thread; ++i) {
        std::string k = Key(i), v = Value(i);
        memcached_return_t rc = memcached_set(m, k.data(), k.size(), v.data(), v.size(), 0, 0);
        if (rc != MEMCACHED_SUCCESS && rc != MEMCACHED_BUFFERED)
          Die(std::string("memcached set: ") + memcached_strerror(m, rc));
        if (++n % f.batch == 0) memcached_flush_buffers(m);
      }
      memcached_flush_buffers(m);
      memcached_free(m);
    });
  };
  const uint64_t total = per_thread * f.threads;
  const double tmem_first_s = tmem_puts(), mc_first_s = mc_puts();
  if (tls_client) puts_to(*tls_client, tls_pool, per_thread);
  if (grpc_client) puts_to(*grpc_client, grpc_pool, per_thread);
  // The second pass, each server's CPU measured around its own phase.
  auto perf_ctl = [&](const char* command, const char* phase = "puts") {
    if (f.perf_ctl.empty() || f.perf_phase != phase) return;
    std::FILE* ctl = std::fopen(f.perf_ctl.c_str(), "w");
    if (ctl == nullptr) Die("cannot open " + f.perf_ctl);
    std::fprintf(ctl, "%s\n", command);
    std::fclose(ctl);
  };
  perf_ctl("enable");
  double cpu0 = CpuSeconds(f.tmemd_pid);
  double self0 = CpuSeconds(::getpid());
  const double tmem_put_s = tmem_puts();
  const double tmem_put_cpu = CpuSeconds(f.tmemd_pid) - cpu0;
  perf_ctl("disable");
  const double tmem_client_cpu = CpuSeconds(::getpid()) - self0;
  cpu0 = CpuSeconds(f.memcached_pid);
  self0 = CpuSeconds(::getpid());
  const double mc_put_s = mc_puts();
  const double mc_put_cpu = CpuSeconds(f.memcached_pid) - cpu0;
  const double mc_client_cpu = CpuSeconds(::getpid()) - self0;
  if (grpc_client) std::printf("grpc_put_pages_per_s %.0f\n", total / puts_to(*grpc_client, grpc_pool, per_thread));
  if (tls_client) {
    perf_ctl("enable", "tls-puts");
    cpu0 = CpuSeconds(f.tmemd_pid);
    self0 = CpuSeconds(::getpid());
    std::printf("tls_put_pages_per_s %.0f\n", total / puts_to(*tls_client, tls_pool, per_thread));
    const double server_cpu = CpuSeconds(f.tmemd_pid) - cpu0, client_cpu = CpuSeconds(::getpid()) - self0;
    perf_ctl("disable", "tls-puts");
    if (f.tmemd_pid > 0) {
      std::printf("tls_put_cpu_us_per_page %.2f\ntls_client_put_cpu_us_per_page %.2f\n", server_cpu * 1e6 / total,
                  client_cpu * 1e6 / total);
    }
  }
  std::printf("tmemd_put_first_pass_pages_per_s %.0f\nmemcached_put_first_pass_pages_per_s %.0f\n",
              total / tmem_first_s, total / mc_first_s);
  std::printf("tmemd_put_pages_per_s %.0f\nmemcached_put_pages_per_s %.0f\n", total / tmem_put_s, total / mc_put_s);
  if (f.tmemd_pid > 0 && f.memcached_pid > 0) {
    std::printf("tmemd_put_cpu_us_per_page %.2f\nmemcached_put_cpu_us_per_page %.2f\n", tmem_put_cpu * 1e6 / total,
                mc_put_cpu * 1e6 / total);
    // The clients' own CPU in the same phases (this process: libtmemclient vs libmemcached).
    std::printf("tmem_client_put_cpu_us_per_page %.2f\nmemcached_client_put_cpu_us_per_page %.2f\n",
                tmem_client_cpu * 1e6 / total, mc_client_cpu * 1e6 / total);
  }
  if (!f.sink.empty()) {
    auto [sink, sink_pool] = connect(f.sink, {}, "grpc");  // the sink speaks gRPC only
    puts_to(*sink, sink_pool, per_thread);
    const double sink_s = puts_to(*sink, sink_pool, per_thread);
    const uint64_t dropped = sink->counters().puts_dropped.load();
    if (dropped > 0) Die("the sink dropped " + std::to_string(dropped) + " puts");
    std::printf("sink_put_pages_per_s %.0f\n", total / sink_s);
  }
  if (f.puts_only) return 0;

  // --- get hits, batched (tmemd: GetPages; memcached: mget) for a fixed time ---
  auto timed = [&](auto body) {
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> hits{0}, misses{0};
    std::thread timer([&] {
      std::this_thread::sleep_for(std::chrono::duration<double>(f.seconds));
      stop = true;
    });
    double s = Parallel(f.threads, [&](int t) {
      uint64_t h = 0, mi = 0;
      body(t, stop, h, mi);
      hits += h;
      misses += mi;
    });
    timer.join();
    return std::make_tuple(hits.load() / s, misses.load());
  };
  // Batched gets of random pages among the first `range`, every page checked.
  auto gets_from = [&](tmem::client::TmemClient& c, tmem::client::PoolRef p, uint64_t range) {
    return timed([&, range](int t, std::atomic<bool>& stop, uint64_t& h, uint64_t& mi) {
      std::mt19937_64 rng(t);
      std::vector<std::string> keys(f.batch);
      std::vector<uint64_t> ids(f.batch);
      std::vector<std::vector<uint8_t>> outs(f.batch, std::vector<uint8_t>(4096));
      std::vector<tmem::client::TmemClient::PageGet> batch(f.batch);
      while (!stop) {
        for (int b = 0; b < f.batch; ++b) {
          ids[b] = rng() % range;
          keys[b] = Key(ids[b] / 1024);
          batch[b] = {keys[b], ids[b], outs[b]};
        }
        auto got = c.GetPages(p, batch);
        if (!got.ok()) Die("tmemd get");
        for (int b = 0; b < f.batch; ++b) {
          if (!(*got)[b]) {
            ++mi;
          } else if (!IsValue(reinterpret_cast<const char*>(outs[b].data()), 4096, ids[b])) {
            Die("tmemd returned a wrong page");
          } else {
            ++h;
          }
        }
      }
    });
  };
  double cpu1 = CpuSeconds(f.tmemd_pid);
  const double self1 = CpuSeconds(::getpid());
  perf_ctl("enable", "gets");
  auto [tmem_hits, tmem_miss] = gets_from(**client, pool, total);
  perf_ctl("disable", "gets");
  const double tmem_get_cpu = CpuSeconds(f.tmemd_pid) - cpu1;
  std::printf("tmem_client_get_cpu_us_per_page %.2f\n",
              (CpuSeconds(::getpid()) - self1) * 1e6 / (tmem_hits * f.seconds));
  if (tls_client) {
    perf_ctl("enable", "tls-gets");
    const double server0 = CpuSeconds(f.tmemd_pid), client0 = CpuSeconds(::getpid());
    const double tls_hits = std::get<0>(gets_from(*tls_client, tls_pool, total));
    const double server_cpu = CpuSeconds(f.tmemd_pid) - server0, client_cpu = CpuSeconds(::getpid()) - client0;
    perf_ctl("disable", "tls-gets");
    std::printf("tls_get_hits_per_s %.0f\n", tls_hits);
    if (f.tmemd_pid > 0) {
      std::printf("tls_get_cpu_us_per_page %.2f\ntls_client_get_cpu_us_per_page %.2f\n",
                  server_cpu * 1e6 / (tls_hits * f.seconds), client_cpu * 1e6 / (tls_hits * f.seconds));
    }
  }
  if (grpc_client) std::printf("grpc_get_hits_per_s %.0f\n", std::get<0>(gets_from(*grpc_client, grpc_pool, total)));
  cpu1 = CpuSeconds(f.memcached_pid);
  const double mc_self0 = CpuSeconds(::getpid());
  auto [mc_hits, mc_miss] = timed([&](int t, std::atomic<bool>& stop, uint64_t& h, uint64_t& mi) {
    memcached_st* m = Memcached(f.memcached, false);
    std::mt19937_64 rng(t);
    while (!stop) {
      std::vector<std::string> keys;
      for (int b = 0; b < f.batch; ++b) keys.push_back(Key(rng() % total));
      std::vector<const char*> kp;
      std::vector<size_t> kl;
      for (auto& k : keys) kp.push_back(k.data()), kl.push_back(k.size());
      if (memcached_mget(m, kp.data(), kl.data(), kp.size()) != MEMCACHED_SUCCESS) Die("memcached mget");
      memcached_return_t rc;
      uint64_t got = 0;
      while (memcached_result_st* r = memcached_fetch_result(m, nullptr, &rc)) {
        const std::string key(memcached_result_key_value(r), memcached_result_key_length(r));
        if (!IsValue(memcached_result_value(r), memcached_result_length(r), std::stoull(key.substr(5)))) {
          Die("memcached returned a wrong value");
        }
        ++got;
        memcached_result_free(r);
      }
      h += got;
      mi += keys.size() - got;
    }
    memcached_free(m);
  });
  const double mc_client_get_cpu = CpuSeconds(::getpid()) - mc_self0;
  std::printf("tmemd_get_hits_per_s %.0f\ntmemd_get_misses %lu\n", tmem_hits, tmem_miss);
  std::printf("memcached_get_hits_per_s %.0f\nmemcached_get_misses %lu\n", mc_hits, mc_miss);
  if (f.tmemd_pid > 0 && f.memcached_pid > 0) {
    const double mc_get_cpu = CpuSeconds(f.memcached_pid) - cpu1;
    std::printf("tmemd_get_cpu_us_per_page %.2f\nmemcached_get_cpu_us_per_page %.2f\n",
                tmem_get_cpu * 1e6 / (tmem_hits * f.seconds), mc_get_cpu * 1e6 / (mc_hits * f.seconds));
  }

  // --- latency of single gets ---
  std::vector<std::vector<double>> tl(f.threads), ml(f.threads);
  const int singles = 2000;
  auto singles_from = [&](tmem::client::TmemClient& c, tmem::client::PoolRef p, std::vector<std::vector<double>>& lat) {
    Parallel(f.threads, [&](int t) {
      std::mt19937_64 rng(100 + t);
      std::vector<uint8_t> out(4096);
      for (int n = 0; n < singles; ++n) {
        uint64_t i = rng() % total;
        const std::string k = Key(i / 1024);
        auto t0 = Clock::now();
        auto got = c.Get(p, k, i, out);
        lat[t].push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
        if (!got.ok()) Die("tmemd single get");
      }
    });
  };
  perf_ctl("enable", "singles");
  singles_from(**client, pool, tl);
  perf_ctl("disable", "singles");
  if (tls_client) {
    std::vector<std::vector<double>> tls_l(f.threads);
    singles_from(*tls_client, tls_pool, tls_l);
    std::vector<double> all;
    for (auto& v : tls_l) all.insert(all.end(), v.begin(), v.end());
    std::printf("tls_single_get_p99_us %.0f\n", P99(all));
  }
  if (grpc_client) {
    std::vector<std::vector<double>> g_l(f.threads);
    singles_from(*grpc_client, grpc_pool, g_l);
    std::vector<double> all;
    for (auto& v : g_l) all.insert(all.end(), v.begin(), v.end());
    std::printf("grpc_single_get_p50_us %.0f\ngrpc_single_get_p99_us %.0f\n", Quantile(all, 0.5), P99(all));
  }
  Parallel(f.threads, [&](int t) {
    memcached_st* m = Memcached(f.memcached, false);
    std::mt19937_64 rng(100 + t);
    for (int n = 0; n < singles; ++n) {
      std::string k = Key(rng() % total);
      size_t len;
      uint32_t flags;
      memcached_return_t rc;
      auto t0 = Clock::now();
      char* v = memcached_get(m, k.data(), k.size(), &len, &flags, &rc);
      ml[t].push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
      free(v);
    }
    memcached_free(m);
  });
  std::vector<double> all_t, all_m;
  for (auto& v : tl) all_t.insert(all_t.end(), v.begin(), v.end());
  for (auto& v : ml) all_m.insert(all_m.end(), v.begin(), v.end());
  std::printf("tmemd_single_get_p99_us %.0f\nmemcached_single_get_p99_us %.0f\n", P99(all_t), P99(all_m));
  std::printf("tmemd_single_get_p50_us %.0f\nmemcached_single_get_p50_us %.0f\n", Quantile(all_t, 0.5),
              Quantile(all_m, 0.5));

  // --- the DRAM tier: the hot set put (so it is in RAM), then batched gets and single gets ---
  if (!f.ram_tmemd.empty()) {
    const uint64_t hot = std::min<uint64_t>(f.hot_pages, total);
    const uint64_t hot_per_thread = hot / f.threads;
    auto connected = connect(f.ram_tmemd, {}, "wire", 'R');
    auto& ram = connected.first;  // not a structured binding: the lambdas below capture it
    const auto ram_pool = connected.second;
    puts_to(*ram, ram_pool, hot_per_thread);  // the hot set, in the DRAM tier from its puts
    const uint64_t hot_total = hot_per_thread * f.threads;
    const double c0 = CpuSeconds(f.ram_tmemd_pid);
    const double self0 = CpuSeconds(::getpid());
    perf_ctl("enable", "ram-gets");
    auto [ram_hits, ram_miss] = gets_from(*ram, ram_pool, hot_total);
    perf_ctl("disable", "ram-gets");
    const double ram_cpu = CpuSeconds(f.ram_tmemd_pid) - c0;
    const double ram_client_cpu = CpuSeconds(::getpid()) - self0;
    // The clients' own CPU per hit (this process: libtmemclient from the DRAM tier vs libmemcached).
    std::printf("ram_client_get_cpu_us_per_page %.2f\nmemcached_client_get_cpu_us_per_page %.2f\n",
                ram_client_cpu * 1e6 / (ram_hits * f.seconds), mc_client_get_cpu * 1e6 / (mc_hits * f.seconds));
    std::printf("ram_hot_pages %lu\nram_get_hits_per_s %.0f\nram_get_misses %lu\n", hot_total, ram_hits, ram_miss);
    if (f.ram_tmemd_pid > 0) std::printf("ram_get_cpu_us_per_page %.2f\n", ram_cpu * 1e6 / (ram_hits * f.seconds));
    std::vector<std::vector<double>> rl(f.threads);
    Parallel(f.threads, [&](int t) {
      std::mt19937_64 rng(200 + t);
      std::vector<uint8_t> out(4096);
      for (int n = 0; n < singles; ++n) {
        const uint64_t i = rng() % hot_total;
        const std::string k = Key(i / 1024);
        auto t0 = Clock::now();
        auto got = ram->Get(ram_pool, k, i, out);
        rl[t].push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
        if (!got.ok()) Die("tmemd single get (DRAM tier)");
      }
    });
    std::vector<double> all;
    for (auto& v : rl) all.insert(all.end(), v.begin(), v.end());
    std::printf("ram_single_get_p50_us %.0f\nram_single_get_p99_us %.0f\n", Quantile(all, 0.5), P99(all));
  }
  return 0;
}
