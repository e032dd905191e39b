#include "server/metrics/metrics.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "server/pool/pool_test_util.h"
#include "tests/testing/process_util.h"

namespace tmem::metrics {
namespace {

// The body of an HTTP GET from 127.0.0.1:port ("" on failure).
std::string HttpGet(int port, const std::string& path) {
  const std::string resp = tmem::testing::HttpGet(port, path);
  auto body = resp.find("\r\n\r\n");
  return body == std::string::npos ? "" : resp.substr(body + 4);
}

class MetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    engine_ = &harness_.Open();
    auto m = Metrics::Start("127.0.0.1:0", [this](StatsVisitor& v) { engine_->VisitStats(v); });
    ASSERT_TRUE(m.ok()) << m.status();
    metrics_ = std::move(*m);
  }
  pool::testing::EngineHarness harness_;
  pool::PoolEngine* engine_ = nullptr;
  std::unique_ptr<Metrics> metrics_;
};

TEST_F(MetricsTest, ScrapeShowsEngineCountersHistogramsAndBuildInfo) {
  pool::Uuid u{};
  u[0] = 1;
  pool::PoolId p = *engine_->CreateSharedPool(u, 4096);
  std::vector<uint8_t> page(4096, 1);
  ASSERT_TRUE(engine_->Put(p, "o", 0, page).ok());
  ASSERT_TRUE(engine_->Put(p, "o", 1, page).ok());
  ASSERT_EQ(*engine_->Get(p, "o", 0, page), pool::GetOutcome::kHit);
  ASSERT_EQ(*engine_->Get(p, "o", 7, page), pool::GetOutcome::kMiss);
  metrics_->latency()->ObserveLatency("PutPages", 0.0002);
  metrics_->latency()->ObserveLatency("PutPages", 0.003);

  const std::string body = HttpGet(metrics_->port(), "/metrics");
  ASSERT_FALSE(body.empty());
  const std::string pool = std::to_string(p);
  for (const std::string& want : {
           "tmem_pool_puts_total{pool=\"" + pool + "\",kind=\"shared\"} 2",
           "tmem_pool_gets_total{pool=\"" + pool + "\",kind=\"shared\",result=\"hit\"} 1",
           "tmem_pool_gets_total{pool=\"" + pool + "\",kind=\"shared\",result=\"miss\"} 1",
           std::string("tmem_log_free_segments "),
           std::string("tmem_log_written_bytes_total "),
           std::string("tmem_log_crc_failures_total 0"),
           std::string("tmem_build_info{version=\"0.1.0\"} 1"),
           std::string("tmem_request_duration_seconds_count{method=\"PutPages\"} 2"),
           std::string("tmem_request_duration_seconds_bucket{method=\"PutPages\",le=\"0.00025\"} 1"),
       }) {
    EXPECT_NE(body.find(want), std::string::npos) << "missing: " << want << "\n" << body.substr(0, 3000);
  }
  // /metrics serves the HTTP server's own exposer_* families first, then exactly Render().
  const std::string rendered = metrics_->Render();
  ASSERT_GE(body.size(), rendered.size());
  EXPECT_EQ(body.substr(body.size() - rendered.size()), rendered);
}

TEST_F(MetricsTest, PromtoolAcceptsTheExposition) {
  if (std::system("command -v promtool >/dev/null 2>&1") != 0) GTEST_SKIP() << "promtool is not installed";
  pool::PoolId p = *engine_->CreatePool(4096);
  std::vector<uint8_t> page(4096, 1);
  ASSERT_TRUE(engine_->Put(p, "o", 0, page).ok());
  metrics_->latency()->ObserveLatency("GetPages", 0.001);
  const std::string path = std::string(std::getenv("TEST_TMPDIR")) + "/metrics.txt";
  std::ofstream(path) << HttpGet(metrics_->port(), "/metrics");
  const std::string out_path = path + ".promtool";
  int rc = std::system(("promtool check metrics < " + path + " > " + out_path + " 2>&1").c_str());
  std::ifstream in(out_path);
  std::string report((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(rc, 0) << report;
  EXPECT_EQ(report, "") << "promtool lint findings:\n" << report;
}

TEST_F(MetricsTest, APortInUseIsRefusedWithItsAddress) {
  const std::string addr = "127.0.0.1:" + std::to_string(metrics_->port());
  auto second = Metrics::Start(addr, [](StatsVisitor&) {});
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(second.status().message().find(addr), std::string::npos) << second.status();
}

}  // namespace
}  // namespace tmem::metrics
