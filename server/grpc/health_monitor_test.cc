// Health that tells the truth: the page service's grpc.health.v1 status, seen by a real gRPC
// client, follows the page device (hung, failing, recovered); windows and probes on their own.
#include "server/grpc/health_monitor.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "common/stats_testing.h"
#include "proto/tmem.grpc.pb.h"
#include "server/grpc/admin_service.h"
#include "server/grpc/health_testing.h"
#include "server/pool/pool_test_util.h"

namespace tmem::grpc_service {
namespace {

using grpc::health::v1::Health;
using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;
using pool::testing::EngineHarness;
using pool::testing::MakePage;

TEST(CounterWindowTest, CountsTheIncreaseOverTheLastWindowOnly) {
  ManualClock clock;
  CounterWindow w(&clock, 1000);
  EXPECT_EQ(w.Observe(5), 0u);
  clock.AdvanceMillis(400);
  EXPECT_EQ(w.Observe(7), 2u);
  clock.AdvanceMillis(400);
  EXPECT_EQ(w.Observe(10), 5u);
  clock.AdvanceMillis(400);  // the window starts between the samples of 5 and 7: counted from 5
  EXPECT_EQ(w.Observe(10), 5u);
  clock.AdvanceMillis(400);  // now it starts after the sample of 7
  EXPECT_EQ(w.Observe(10), 3u);
  clock.AdvanceMillis(1000);
  EXPECT_EQ(w.Observe(10), 0u);
}

TEST(HealthProbeTest, HungIoIsReportedOnlyPastTheDeadline) {
  io::MemoryDevice mem(1 << 20, 512);
  io::FaultInjectionDevice fault(&mem);
  ManualClock clock;
  io::MonitoredDevice dev(&fault, &clock);
  const HealthLimits limits{.io_deadline_ms = 100};
  HealthProbe probe = HungIoProbe(&dev.watch(), "page device", limits, &clock);
  EXPECT_EQ(probe(), "");
  fault.StallWrites([](uint64_t, size_t) { return true; });
  io::AlignedBuffer buf(4096, 512);
  std::thread writer([&] { EXPECT_TRUE(dev.Write(0, buf.data(), 4096).ok()); });
  while (fault.stalled_write_count() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(dev.watch().InFlight(), 1);
  clock.AdvanceMillis(99);
  EXPECT_EQ(probe(), "");
  clock.AdvanceMillis(2);
  EXPECT_NE(probe().find("page device I/O hung"), std::string::npos) << probe();
  fault.ReleaseStalledWrites();
  writer.join();
  EXPECT_EQ(probe(), "");
  EXPECT_EQ(dev.watch().InFlight(), 0);
}

TEST(HealthProbeTest, ErrorsCountAgainstTheThresholdWithinTheWindow) {
  io::MemoryDevice mem(1 << 20, 512);
  io::FaultInjectionDevice fault(&mem);
  ManualClock clock;
  io::MonitoredDevice dev(&fault, &clock);
  const HealthLimits limits{.io_error_threshold = 3, .window_ms = 1000};
  HealthProbe probe = IoErrorProbe(&dev.watch(), "page device", limits, &clock);
  io::AlignedBuffer buf(4096, 512);
  fault.FailNext(io::FaultInjectionDevice::Op::kRead, 2);
  EXPECT_FALSE(dev.Read(0, buf.data(), 4096).ok());
  EXPECT_FALSE(dev.Read(0, buf.data(), 4096).ok());
  EXPECT_EQ(probe(), "") << "2 errors are under the threshold";
  fault.FailNext(io::FaultInjectionDevice::Op::kWrite, 1);
  EXPECT_FALSE(dev.Write(0, buf.data(), 4096).ok());
  EXPECT_NE(probe().find("3 in the last 1000 ms"), std::string::npos) << probe();
  clock.AdvanceMillis(1001);
  EXPECT_EQ(probe(), "") << "a whole window without errors clears it";
}

class PageServiceHealthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    h_.set_customize([this](pool::EngineOptions& o) {
      o.device = &watched_;
      o.put_wait_ms = 50;
    });
    engine_ = &h_.Open();
    monitor_.AddService("tmem.v1.PagePool", PagePoolProbes(engine_, &watched_, limits_));
    monitor_.Start();
    ::grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", ::grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&health_);
    admin_ = std::make_unique<AdminService>(engine_, nullptr, nullptr, &health_);
    builder.RegisterService(admin_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    auto channel = ::grpc::CreateChannel("127.0.0.1:" + std::to_string(port), ::grpc::InsecureChannelCredentials());
    stub_ = Health::NewStub(channel);
    admin_stub_ = tmem::v1::Admin::NewStub(channel);
    pool_ = *engine_->CreatePool(4096);
  }
  void TearDown() override {
    h_.device().ReleaseStalledWrites();
    h_.device().SetFailurePredicate(nullptr);
    monitor_.Stop();
    health_.Shutdown();
    server_->Shutdown();
  }
  std::string Check(const std::string& service) { return testing::CheckHealth(*stub_, service); }
  // Asks until the answer is `want` (true) or 20 s passed (false); *took_ms: how long.
  bool Await(const std::string& service, const std::string& want, int64_t* took_ms = nullptr) {
    const auto t0 = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20)) {
      if (Check(service) == want) {
        if (took_ms != nullptr) {
          *took_ms =
              std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
        }
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  }
  std::string InfoReason(const std::string& service) {
    ::grpc::ClientContext ctx;
    tmem::v1::ServerInfoResponse r;
    EXPECT_TRUE(admin_stub_->ServerInfo(&ctx, {}, &r).ok());
    for (const auto& h : r.health()) {
      if (h.service() == service) return h.serving() ? "SERVING" : h.reason();
    }
    return "absent";
  }
  void PutPages(uint64_t first, uint64_t n) {
    for (uint64_t i = first; i < first + n; ++i) {
      ASSERT_TRUE(engine_->Put(pool_, "obj", i, MakePage(4096, pool_, "obj", i, 1)).ok());
    }
  }

  const HealthLimits limits_{.interval_ms = 20, .io_deadline_ms = 300, .io_error_threshold = 3, .window_ms = 500};
  EngineHarness h_;
  io::MonitoredDevice watched_{&h_.device()};
  pool::PoolEngine* engine_ = nullptr;
  pool::PoolId pool_ = 0;
  HealthService health_;
  HealthMonitor monitor_{&health_, limits_};
  std::unique_ptr<AdminService> admin_;
  std::unique_ptr<::grpc::Server> server_;
  std::unique_ptr<Health::Stub> stub_;
  std::unique_ptr<tmem::v1::Admin::Stub> admin_stub_;
};

TEST_F(PageServiceHealthTest, AHungDeviceTurnsThePageServiceNotServingUntilItAnswersAgain) {
  EXPECT_EQ(Check("tmem.v1.PagePool"), "SERVING");
  EXPECT_EQ(Check(""), "SERVING");
  h_.device().StallWrites([](uint64_t, size_t) { return true; });
  PutPages(0, 40);  // more than a segment: a segment write starts, and hangs
  engine_->segment_log().Kick();
  int64_t took_ms = 0;
  ASSERT_TRUE(Await("tmem.v1.PagePool", "NOT_SERVING", &took_ms));
  // Documented: within io_deadline_ms plus one check interval of the write's start (slack for a
  // loaded machine).
  EXPECT_LT(took_ms, limits_.io_deadline_ms + limits_.interval_ms + 1000);
  EXPECT_EQ(Check(""), "NOT_SERVING");
  EXPECT_NE(InfoReason("tmem.v1.PagePool").find("page device I/O hung"), std::string::npos)
      << InfoReason("tmem.v1.PagePool");
  h_.device().ReleaseStalledWrites();
  EXPECT_TRUE(Await("tmem.v1.PagePool", "SERVING"));
  EXPECT_EQ(Check(""), "SERVING");
  EXPECT_EQ(InfoReason("tmem.v1.PagePool"), "SERVING");
  MapVisitor v;
  monitor_.VisitStats(v);
  EXPECT_EQ(v.values["service_serving,service=tmem.v1.PagePool"], 1);
  EXPECT_GE(v.values["service_not_serving,service=tmem.v1.PagePool"], 1);
}

TEST_F(PageServiceHealthTest, FailingWritesTurnThePageServiceNotServingUntilAWindowPassesWithoutErrors) {
  h_.device().SetFailurePredicate(
      [](io::FaultInjectionDevice::Op op, uint64_t, size_t) { return op == io::FaultInjectionDevice::Op::kWrite; });
  for (int i = 0; i < 4; ++i) {
    PutPages(1000 * i, 40);
    (void)engine_->segment_log().FlushAll();  // fails: the writes fail
  }
  ASSERT_TRUE(Await("tmem.v1.PagePool", "NOT_SERVING"));
  EXPECT_NE(InfoReason("tmem.v1.PagePool").find("page device I/O errors"), std::string::npos)
      << InfoReason("tmem.v1.PagePool");
  h_.device().SetFailurePredicate(nullptr);
  PutPages(9000, 40);
  ASSERT_TRUE(engine_->segment_log().FlushAll().ok());
  int64_t took_ms = 0;
  EXPECT_TRUE(Await("tmem.v1.PagePool", "SERVING", &took_ms));
  EXPECT_EQ(Check(""), "SERVING");
}

}  // namespace
}  // namespace tmem::grpc_service
