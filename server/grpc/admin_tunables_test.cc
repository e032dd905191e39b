// Admin ExportControl SET_TUNABLES over a real gRPC server, against a cached export: every
// tunable out of its range (below and above) is refused with INVALID_ARGUMENT naming the
// setting and its range, and changes nothing — the same ranges the config file is checked with.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "proto/tmem_clients.h"
#include "server/backend/memory_backend.h"
#include "server/blockcache/block_cache.h"
#include "server/blockcache/cache_settings.h"
#include "server/grpc/admin_service.h"
#include "server/io/memory_device.h"
#include "server/nbd/nbd_server.h"
#include "server/pool/pool_test_util.h"

namespace tmem::grpc_service {
namespace {

class AdminTunablesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    engine_ = &harness_.Open();
    auto cache = blockcache::BlockCache::OpenOwning(std::make_unique<io::MemoryDevice>(16 << 20, 512),
                                                    std::make_unique<backend::MemoryBackend>(4 << 20), {});
    ASSERT_TRUE(cache.ok()) << cache.status();
    cache_ = cache->get();
    auto ex = std::make_unique<nbd::Export>();
    ex->name = "cached";
    ex->backend = std::move(*cache);
    std::vector<std::unique_ptr<nbd::Export>> exports;
    exports.push_back(std::move(ex));
    auto nbd = nbd::NbdServer::Start({.listen = {"127.0.0.1:0"}}, std::move(exports));
    ASSERT_TRUE(nbd.ok()) << nbd.status();
    nbd_ = std::move(*nbd);
    admin_ = std::make_unique<AdminService>(engine_, nbd_.get());
    ::grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", ::grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(admin_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = tmem::v1::Admin::NewStub(
        ::grpc::CreateChannel("127.0.0.1:" + std::to_string(port), ::grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    server_->Shutdown();
    nbd_->Stop();
  }

  ::grpc::Status Set(const tmem::v1::CacheTunables& t, tmem::v1::ExportControlResponse* resp) {
    ::grpc::ClientContext ctx;
    tmem::v1::ExportControlRequest req;
    req.set_export_name("cached");
    req.set_action(tmem::v1::ExportControlRequest::SET_TUNABLES);
    *req.mutable_tunables() = t;
    return stub_->ExportControl(&ctx, req, resp);
  }

  pool::testing::EngineHarness harness_;
  pool::PoolEngine* engine_ = nullptr;
  blockcache::BlockCache* cache_ = nullptr;
  std::unique_ptr<nbd::NbdServer> nbd_;
  std::unique_ptr<AdminService> admin_;
  std::unique_ptr<::grpc::Server> server_;
  std::unique_ptr<tmem::v1::Admin::Stub> stub_;
};

// The proto field of the tunable named `key`, set to `value`.
void SetField(tmem::v1::CacheTunables& t, const std::string& key, int64_t value) {
  if (key == "barrier_deadline_us")
    t.set_barrier_deadline_us(value);
  else if (key == "migrate_batch_segments")
    t.set_migrate_batch_segments(static_cast<uint32_t>(value));
  else if (key == "migrate_idle_ms")
    t.set_migrate_idle_ms(value);
  else if (key == "migrate_free_segments_low")
    t.set_migrate_free_segments_low(static_cast<uint32_t>(value));
  else if (key == "migrate_max_age_ms")
    t.set_migrate_max_age_ms(value);
  else
    ADD_FAILURE() << "no proto field for tunable " << key;
}

bool SameTunables(const blockcache::Tunables& a, const blockcache::Tunables& b) {
  return a.barrier_deadline_us == b.barrier_deadline_us && a.migrate_batch_segments == b.migrate_batch_segments &&
         a.migrate_idle_ms == b.migrate_idle_ms && a.migrate_free_segments_low == b.migrate_free_segments_low &&
         a.migrate_max_age_ms == b.migrate_max_age_ms;
}

TEST_F(AdminTunablesTest, EveryTunableOutOfRangeIsRefusedNamingItsRangeAndChangesNothing) {
  // A first, valid change, so that "nothing changed" is not just "still the defaults".
  tmem::v1::CacheTunables good;
  good.set_migrate_idle_ms(77);
  good.set_barrier_deadline_us(5);
  tmem::v1::ExportControlResponse resp;
  ::grpc::Status s = Set(good, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.cache().tunables().migrate_idle_ms(), 77);
  const blockcache::Tunables before = cache_->tunables();
  int refused = 0;
  for (const auto& setting : blockcache::TunableSettings().settings()) {
    for (int64_t bad : {setting.min - 1, setting.max + 1}) {
      // Unsigned proto fields cannot carry -1: it would arrive as 2^32 - 1, which is above too.
      SCOPED_TRACE(setting.key + " = " + std::to_string(bad));
      tmem::v1::CacheTunables t;
      t.set_migrate_idle_ms(1);  // a valid change in the same request must not land either
      SetField(t, setting.key, bad);
      s = Set(t, &resp);
      ASSERT_EQ(s.error_code(), ::grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
      EXPECT_NE(s.error_message().find(setting.key), std::string::npos) << s.error_message();
      EXPECT_NE(s.error_message().find(setting.Range()), std::string::npos) << s.error_message();
      EXPECT_TRUE(SameTunables(cache_->tunables(), before)) << "a refused change changed the tunables";
      ++refused;
    }
  }
  EXPECT_EQ(refused, 10);
  tmem::v1::CacheTunables huge;
  huge.set_barrier_deadline_us(int64_t{1} << 62);
  EXPECT_EQ(Set(huge, &resp).error_code(), ::grpc::StatusCode::INVALID_ARGUMENT);
  huge.Clear();
  huge.set_migrate_idle_ms(int64_t{1} << 62);  // overflowed migrate_idle_ms * 1'000'000 once
  EXPECT_EQ(Set(huge, &resp).error_code(), ::grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(SameTunables(cache_->tunables(), before));
}

}  // namespace
}  // namespace tmem::grpc_service
