// `tmemctl bench`: a load generator for one or more tmemd servers through libtmemclient.
#ifndef TMEM_CLIENT_TMEMCTL_BENCH_H_
#define TMEM_CLIENT_TMEMCTL_BENCH_H_

#include <cstdint>
#include <string>
#include <vector>

#include "client/channel.h"

namespace tmem::ctl {

struct BenchOptions {
  std::vector<std::string> servers;
  int threads = 8;
  int batch = 32;  // pages per PutPages/GetPages call
  uint64_t pages = 100000;
  double seconds = 5;  // length of the get phase
  uint32_t page_bytes = 4096;
  int singles = 2000;  // single-page gets per thread for the latency figures
  int64_t timeout_ms = 5000;
  client::TlsClientOptions tls;
  std::string transport = "auto";  // ClientOptions::transport
};

// Puts `pages` pages into a fresh shared pool (batched, from all threads), reads random ones
// back for `seconds` (batched), times single-page gets, checks every page it gets back, prints
// the figures and destroys the pool.
// Returns the exit status: 0, or 1 when a server is unreachable or returned a wrong page.
int RunBench(const BenchOptions& options);

}  // namespace tmem::ctl

#endif  // TMEM_CLIENT_TMEMCTL_BENCH_H_
