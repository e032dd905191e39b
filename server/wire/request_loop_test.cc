#include "server/wire/request_loop.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "server/pool/pool_test_util.h"
#include "server/pool/request_checks.h"
#include "server/wire/wire_codec.h"

namespace tmem::wire {
namespace {

using pool::testing::EngineHarness;
using pool::testing::MakePage;
using pool::testing::VersionOf;

trust::Identity Tenant(const std::string& name, bool admin = false) {
  trust::Identity id;
  id.tenant = name;
  id.pages = true;
  id.admin = admin;
  id.proof = trust::Proof::kCertificate;
  return id;
}

// One connection's request loop, fed whole byte strings; replies are read back in order.
class Conn {
 public:
  Conn(pool::PoolEngine* engine, std::optional<trust::Identity> who, LoopLimits limits = {},
       DeviceReads* reads = nullptr)
      : loop_(engine, std::move(who), nullptr, &counters_, limits, nullptr, nullptr, reads) {}

  bool Send(const std::vector<uint8_t>& bytes) {
    std::span<uint8_t> space = loop_.InputSpace(bytes.size());
    std::memcpy(space.data(), bytes.data(), bytes.size());
    loop_.Received(bytes.size());
    return loop_.Run();
  }
  // Every reply queued so far (consumed).
  std::vector<Reply> Replies() {
    std::vector<Reply> out;
    pending_.insert(pending_.end(), loop_.out().begin(), loop_.out().end());
    loop_.Sent(loop_.out().size());
    size_t at = 0;
    Reply r;
    while (TakeReply(std::span<const uint8_t>(pending_).subspan(at), &r)) {
      at += r.bytes;
      out.push_back(r);
    }
    kept_.push_back(std::move(pending_));  // the replies' bodies point into it
    pending_.clear();
    return out;
  }
  Reply One() {
    std::vector<Reply> r = Replies();
    EXPECT_EQ(r.size(), 1u);
    return r.empty() ? Reply{} : r[0];
  }
  void Hello() {
    std::vector<uint8_t> b;
    AppendHello(b, 1);
    ASSERT_TRUE(Send(b));
    Reply r = One();
    ASSERT_EQ(r.header.status, 0u) << Message(r);
  }
  RequestLoop& loop() { return loop_; }
  WireCounters& counters() { return counters_; }
  static std::string Message(const Reply& r) { return std::string(r.body.begin(), r.body.end()); }

 private:
  WireCounters counters_;
  RequestLoop loop_;
  std::vector<uint8_t> pending_;
  std::vector<std::vector<uint8_t>> kept_;
};

std::vector<uint8_t> Put(uint64_t id, uint32_t pool, std::string_view object, uint64_t index,
                         const std::vector<uint8_t>& page) {
  std::vector<uint8_t> b;
  const size_t at = BeginRequest(b, Verb::kPut, id, pool, 1, static_cast<uint32_t>(page.size()));
  AppendEntry(b, object, index);
  b.insert(b.end(), page.begin(), page.end());
  FinishRequest(b, at);
  return b;
}

std::vector<uint8_t> OneEntry(Verb verb, uint64_t id, uint32_t pool, std::string_view object, uint64_t index) {
  std::vector<uint8_t> b;
  const size_t at = BeginRequest(b, verb, id, pool, 1);
  AppendEntry(b, object, index);
  FinishRequest(b, at);
  return b;
}

class RequestLoopTest : public ::testing::Test {
 protected:
  void SetUp() override { engine_ = &harness_.Open(); }
  EngineHarness harness_;
  pool::PoolEngine* engine_ = nullptr;
};

TEST_F(RequestLoopTest, HelloAnnouncesLimitsTenantAndInstance) {
  Conn c(engine_, Tenant("alpha"));
  std::vector<uint8_t> b;
  AppendHello(b, 7);
  ASSERT_TRUE(c.Send(b));
  Reply r = c.One();
  EXPECT_EQ(r.header.magic, kReplyMagic);
  EXPECT_EQ(r.header.status, 0u);
  EXPECT_EQ(r.header.request_id, 7u);
  EXPECT_EQ(r.header.instance_id, engine_->instance_id());
  ASSERT_GE(r.body.size(), sizeof(HelloReply));
  HelloReply h;
  std::memcpy(&h, r.body.data(), sizeof(h));
  EXPECT_EQ(h.version, kVersion);
  EXPECT_EQ(h.max_batch, kMaxBatch);
  EXPECT_EQ(h.max_in_flight, LoopLimits().max_in_flight);
  EXPECT_EQ(std::string(r.body.begin() + sizeof(h), r.body.end()), "alpha");
}

TEST_F(RequestLoopTest, PutThenGetHitsOnceOnAPrivatePoolAndTheBatchAnswersInOrder) {
  auto id = engine_->CreatePool(4096, "alpha");
  ASSERT_TRUE(id.ok());
  Conn c(engine_, Tenant("alpha"));
  c.Hello();
  const auto page = MakePage(4096, *id, "obj", 3, 1);
  ASSERT_TRUE(c.Send(Put(2, *id, "obj", 3, page)));
  Reply put = c.One();
  EXPECT_EQ(put.header.status, 0u) << Conn::Message(put);
  EXPECT_EQ(put.header.request_id, 2u);
  // A batch of a miss, the hit, and the same handle again (exclusive: a miss now).
  std::vector<uint8_t> b;
  const size_t at = BeginRequest(b, Verb::kGet, 3, *id, 3);
  AppendEntry(b, "obj", 9);
  AppendEntry(b, "obj", 3);
  AppendEntry(b, "obj", 3);
  FinishRequest(b, at);
  ASSERT_TRUE(c.Send(b));
  Reply get = c.One();
  ASSERT_EQ(get.header.status, 0u) << Conn::Message(get);
  ASSERT_EQ(get.header.count, 3);
  ASSERT_EQ(get.body.size(), GetResultBytes(3) + 4096);
  EXPECT_EQ(get.body[0], 0);
  EXPECT_EQ(get.body[1], 1);
  EXPECT_EQ(get.body[2], 0);
  std::vector<uint8_t> got(get.body.begin() + GetResultBytes(3), get.body.end());
  EXPECT_EQ(VersionOf(got, *id, "obj", 3), 1);
  EXPECT_EQ(c.counters().pages_put.load(), 1u);
  EXPECT_EQ(c.counters().pages_got.load(), 1u);
}

TEST_F(RequestLoopTest, FlushesOverTheWireAreSeenByLaterGets) {
  auto id = engine_->CreateSharedPool(pool::Uuid{1}, 4096, "alpha");
  ASSERT_TRUE(id.ok());
  Conn c(engine_, Tenant("alpha"));
  c.Hello();
  for (uint64_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(c.Send(Put(10 + i, *id, i == 2 ? "other" : "obj", i, MakePage(4096, *id, "x", i, 1))));
  }
  for (const Reply& r : c.Replies()) ASSERT_EQ(r.header.status, 0u);
  ASSERT_TRUE(c.Send(OneEntry(Verb::kFlushPages, 20, *id, "obj", 0)));
  ASSERT_TRUE(c.Send(OneEntry(Verb::kFlushObject, 21, *id, "other", 0)));
  for (const Reply& r : c.Replies()) ASSERT_EQ(r.header.status, 0u) << Conn::Message(r);
  std::vector<uint8_t> page(4096);
  EXPECT_EQ(*engine_->Get(*id, "obj", 0, page), pool::GetOutcome::kMiss);
  EXPECT_EQ(*engine_->Get(*id, "obj", 1, page), pool::GetOutcome::kHit);  // shared: stays
  EXPECT_EQ(*engine_->Get(*id, "other", 2, page), pool::GetOutcome::kMiss);
  std::vector<uint8_t> b;
  FinishRequest(b, BeginRequest(b, Verb::kFlushPool, 22, *id, 0));
  ASSERT_TRUE(c.Send(b));
  EXPECT_EQ(c.One().header.status, 0u);
  EXPECT_EQ(*engine_->Get(*id, "obj", 1, page), pool::GetOutcome::kMiss);
}

TEST_F(RequestLoopTest, AnyRequestBeforeHelloClosesTheConnection) {
  Conn c(engine_, Tenant("alpha"));
  EXPECT_FALSE(c.Send(OneEntry(Verb::kGet, 5, 1, "obj", 0)));
  Reply r = c.One();
  EXPECT_EQ(r.header.status, static_cast<uint32_t>(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(r.header.flags, kReplyClosing);
  EXPECT_EQ(r.header.request_id, 5u);
}

TEST_F(RequestLoopTest, AHelloOfAnotherVersionIsRefused) {
  Conn c(engine_, Tenant("alpha"));
  std::vector<uint8_t> b;
  AppendHello(b, 1, 2, 3);
  EXPECT_FALSE(c.Send(b));
  Reply r = c.One();
  EXPECT_EQ(r.header.status, static_cast<uint32_t>(absl::StatusCode::kFailedPrecondition));
  EXPECT_NE(Conn::Message(r).find("versions 2 to 3"), std::string::npos) << Conn::Message(r);
}

TEST_F(RequestLoopTest, APeerWithoutATenantIsRefusedAtHello) {
  Conn c(engine_, std::nullopt);
  std::vector<uint8_t> b;
  AppendHello(b, 1);
  EXPECT_FALSE(c.Send(b));
  EXPECT_EQ(c.One().header.status, static_cast<uint32_t>(absl::StatusCode::kUnauthenticated));
  EXPECT_EQ(c.counters().connections_refused.load(), 1u);
}

TEST_F(RequestLoopTest, BadMagicAndOversizeBodiesCloseTheConnection) {
  {
    Conn c(engine_, Tenant("alpha"));
    c.Hello();
    std::vector<uint8_t> b(32, 0xab);
    EXPECT_FALSE(c.Send(b));
    Reply r = c.One();
    EXPECT_EQ(r.header.status, static_cast<uint32_t>(absl::StatusCode::kInvalidArgument));
    EXPECT_EQ(r.header.flags, kReplyClosing);
  }
  {
    Conn c(engine_, Tenant("alpha"));
    c.Hello();
    std::vector<uint8_t> b;
    BeginRequest(b, Verb::kPut, 9, 1, 1, 4096);
    const uint32_t huge = kMaxBodyBytes + 1;
    std::memcpy(b.data() + offsetof(RequestHeader, body_bytes), &huge, 4);
    EXPECT_FALSE(c.Send(b));  // answered without waiting for a body it will never read
    Reply r = c.One();
    EXPECT_EQ(r.header.request_id, 9u);
    EXPECT_EQ(r.header.status, static_cast<uint32_t>(absl::StatusCode::kInvalidArgument));
  }
}

TEST_F(RequestLoopTest, UnknownVerbsAndLyingLengthsAreAnsweredAndTheConnectionGoesOn) {
  auto id = engine_->CreatePool(4096, "alpha");
  Conn c(engine_, Tenant("alpha"));
  c.Hello();
  std::vector<uint8_t> b;
  size_t at = BeginRequest(b, static_cast<Verb>(42), 1, *id, 0);
  b.insert(b.end(), 16, 0);
  FinishRequest(b, at);
  // count says 2, the body holds one entry.
  at = BeginRequest(b, Verb::kGet, 2, *id, 2);
  AppendEntry(b, "obj", 0);
  FinishRequest(b, at);
  // A put whose page_bytes does not match its body.
  at = BeginRequest(b, Verb::kPut, 3, *id, 1, 4096);
  AppendEntry(b, "obj", 0);
  b.insert(b.end(), 100, 0);
  FinishRequest(b, at);
  ASSERT_TRUE(c.Send(b));
  std::vector<Reply> r = c.Replies();
  ASSERT_EQ(r.size(), 3u);
  for (const Reply& x : r) EXPECT_EQ(x.header.status, static_cast<uint32_t>(absl::StatusCode::kInvalidArgument));
  EXPECT_NE(Conn::Message(r[0]).find("unknown verb 42"), std::string::npos);
  EXPECT_NE(Conn::Message(r[1]).find("has 80"), std::string::npos) << Conn::Message(r[1]);
  // Still serving.
  ASSERT_TRUE(c.Send(Put(4, *id, "obj", 0, MakePage(4096, *id, "obj", 0, 1))));
  EXPECT_EQ(c.One().header.status, 0u);
}

TEST_F(RequestLoopTest, BadEntriesGetTheGrpcEdgesAnswerAndStoreNothing) {
  auto id = engine_->CreatePool(4096, "alpha");
  auto info = engine_->GetPoolInfo(*id);
  Conn c(engine_, Tenant("alpha"));
  c.Hello();
  // A page of the wrong size: the shared check's words.
  ASSERT_TRUE(c.Send(Put(1, *id, "obj", 0, std::vector<uint8_t>(512, 1))));
  Reply r = c.One();
  EXPECT_EQ(r.header.status, static_cast<uint32_t>(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(Conn::Message(r), pool::CheckPageSize("page_bytes", 512, *info).message());
  // An empty object key.
  std::vector<uint8_t> b;
  size_t at = BeginRequest(b, Verb::kGet, 2, *id, 1);
  AppendEntry(b, "", 0);
  FinishRequest(b, at);
  // An empty batch.
  at = BeginRequest(b, Verb::kFlushPages, 3, *id, 0);
  FinishRequest(b, at);
  ASSERT_TRUE(c.Send(b));
  std::vector<Reply> rs = c.Replies();
  ASSERT_EQ(rs.size(), 2u);
  EXPECT_EQ(Conn::Message(rs[0]), pool::CheckObjectKeySize("entries[0].object", 0).message());
  EXPECT_EQ(Conn::Message(rs[1]), pool::CheckBatchSize("entries", 0).message());
  EXPECT_EQ(engine_->GetPoolStats(*id)->puts, 0u);
}

TEST_F(RequestLoopTest, AnotherTenantsPoolIsNotFoundForEveryVerbAndItsPagesStayIntact) {
  auto a = engine_->CreatePool(4096, "alpha");
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(engine_->Put(*a, "obj", 0, MakePage(4096, *a, "obj", 0, 1)).ok());
  const std::string unknown = std::string(engine_->OwnedPool(999, "beta").status().message());
  Conn b(engine_, Tenant("beta"));
  b.Hello();
  std::vector<uint8_t> req;
  auto add = [&](std::vector<uint8_t> x) { req.insert(req.end(), x.begin(), x.end()); };
  add(Put(1, *a, "obj", 0, MakePage(4096, *a, "obj", 0, 2)));
  add(OneEntry(Verb::kGet, 2, *a, "obj", 0));
  add(OneEntry(Verb::kFlushPages, 3, *a, "obj", 0));
  add(OneEntry(Verb::kFlushObject, 4, *a, "obj", 0));
  std::vector<uint8_t> fp;
  FinishRequest(fp, BeginRequest(fp, Verb::kFlushPool, 5, *a, 0));
  add(fp);
  ASSERT_TRUE(b.Send(req));
  std::vector<Reply> rs = b.Replies();
  ASSERT_EQ(rs.size(), 5u);
  for (const Reply& r : rs) {
    EXPECT_EQ(r.header.status, static_cast<uint32_t>(absl::StatusCode::kNotFound));
    // The words of a pool that does not exist, with the id asked for: no existence oracle.
    std::string want = unknown;
    const std::string id999 = "999", ida = std::to_string(*a);
    want.replace(want.find(id999), id999.size(), ida);
    EXPECT_EQ(Conn::Message(r), want);
  }
  std::vector<uint8_t> page(4096);
  ASSERT_EQ(*engine_->Get(*a, "obj", 0, page), pool::GetOutcome::kHit);
  EXPECT_EQ(VersionOf(page, *a, "obj", 0), 1);
  // An admin reaches it.
  Conn admin(engine_, Tenant("ops", /*admin=*/true));
  admin.Hello();
  ASSERT_TRUE(admin.Send(Put(1, *a, "obj", 1, MakePage(4096, *a, "obj", 1, 1))));
  EXPECT_EQ(admin.One().header.status, 0u);
}

TEST_F(RequestLoopTest, AClientThatNeverReadsItsRepliesStopsBeingRead) {
  // A shared pool: every get hits and carries 32 KiB of pages.
  auto id = engine_->CreateSharedPool(pool::Uuid{2}, 4096, "alpha");
  for (uint64_t i = 0; i < 8; ++i) ASSERT_TRUE(engine_->Put(*id, "o", i, MakePage(4096, *id, "o", i, 1)).ok());
  LoopLimits limits;
  limits.max_pending_reply_bytes = 64 << 10;
  Conn c(engine_, Tenant("alpha"), limits);
  c.Hello();
  c.Replies();
  std::vector<uint8_t> b;
  for (uint64_t r = 0; r < 200; ++r) {
    const size_t at = BeginRequest(b, Verb::kGet, r, *id, 8);
    for (uint64_t i = 0; i < 8; ++i) AppendEntry(b, "o", i);
    FinishRequest(b, at);
  }
  // The replies pile up past the bound and reading stops with requests left in the input.
  std::span<uint8_t> space = c.loop().InputSpace(b.size());
  std::memcpy(space.data(), b.data(), b.size());
  c.loop().Received(b.size());
  EXPECT_TRUE(c.loop().Run());
  EXPECT_FALSE(c.loop().wants_input());
  EXPECT_LE(c.loop().out().size(), limits.max_pending_reply_bytes + sizeof(ReplyHeader) + 8 * 4096 + 8);
  EXPECT_FALSE(c.loop().idle());
  // Once the replies are read, the rest is answered.
  size_t answered = c.Replies().size();
  while (c.loop().Run(), !c.loop().out().empty()) answered += c.Replies().size();
  EXPECT_EQ(answered, 200u);
  EXPECT_TRUE(c.loop().idle());
}

// --- Gets waiting for the device -----------------------------------------------------------

class DeviceReadsTest : public RequestLoopTest {
 protected:
  void SetUp() override {
    // No DRAM tier: every page put is read back from the device once its segment is written.
    harness_.set_customize([](pool::EngineOptions& o) { o.ram_cache_bytes = 0; });
    engine_ = &harness_.Open();
    reads_ = DeviceReads::Create(engine_);
    ASSERT_NE(reads_, nullptr);
    auto id = engine_->CreateSharedPool(pool::Uuid{9}, 4096, "alpha");
    ASSERT_TRUE(id.ok()) << id.status();
    pool_ = *id;
  }
  void TearDown() override {
    harness_.device().ReleaseStalledReads();
    reads_.reset();
  }
  // Reaps until `n` gets came back (or 5 s), handing each to its loop.
  size_t ReapInto(size_t n) {
    size_t got = 0;
    for (int i = 0; i < 500 && got < n; ++i) {
      pollfd p{reads_->event_fd(), POLLIN, 0};
      ::poll(&p, 1, 10);
      std::vector<std::pair<void*, std::unique_ptr<PendingGet>>> done;
      reads_->Reap(&done);
      for (auto& [owner, get] : done) static_cast<RequestLoop*>(owner)->Complete(std::move(get));
      got += done.size();
    }
    return got;
  }
  std::unique_ptr<DeviceReads> reads_;
  uint32_t pool_ = 0;
};

// A get whose pages are on a device that does not answer waits alone: its connection's later
// requests and another connection's requests are answered meanwhile, and it is answered with
// the page it looked up once the device answers.
TEST_F(DeviceReadsTest, AGetWaitingForTheDeviceHoldsUpNoOtherRequest) {
  Conn a(engine_, Tenant("alpha"), {}, reads_.get());
  Conn b(engine_, Tenant("alpha"), {}, reads_.get());
  a.Hello();
  b.Hello();
  ASSERT_TRUE(a.Send(Put(1, pool_, "obj", 1, MakePage(4096, pool_, "obj", 1, 1))));
  ASSERT_EQ(a.One().header.status, 0u);
  ASSERT_TRUE(engine_->segment_log().FlushAll().ok());  // the page is on the device only
  harness_.device().StallReads();
  ASSERT_TRUE(a.Send(OneEntry(Verb::kGet, 2, pool_, "obj", 1)));
  EXPECT_TRUE(a.Replies().empty()) << "the get waits for the device";
  EXPECT_EQ(a.loop().pending_gets(), 1u);
  EXPECT_EQ(a.counters().gets_waiting.load(), 1);
  EXPECT_EQ(a.counters().gets_waited.load(), 1u);
  // The same connection's next request, and another connection's put and get, go on.
  ASSERT_TRUE(a.Send(OneEntry(Verb::kFlushPages, 3, pool_, "other", 0)));
  Reply flushed = a.One();
  EXPECT_EQ(flushed.header.request_id, 3u);
  EXPECT_EQ(flushed.header.status, 0u);
  ASSERT_TRUE(b.Send(Put(4, pool_, "obj", 2, MakePage(4096, pool_, "obj", 2, 1))));
  ASSERT_TRUE(b.Send(OneEntry(Verb::kGet, 5, pool_, "obj", 2)));  // still in a write buffer
  std::vector<Reply> rb = b.Replies();
  ASSERT_EQ(rb.size(), 2u);
  EXPECT_EQ(rb[1].header.request_id, 5u);
  EXPECT_EQ(rb[1].body[0], 1) << "a page in RAM needs no device read";
  // A put of the waiting handle after the get's lookup does not change what the get returns.
  ASSERT_TRUE(b.Send(Put(6, pool_, "obj", 1, MakePage(4096, pool_, "obj", 1, 2))));
  ASSERT_EQ(b.One().header.status, 0u);
  EXPECT_EQ(reads_->in_flight(), 1u);
  for (int i = 0; i < 500 && harness_.device().stalled_read_count() == 0; ++i) ::usleep(2000);
  EXPECT_EQ(harness_.device().stalled_read_count(), 1) << "the read reached the device and waits there";
  const size_t get = static_cast<size_t>(Verb::kGet);
  EXPECT_EQ(a.counters().durations[get].count(), 0u) << "a waiting get's time is not over";
  EXPECT_EQ(a.counters().durations[static_cast<size_t>(Verb::kFlushPages)].count(), 1u);
  ::usleep(30000);  // the device holds the read 30 ms more
  harness_.device().ReleaseStalledReads();
  ASSERT_EQ(ReapInto(1), 1u);
  // The get's time in tmemd and its device wait both hold the stall.
  EXPECT_EQ(a.counters().device_waits.count(), 1u);
  EXPECT_GE(a.counters().device_waits.sum_seconds(), 0.03);
  EXPECT_EQ(a.counters().durations[get].count(), 1u);
  EXPECT_GE(a.counters().durations[get].sum_seconds(), 0.03);
  Reply got = a.One();
  EXPECT_EQ(got.header.request_id, 2u);
  ASSERT_EQ(got.header.status, 0u) << Conn::Message(got);
  ASSERT_EQ(got.body.size(), GetResultBytes(1) + 4096);
  EXPECT_EQ(got.body[0], 1);
  std::vector<uint8_t> page(got.body.begin() + GetResultBytes(1), got.body.end());
  EXPECT_EQ(VersionOf(page, pool_, "obj", 1), 1);
  EXPECT_EQ(a.loop().pending_gets(), 0u);
  EXPECT_EQ(a.counters().gets_waiting.load(), 0);
  // The next get sees the later put.
  ASSERT_TRUE(a.Send(OneEntry(Verb::kGet, 7, pool_, "obj", 1)));
  ReapInto(1);
  Reply again = a.One();
  ASSERT_EQ(again.body.size(), GetResultBytes(1) + 4096);
  EXPECT_EQ(VersionOf(std::vector<uint8_t>(again.body.begin() + GetResultBytes(1), again.body.end()), pool_, "obj", 1),
            2);
}

// A connection that goes away while its get waits for the device: the read finishes into the
// get's own buffer, which outlives the connection, and nothing comes back for it.
TEST_F(DeviceReadsTest, AConnectionClosedWhileItsGetWaitsLeavesNothingBehind) {
  {
    Conn a(engine_, Tenant("alpha"), {}, reads_.get());
    a.Hello();
    ASSERT_TRUE(a.Send(Put(1, pool_, "obj", 1, MakePage(4096, pool_, "obj", 1, 1))));
    ASSERT_EQ(a.One().header.status, 0u);
    ASSERT_TRUE(engine_->segment_log().FlushAll().ok());
    harness_.device().StallReads();
    ASSERT_TRUE(a.Send(OneEntry(Verb::kGet, 2, pool_, "obj", 1)));
    EXPECT_EQ(a.loop().pending_gets(), 1u);
  }
  EXPECT_EQ(reads_->in_flight(), 1u);
  harness_.device().ReleaseStalledReads();
  EXPECT_EQ(ReapInto(1), 0u) << "an orphan's get is settled, not handed out";
  EXPECT_EQ(reads_->in_flight(), 0u);
}

// While gets wait for the device, their pages count against the bound on replies waiting: a
// client that keeps asking stops being read.
TEST_F(DeviceReadsTest, GetsWaitingForTheDeviceCountAgainstTheReplyBound) {
  LoopLimits limits;
  limits.max_pending_reply_bytes = 3 * 4096;
  Conn a(engine_, Tenant("alpha"), limits, reads_.get());
  a.Hello();
  for (uint64_t i = 0; i < 8; ++i) {
    ASSERT_TRUE(a.Send(Put(1 + i, pool_, "obj", i, MakePage(4096, pool_, "obj", i, 1))));
  }
  a.Replies();
  ASSERT_TRUE(engine_->segment_log().FlushAll().ok());
  harness_.device().StallReads();
  std::vector<uint8_t> many;
  for (uint64_t i = 0; i < 8; ++i) {
    std::vector<uint8_t> one = OneEntry(Verb::kGet, 100 + i, pool_, "obj", i);
    many.insert(many.end(), one.begin(), one.end());
  }
  ASSERT_TRUE(a.Send(many));
  EXPECT_EQ(a.loop().pending_gets(), 4u) << "taken until the bound was passed";
  EXPECT_FALSE(a.loop().wants_input());
  harness_.device().ReleaseStalledReads();
  ASSERT_EQ(ReapInto(4), 4u);
  EXPECT_EQ(a.Replies().size(), 4u);
  EXPECT_TRUE(a.loop().wants_input());
  a.loop().Run();  // the rest, waiting in the input
  ASSERT_EQ(ReapInto(4), 4u);
  std::vector<Reply> rest = a.Replies();
  ASSERT_EQ(rest.size(), 4u);
  for (const Reply& r : rest) EXPECT_EQ(r.body[0], 1) << r.header.request_id;
}

}  // namespace
}  // namespace tmem::wire
