// WireStream against a real wire server in the same process: many threads sharing one
// connection each get their own replies (the read role passes from waiter to waiter, and none
// is lost), and a connection the server closes is noticed while no one waits.
#include "client/wire_stream.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "server/pool/pool_test_util.h"
#include "server/wire/wire_server.h"

namespace tmem::client {
namespace {

using pool::testing::EngineHarness;
using pool::testing::MakePage;
using pool::testing::VersionOf;

class WireStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    engine_ = &harness_.Open();
    wire::WireServerOptions o;
    o.listeners.push_back({"127.0.0.1:0", false});
    o.threads = 2;
    o.engine = engine_;
    o.tenants = &tenants_;
    auto s = wire::WireServer::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    auto id = engine_->CreateSharedPool(pool::Uuid{7}, 4096, "local");
    ASSERT_TRUE(id.ok()) << id.status();
    pool_ = *id;
  }
  WireStreamOptions Options() const {
    WireStreamOptions o;
    o.host = "127.0.0.1";
    o.port = server_->ports()[0];
    return o;
  }

  EngineHarness harness_{64, 256 << 10};
  pool::PoolEngine* engine_ = nullptr;
  trust::TenantTable tenants_;
  std::unique_ptr<wire::WireServer> server_;
  pool::PoolId pool_ = 0;
};

TEST_F(WireStreamTest, ThreadsSharingOneConnectionEachGetTheirOwnReplies) {
  WireStream stream(Options());
  constexpr int kThreads = 6, kRounds = 150, kBatch = 4;
  std::atomic<int> wrong{0}, failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string object = "t" + std::to_string(t);
      for (int r = 1; r <= kRounds; ++r) {
        // A put of this round's version of the thread's pages, then a get of them.
        std::vector<std::vector<uint8_t>> pages;
        std::vector<PageStream::PutView> views;
        for (int i = 0; i < kBatch; ++i) pages.push_back(MakePage(4096, pool_, object, i, r));
        for (int i = 0; i < kBatch; ++i) views.push_back({object, uint64_t(i), pages[i]});
        auto put = stream.SubmitPut(pool_, views);
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        auto put_reply = stream.Wait(*put, deadline);
        if (!put_reply.ok() || put_reply->code() != 0) {
          failed.fetch_add(1);
          continue;
        }
        tmem::v1::SessionRequest req;
        req.mutable_get_pages()->set_pool_id(pool_);
        for (int i = 0; i < kBatch; ++i) {
          auto* h = req.mutable_get_pages()->add_handles();
          h->set_object(object);
          h->set_index(i);
        }
        std::vector<std::vector<uint8_t>> outs(kBatch, std::vector<uint8_t>(4096));
        std::vector<std::span<uint8_t>> spans(outs.begin(), outs.end());
        auto get = stream.SubmitGet(std::move(req), spans);
        auto got = stream.Wait(*get, deadline);
        if (!got.ok() || got->code() != 0 || got->get_pages().results_size() != kBatch) {
          failed.fetch_add(1);
          continue;
        }
        for (int i = 0; i < kBatch; ++i) {
          // Each handle belongs to this thread alone: its page is this round's.
          if (!got->get_pages().results(i).hit() || VersionOf(outs[i], pool_, object, i) != r) wrong.fetch_add(1);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(stream.replies(), uint64_t{2 * kThreads * kRounds});
  EXPECT_FALSE(stream.broken());
}

// One thread reads for its large get while another's small request goes out after it: the
// second reply comes after the reading thread has its own and leaves, and its waiter must take
// the read role then (it is woken when the role is free).
TEST_F(WireStreamTest, AReplyThatComesAfterTheReadingWaiterLeftReachesItsWaiter) {
  for (uint64_t i = 0; i < 256; ++i)
    ASSERT_TRUE(engine_->Put(pool_, "big", i, MakePage(4096, pool_, "big", i, 1)).ok());
  WireStream stream(Options());
  int late = 0;
  for (int round = 0; round < 40; ++round) {
    std::thread reader([&] {
      tmem::v1::SessionRequest req;
      req.mutable_get_pages()->set_pool_id(pool_);
      for (uint64_t i = 0; i < 256; ++i) {
        auto* h = req.mutable_get_pages()->add_handles();
        h->set_object("big");
        h->set_index(i);
      }
      auto op = stream.Submit(std::move(req));
      auto r = stream.Wait(*op, std::chrono::steady_clock::now() + std::chrono::seconds(5));
      EXPECT_TRUE(r.ok()) << r.status();
    });
    std::this_thread::sleep_for(std::chrono::microseconds(300));
    tmem::v1::SessionRequest req;
    req.mutable_flush_pages()->set_pool_id(pool_);
    auto* h = req.mutable_flush_pages()->add_handles();
    h->set_object("none");
    h->set_index(round);
    auto op = stream.Submit(std::move(req));
    const auto t0 = std::chrono::steady_clock::now();
    auto r = stream.Wait(*op, t0 + std::chrono::seconds(2));
    EXPECT_TRUE(r.ok()) << "round " << round << ": " << r.status();
    if (std::chrono::steady_clock::now() - t0 > std::chrono::milliseconds(500)) ++late;
    reader.join();
  }
  EXPECT_EQ(late, 0) << "replies reached their waiters only after a long wait";
}

TEST_F(WireStreamTest, AConnectionTheServerClosesIsNoticedWhileNoOneWaits) {
  WireStream stream(Options());
  tmem::v1::SessionRequest req;
  req.mutable_flush_pool()->set_pool_id(pool_);
  auto op = stream.Submit(std::move(req));
  auto reply = stream.Wait(*op, std::chrono::steady_clock::now() + std::chrono::seconds(10));
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(stream.tenant(), "local");
  EXPECT_FALSE(stream.broken());
  server_->Stop();
  // No call waits on the stream: its reader notices the end of the connection on its own.
  const auto t0 = std::chrono::steady_clock::now();
  while (!stream.broken() && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_TRUE(stream.broken());
}

}  // namespace
}  // namespace tmem::client
