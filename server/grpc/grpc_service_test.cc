// PagePool and Admin over a real gRPC server on 127.0.0.1 with a real client stub.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "proto/tmem_clients.h"
#include "server/grpc/admin_service.h"
#include "server/grpc/page_pool_service.h"
#include "server/metrics/metrics.h"
#include "server/pool/pool_test_util.h"

namespace tmem::grpc_service {
namespace {

using pool::testing::EngineHarness;

class GrpcServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    engine_ = &harness_.Open();
    auto m = metrics::Metrics::Start("127.0.0.1:0", [this](StatsVisitor& v) { engine_->VisitStats(v); });
    ASSERT_TRUE(m.ok()) << m.status();
    metrics_ = std::move(*m);
    pages_ = std::make_unique<PagePoolService>(engine_, metrics_->latency(), nullptr, /*max_sessions_per_tenant=*/2);
    admin_ = std::make_unique<AdminService>(engine_);
    ::grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", ::grpc::InsecureServerCredentials(), &port);
    builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
    builder.RegisterService(pages_.get());
    builder.RegisterService(admin_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port, 0);
    ::grpc::ChannelArguments args;
    args.SetMaxSendMessageSize(-1);
    args.SetMaxReceiveMessageSize(-1);
    auto channel =
        ::grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port), ::grpc::InsecureChannelCredentials(), args);
    pool_stub_ = tmem::v1::PagePool::NewStub(channel);
    admin_stub_ = tmem::v1::Admin::NewStub(channel);
  }
  void TearDown() override { server_->Shutdown(); }

  uint32_t Shared(uint8_t id, uint32_t page_bytes = 4096) {
    ::grpc::ClientContext ctx;
    tmem::v1::CreateSharedPoolRequest req;
    req.set_uuid(std::string(16, static_cast<char>(id)));
    req.set_page_bytes(page_bytes);
    tmem::v1::CreatePoolResponse resp;
    ::grpc::Status s = pool_stub_->CreateSharedPool(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.pool_id();
  }
  ::grpc::Status Put(uint32_t pool, const std::string& object, uint64_t index, const std::string& data) {
    ::grpc::ClientContext ctx;
    tmem::v1::PutPagesRequest req;
    req.set_pool_id(pool);
    auto* p = req.add_pages();
    p->mutable_handle()->set_object(object);
    p->mutable_handle()->set_index(index);
    p->set_data(data);
    tmem::v1::PutPagesResponse resp;
    return pool_stub_->PutPages(&ctx, req, &resp);
  }
  // Returns the page, "" on a miss, or "error: ..." on a failed call.
  std::string Get(uint32_t pool, const std::string& object, uint64_t index) {
    ::grpc::ClientContext ctx;
    tmem::v1::GetPagesRequest req;
    req.set_pool_id(pool);
    auto* h = req.add_handles();
    h->set_object(object);
    h->set_index(index);
    tmem::v1::GetPagesResponse resp;
    ::grpc::Status s = pool_stub_->GetPages(&ctx, req, &resp);
    if (!s.ok()) return "error: " + s.error_message();
    EXPECT_EQ(resp.results_size(), 1);
    EXPECT_EQ(resp.instance_id(), engine_->instance_id());
    return resp.results(0).hit() ? resp.results(0).data() : "";
  }
  // Opens a Session stream on `ctx` and sends one op (a flush of `pool`), which it answers.
  std::unique_ptr<::grpc::ClientReaderWriter<tmem::v1::SessionRequest, tmem::v1::SessionResponse>> OpenSession(
      ::grpc::ClientContext& ctx, uint32_t pool) {
    auto stream = pool_stub_->Session(&ctx);
    tmem::v1::SessionRequest r;
    r.set_op_id(1);
    r.mutable_flush_pool()->set_pool_id(pool);
    stream->Write(r);
    return stream;
  }

  EngineHarness harness_;
  pool::PoolEngine* engine_ = nullptr;
  std::unique_ptr<metrics::Metrics> metrics_;
  std::unique_ptr<PagePoolService> pages_;
  std::unique_ptr<AdminService> admin_;
  std::unique_ptr<::grpc::Server> server_;
  std::unique_ptr<tmem::v1::PagePoolClient> pool_stub_;
  std::unique_ptr<tmem::v1::AdminClient> admin_stub_;
};

std::string PageOf(char c, size_t n = 4096) { return std::string(n, c); }

TEST_F(GrpcServiceTest, PagesRoundTripBitExactWithPoolSemantics) {
  uint32_t shared = Shared(1);
  EXPECT_EQ(Shared(1), shared) << "same UUID, same pool";
  ::grpc::ClientContext ctx;
  tmem::v1::CreatePoolRequest req;  // page_bytes 0 = 4096
  tmem::v1::CreatePoolResponse resp;
  ASSERT_TRUE(pool_stub_->CreatePool(&ctx, req, &resp).ok());
  const uint32_t priv = resp.pool_id();
  EXPECT_EQ(resp.instance_id(), engine_->instance_id());

  std::string page = PageOf('x');
  page[17] = '\0';
  page[4095] = '\xff';
  ASSERT_TRUE(Put(shared, "ino-1", 3, page).ok());
  ASSERT_TRUE(Put(priv, "ino-1", 3, page).ok());
  EXPECT_EQ(Get(shared, "ino-1", 3), page);
  EXPECT_EQ(Get(shared, "ino-1", 3), page) << "shared pages stay";
  EXPECT_EQ(Get(priv, "ino-1", 3), page);
  EXPECT_EQ(Get(priv, "ino-1", 3), "") << "a private hit removes the page";
  ASSERT_TRUE(Put(shared, "ino-1", 3, PageOf('y')).ok());
  EXPECT_EQ(Get(shared, "ino-1", 3), PageOf('y')) << "put-put-get";

  // Every call was timed into the latency histograms.
  const std::string text = metrics_->Render();
  EXPECT_NE(text.find("tmem_request_duration_seconds_count{method=\"PutPages\"} 3"), std::string::npos) << text;
  EXPECT_NE(text.find("tmem_request_duration_seconds_count{method=\"GetPages\"} 5"), std::string::npos) << text;
  EXPECT_NE(text.find("tmem_request_duration_seconds_count{method=\"CreatePool\"} 1"), std::string::npos);
}

TEST_F(GrpcServiceTest, FlushesReachThePages) {
  uint32_t p = Shared(2);
  for (uint64_t i = 0; i < 4; ++i) {
    ASSERT_TRUE(Put(p, "a", i, PageOf('a')).ok());
    ASSERT_TRUE(Put(p, "b", i, PageOf('b')).ok());
  }
  {
    ::grpc::ClientContext ctx;
    tmem::v1::FlushPagesRequest req;
    req.set_pool_id(p);
    auto* h = req.add_handles();
    h->set_object("a");
    h->set_index(0);
    tmem::v1::FlushPagesResponse resp;
    ASSERT_TRUE(pool_stub_->FlushPages(&ctx, req, &resp).ok());
  }
  EXPECT_EQ(Get(p, "a", 0), "");
  EXPECT_EQ(Get(p, "a", 1), PageOf('a'));
  {
    ::grpc::ClientContext ctx;
    tmem::v1::FlushObjectRequest req;
    req.set_pool_id(p);
    req.set_object("a");
    tmem::v1::FlushObjectResponse resp;
    ASSERT_TRUE(pool_stub_->FlushObject(&ctx, req, &resp).ok());
  }
  EXPECT_EQ(Get(p, "a", 1), "");
  EXPECT_EQ(Get(p, "b", 1), PageOf('b'));
  {
    ::grpc::ClientContext ctx;
    tmem::v1::FlushPoolRequest req;
    req.set_pool_id(p);
    tmem::v1::FlushPoolResponse resp;
    ASSERT_TRUE(pool_stub_->FlushPool(&ctx, req, &resp).ok());
  }
  EXPECT_EQ(Get(p, "b", 1), "");
}

TEST_F(GrpcServiceTest, BadRequestsGetClearStatusesAndChangeNothing) {
  uint32_t p = Shared(3);
  ASSERT_TRUE(Put(p, "keep", 0, PageOf('k')).ok());
  auto code = [](const ::grpc::Status& s) { return s.error_code(); };

  // Unknown and destroyed pools.
  EXPECT_EQ(code(Put(999, "o", 0, PageOf('z'))), ::grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(Get(999, "o", 0).find("pool 999 does not exist"), std::string::npos);
  uint32_t doomed = Shared(4);
  {
    ::grpc::ClientContext ctx;
    tmem::v1::DestroyPoolRequest req;
    req.set_pool_id(doomed);
    tmem::v1::DestroyPoolResponse resp;
    ASSERT_TRUE(pool_stub_->DestroyPool(&ctx, req, &resp).ok());
  }
  EXPECT_EQ(code(Put(doomed, "o", 0, PageOf('z'))), ::grpc::StatusCode::NOT_FOUND);

  // Malformed UUID and page size.
  {
    ::grpc::ClientContext ctx;
    tmem::v1::CreateSharedPoolRequest req;
    req.set_uuid("short");
    tmem::v1::CreatePoolResponse resp;
    ::grpc::Status s = pool_stub_->CreateSharedPool(&ctx, req, &resp);
    EXPECT_EQ(code(s), ::grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(s.error_message().find("uuid: 5 bytes"), std::string::npos) << s.error_message();
  }
  {
    ::grpc::ClientContext ctx;
    tmem::v1::CreatePoolRequest req;
    req.set_page_bytes(3000);
    tmem::v1::CreatePoolResponse resp;
    ::grpc::Status s = pool_stub_->CreatePool(&ctx, req, &resp);
    EXPECT_EQ(code(s), ::grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(s.error_message().find("3000"), std::string::npos) << s.error_message();
  }

  // Empty and oversize batches.
  {
    ::grpc::ClientContext ctx;
    tmem::v1::PutPagesRequest req;
    req.set_pool_id(p);
    tmem::v1::PutPagesResponse resp;
    ::grpc::Status s = pool_stub_->PutPages(&ctx, req, &resp);
    EXPECT_EQ(code(s), ::grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(s.error_message().find("pages is empty"), std::string::npos) << s.error_message();
  }
  {
    ::grpc::ClientContext ctx;
    tmem::v1::GetPagesRequest req;
    req.set_pool_id(p);
    for (int i = 0; i <= kMaxBatch; ++i) {
      auto* h = req.add_handles();
      h->set_object("o");
      h->set_index(i);
    }
    tmem::v1::GetPagesResponse resp;
    ::grpc::Status s = pool_stub_->GetPages(&ctx, req, &resp);
    EXPECT_EQ(code(s), ::grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(s.error_message().find("257 entries"), std::string::npos) << s.error_message();
  }

  // A batch with one bad page stores none of its pages.
  {
    ::grpc::ClientContext ctx;
    tmem::v1::PutPagesRequest req;
    req.set_pool_id(p);
    auto* good = req.add_pages();
    good->mutable_handle()->set_object("batch");
    good->mutable_handle()->set_index(1);
    good->set_data(PageOf('g'));
    auto* bad = req.add_pages();
    bad->mutable_handle()->set_object("batch");
    bad->mutable_handle()->set_index(2);
    bad->set_data(PageOf('b', 100));
    tmem::v1::PutPagesResponse resp;
    ::grpc::Status s = pool_stub_->PutPages(&ctx, req, &resp);
    EXPECT_EQ(code(s), ::grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(s.error_message().find("pages[1].data: 100 bytes"), std::string::npos) << s.error_message();
    EXPECT_EQ(Get(p, "batch", 1), "") << "the good page of a rejected batch was stored";
  }

  // Object keys: empty and oversize.
  EXPECT_EQ(code(Put(p, "", 0, PageOf('z'))), ::grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(code(Put(p, std::string(25, 'k'), 0, PageOf('z'))), ::grpc::StatusCode::INVALID_ARGUMENT);

  // A message larger than the server accepts.
  {
    ::grpc::ClientContext ctx;
    tmem::v1::PutPagesRequest req;
    req.set_pool_id(p);
    auto* big = req.add_pages();
    big->mutable_handle()->set_object("o");
    big->set_data(std::string(kMaxMessageBytes + 1, 'B'));
    tmem::v1::PutPagesResponse resp;
    EXPECT_EQ(code(pool_stub_->PutPages(&ctx, req, &resp)), ::grpc::StatusCode::RESOURCE_EXHAUSTED);
  }

  // The server still serves, and the good page is intact.
  EXPECT_EQ(Get(p, "keep", 0), PageOf('k'));
}

TEST_F(GrpcServiceTest, ATenantsSessionStreamsAreBoundedAndAClosedOneFreesItsPlace) {
  const uint32_t pool = Shared(9);
  auto open = [&](::grpc::ClientContext& ctx) { return OpenSession(ctx, pool); };
  ::grpc::ClientContext c1, c2, c3;
  auto s1 = open(c1), s2 = open(c2);
  tmem::v1::SessionResponse resp;
  ASSERT_TRUE(s1->Read(&resp));
  ASSERT_TRUE(s2->Read(&resp)) << "two streams are within the bound";
  auto s3 = open(c3);
  EXPECT_FALSE(s3->Read(&resp));
  ::grpc::Status st = s3->Finish();
  EXPECT_EQ(st.error_code(), ::grpc::StatusCode::RESOURCE_EXHAUSTED) << st.error_message();
  EXPECT_NE(st.error_message().find("grpc.max_sessions_per_tenant"), std::string::npos) << st.error_message();
  s1->WritesDone();
  EXPECT_TRUE(s1->Finish().ok());
  ::grpc::ClientContext c4;
  auto s4 = open(c4);
  EXPECT_TRUE(s4->Read(&resp)) << "a closed stream frees its place";
  s4->WritesDone();
  s4->Finish();
  s2->WritesDone();
  s2->Finish();
}

TEST_F(GrpcServiceTest, AStopCancelsOpenSessionStreamsAtOnceAndRefusesNewOnes) {
  const uint32_t pool = Shared(10);
  auto open = [&](::grpc::ClientContext& ctx) { return OpenSession(ctx, pool); };
  ::grpc::ClientContext c1;
  auto s1 = open(c1);
  tmem::v1::SessionResponse resp;
  ASSERT_TRUE(s1->Read(&resp)) << "the stream serves";
  // The stream is idle, its handler waiting for the next op: the stop ends it without waiting.
  const auto t0 = std::chrono::steady_clock::now();
  pages_->CancelSessions();
  EXPECT_FALSE(s1->Read(&resp));
  EXPECT_EQ(s1->Finish().error_code(), ::grpc::StatusCode::CANCELLED);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  ::grpc::ClientContext c2;
  auto s2 = open(c2);
  EXPECT_FALSE(s2->Read(&resp));
  ::grpc::Status st = s2->Finish();
  EXPECT_EQ(st.error_code(), ::grpc::StatusCode::UNAVAILABLE) << st.error_message();
}

TEST(TenantSlotsTest, ATenantGetsAtMostItsBoundAndAReleasedSlotIsFreeAgain) {
  TenantSlots slots(2, "unary calls in flight", "grpc.max_calls_per_tenant");
  auto a1 = std::make_unique<TenantSlots::Slot>();
  TenantSlots::Slot a2, a3, b1;
  ASSERT_TRUE(slots.Acquire("alice", a1.get()).ok());
  ASSERT_TRUE(slots.Acquire("alice", &a2).ok());
  ::grpc::Status full = slots.Acquire("alice", &a3);
  EXPECT_EQ(full.error_code(), ::grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(full.error_message(), "tenant 'alice' has 2 unary calls in flight (at most 2, grpc.max_calls_per_tenant)");
  EXPECT_TRUE(slots.Acquire("bob", &b1).ok()) << "another tenant is not held back by alice's calls";
  a1.reset();
  EXPECT_EQ(slots.in_flight("alice"), 1);
  EXPECT_TRUE(slots.Acquire("alice", &a3).ok()) << "a finished call frees its slot";
  EXPECT_EQ(slots.in_flight("alice"), 2);
}

TEST(TenantSlotsTest, UnaryCallsOfATenantPastItsBoundAreResourceExhaustedUntilOneEnds) {
  EngineHarness harness;
  pool::PoolEngine& engine = harness.Open();
  const CallerResolver callers(trust::TenantTable(), "cn", nullptr, /*max_calls_per_tenant=*/1);
  PagePoolService pages(&engine, nullptr, &callers);
  ::grpc::ServerContext held_ctx, ctx;
  trust::Identity who;
  auto held = std::make_unique<TenantSlots::Slot>();  // a call of the same (local) tenant in flight
  ASSERT_TRUE(callers.AuthorizeCall(held_ctx, false, "GetPages", &who, held.get()).ok());
  tmem::v1::CreatePoolRequest req;
  req.set_page_bytes(4096);
  tmem::v1::CreatePoolResponse resp;
  ::grpc::Status st = pages.CreatePool(&ctx, &req, &resp);
  EXPECT_EQ(st.error_code(), ::grpc::StatusCode::RESOURCE_EXHAUSTED) << st.error_message();
  EXPECT_NE(st.error_message().find("grpc.max_calls_per_tenant"), std::string::npos) << st.error_message();
  held.reset();
  st = pages.CreatePool(&ctx, &req, &resp);
  EXPECT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(callers.calls().in_flight(who.tenant), 0) << "the finished call gave its slot back";
}

TEST_F(GrpcServiceTest, SessionStreamAnswersEveryOpAndSurvivesBadOnes) {
  uint32_t p = Shared(6);
  ::grpc::ClientContext ctx;
  auto stream = pool_stub_->Session(&ctx);
  auto put = [&](uint64_t op, uint32_t pool, size_t bytes) {
    tmem::v1::SessionRequest r;
    r.set_op_id(op);
    r.mutable_put_pages()->set_pool_id(pool);
    auto* pg = r.mutable_put_pages()->add_pages();
    pg->mutable_handle()->set_object("s");
    pg->mutable_handle()->set_index(0);
    pg->set_data(PageOf('s', bytes));
    return stream->Write(r);
  };
  auto get = [&](uint64_t op) {
    tmem::v1::SessionRequest r;
    r.set_op_id(op);
    r.mutable_get_pages()->set_pool_id(p);
    auto* h = r.mutable_get_pages()->add_handles();
    h->set_object("s");
    h->set_index(0);
    return stream->Write(r);
  };
  ASSERT_TRUE(put(1, p, 4096));
  ASSERT_TRUE(get(2));
  {
    tmem::v1::SessionRequest r;
    r.set_op_id(3);
    r.mutable_flush_pages()->set_pool_id(p);
    auto* h = r.mutable_flush_pages()->add_handles();
    h->set_object("s");
    h->set_index(0);
    ASSERT_TRUE(stream->Write(r));
  }
  ASSERT_TRUE(get(4));
  ASSERT_TRUE(get(4));  // duplicate op id
  {
    tmem::v1::SessionRequest r;  // no operation
    r.set_op_id(5);
    ASSERT_TRUE(stream->Write(r));
  }
  ASSERT_TRUE(put(6, p, 100));     // wrong page size
  ASSERT_TRUE(put(7, 999, 4096));  // unknown pool
  ASSERT_TRUE(put(8, p, 4096));
  ASSERT_TRUE(get(9));  // the stream still works
  ASSERT_TRUE(stream->WritesDone());
  std::vector<tmem::v1::SessionResponse> replies;
  tmem::v1::SessionResponse resp;
  while (stream->Read(&resp)) replies.push_back(resp);
  ASSERT_TRUE(stream->Finish().ok());
  ASSERT_EQ(replies.size(), 10u);
  std::map<uint64_t, std::vector<tmem::v1::SessionResponse>> by_op;
  for (const auto& r : replies) {
    by_op[r.op_id()].push_back(r);
    EXPECT_EQ(r.instance_id(), engine_->instance_id());
  }
  EXPECT_EQ(by_op[1][0].code(), 0);
  ASSERT_EQ(by_op[2][0].get_pages().results_size(), 1);
  EXPECT_TRUE(by_op[2][0].get_pages().results(0).hit());
  EXPECT_EQ(by_op[2][0].get_pages().results(0).data(), PageOf('s'));
  EXPECT_EQ(by_op[3][0].code(), 0);
  ASSERT_EQ(by_op[4].size(), 2u);
  EXPECT_FALSE(by_op[4][0].get_pages().results(0).hit()) << "flushed";
  EXPECT_EQ(by_op[4][1].code(), static_cast<int>(::grpc::StatusCode::INVALID_ARGUMENT));
  EXPECT_NE(by_op[4][1].message().find("not above the previous op_id 4"), std::string::npos) << by_op[4][1].message();
  EXPECT_EQ(by_op[5][0].code(), static_cast<int>(::grpc::StatusCode::INVALID_ARGUMENT));
  EXPECT_EQ(by_op[6][0].code(), static_cast<int>(::grpc::StatusCode::INVALID_ARGUMENT));
  EXPECT_NE(by_op[6][0].message().find("100 bytes"), std::string::npos);
  EXPECT_EQ(by_op[7][0].code(), static_cast<int>(::grpc::StatusCode::NOT_FOUND));
  EXPECT_EQ(by_op[8][0].code(), 0);
  ASSERT_EQ(by_op[9][0].get_pages().results_size(), 1);
  EXPECT_TRUE(by_op[9][0].get_pages().results(0).hit());
}

TEST_F(GrpcServiceTest, AdminReportsServerAndPools) {
  uint32_t p = Shared(5, 8192);
  ASSERT_TRUE(Put(p, "o", 0, PageOf('a', 8192)).ok());
  EXPECT_EQ(Get(p, "o", 0), PageOf('a', 8192));
  EXPECT_EQ(Get(p, "o", 1), "");
  {
    ::grpc::ClientContext ctx;
    tmem::v1::ServerInfoResponse info;
    ASSERT_TRUE(admin_stub_->ServerInfo(&ctx, tmem::v1::ServerInfoRequest(), &info).ok());
    EXPECT_EQ(info.instance_id(), engine_->instance_id());
    EXPECT_EQ(info.version(), tmem::kVersion);
    EXPECT_EQ(info.segment_count(), 32u);
    EXPECT_EQ(info.capacity_bytes(), 32u * (128 << 10));
    EXPECT_EQ(info.used_bytes(), (32u - info.free_segments()) * (128 << 10));
    EXPECT_GT(info.used_bytes(), 0u);
  }
  {
    ::grpc::ClientContext ctx;
    tmem::v1::ListPoolsResponse list;
    ASSERT_TRUE(admin_stub_->ListPools(&ctx, tmem::v1::ListPoolsRequest(), &list).ok());
    ASSERT_EQ(list.pools_size(), 1);
    EXPECT_EQ(list.pools(0).pool_id(), p);
    EXPECT_TRUE(list.pools(0).shared());
    EXPECT_EQ(list.pools(0).page_bytes(), 8192u);
    EXPECT_EQ(list.pools(0).uuid(), std::string(16, '\x05'));
  }
  {
    ::grpc::ClientContext ctx;
    tmem::v1::PoolStatsRequest req;
    req.set_pool_id(p);
    tmem::v1::PoolStatsResponse st;
    ASSERT_TRUE(admin_stub_->PoolStats(&ctx, req, &st).ok());
    EXPECT_EQ(st.puts(), 1u);
    EXPECT_EQ(st.gets_hit(), 1u);
    EXPECT_EQ(st.gets_miss(), 1u);
  }
  {
    ::grpc::ClientContext ctx;
    tmem::v1::PoolStatsRequest req;
    req.set_pool_id(4242);
    tmem::v1::PoolStatsResponse st;
    EXPECT_EQ(admin_stub_->PoolStats(&ctx, req, &st).error_code(), ::grpc::StatusCode::NOT_FOUND);
  }
}

}  // namespace
}  // namespace tmem::grpc_service
