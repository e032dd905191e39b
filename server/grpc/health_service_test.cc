// grpc.health.v1 over a real gRPC server on 127.0.0.1 with the generated client stub.
#include "server/grpc/health_service.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "server/grpc/health_testing.h"

namespace tmem::grpc_service {
namespace {

using grpc::health::v1::Health;
using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

class HealthServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", ::grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&health_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = Health::NewStub(
        ::grpc::CreateChannel("127.0.0.1:" + std::to_string(port), ::grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    health_.Shutdown();  // ends Watch calls still open
    server_->Shutdown();
  }
  // The status Check answers, or the gRPC error code's name.
  std::string Check(const std::string& service) { return testing::CheckHealth(*stub_, service); }

  HealthService health_{/*max_watchers=*/2};
  std::unique_ptr<::grpc::Server> server_;
  std::unique_ptr<Health::Stub> stub_;
};

TEST_F(HealthServiceTest, CheckAnswersTheServerAndEachServiceAndNotFoundForOthers) {
  EXPECT_EQ(Check(""), "NOT_FOUND") << "nothing is serving before it is said to be";
  health_.SetServing("", true);
  health_.SetServing("tmem.v1.PagePool", true);
  health_.SetServing("tmem.v1.Admin", false);
  EXPECT_EQ(Check(""), "SERVING");
  EXPECT_EQ(Check("tmem.v1.PagePool"), "SERVING");
  EXPECT_EQ(Check("tmem.v1.Admin"), "NOT_SERVING");
  EXPECT_EQ(Check("tmem.v1.Nothing"), "NOT_FOUND");
}

TEST_F(HealthServiceTest, AStopTurnsEverythingNotServingForGood) {
  health_.SetServing("", true);
  health_.SetServing("tmem.v1.PagePool", true);
  health_.Shutdown();
  EXPECT_EQ(Check(""), "NOT_SERVING");
  EXPECT_EQ(Check("tmem.v1.PagePool"), "NOT_SERVING");
  health_.SetServing("", true);
  EXPECT_EQ(Check(""), "NOT_SERVING") << "a stopping server must not look ready again";
}

TEST_F(HealthServiceTest, WatchSendsTheStatusThenEachChangeAndEndsAtTheStop) {
  health_.SetServing("", true);
  ::grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  HealthCheckRequest req;
  auto reader = stub_->Watch(&ctx, req);
  HealthCheckResponse resp;
  ASSERT_TRUE(reader->Read(&resp));
  EXPECT_EQ(resp.status(), HealthCheckResponse::SERVING);
  health_.SetServing("tmem.v1.PagePool", true);  // another service: no message for this watch
  health_.SetServing("", false);
  ASSERT_TRUE(reader->Read(&resp)) << reader->Finish().error_message();
  EXPECT_EQ(resp.status(), HealthCheckResponse::NOT_SERVING);
  health_.SetServing("", true);
  ASSERT_TRUE(reader->Read(&resp));
  EXPECT_EQ(resp.status(), HealthCheckResponse::SERVING);
  health_.Shutdown();
  ASSERT_TRUE(reader->Read(&resp));
  EXPECT_EQ(resp.status(), HealthCheckResponse::NOT_SERVING);
  EXPECT_FALSE(reader->Read(&resp)) << "the watch ends when the server stops";
  EXPECT_TRUE(reader->Finish().ok());
}

TEST_F(HealthServiceTest, WatchOfAnUnknownServiceSaysSoAndWatchersAreBounded) {
  ::grpc::ClientContext c1, c2, c3;
  HealthCheckRequest req;
  req.set_service("later");
  auto w1 = stub_->Watch(&c1, req);
  HealthCheckResponse resp;
  ASSERT_TRUE(w1->Read(&resp));
  EXPECT_EQ(resp.status(), HealthCheckResponse::SERVICE_UNKNOWN);
  health_.SetServing("later", true);
  ASSERT_TRUE(w1->Read(&resp));
  EXPECT_EQ(resp.status(), HealthCheckResponse::SERVING);
  auto w2 = stub_->Watch(&c2, req);
  ASSERT_TRUE(w2->Read(&resp));
  auto w3 = stub_->Watch(&c3, req);  // the third of at most two
  EXPECT_FALSE(w3->Read(&resp));
  EXPECT_EQ(w3->Finish().error_code(), ::grpc::StatusCode::RESOURCE_EXHAUSTED);
  c1.TryCancel();  // a watcher that goes away frees its place
  w1->Finish();
  ::grpc::Status last;
  for (int i = 0; i < 50; ++i) {
    ::grpc::ClientContext c4;
    c4.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    auto w4 = stub_->Watch(&c4, req);
    if (w4->Read(&resp)) {
      c4.TryCancel();
      w4->Finish();
      last = ::grpc::Status::OK;
      break;
    }
    last = w4->Finish();
    std::this_thread::sleep_for(HealthService::kWatchPoll);
  }
  EXPECT_TRUE(last.ok()) << "a cancelled watcher's place was not freed: " << last.error_message();
}

}  // namespace
}  // namespace tmem::grpc_service
