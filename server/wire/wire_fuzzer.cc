// libFuzzer over the page wire protocol's request loop (scripts/fuzz_wire.sh): arbitrary bytes
// from an authenticated tenant, in arbitrary chunks, against an engine on a memory device that
// holds pools of two tenants. Invariants checked on every input: every reply is well-formed
// (magic, a status in range, a body that fits), nothing follows a closing reply, the loop closes
// exactly when it sent one, and the other tenant's pool saw no put or flush.
#include <poll.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/fuzz_support.h"
#include "server/pool/pool_test_util.h"
#include "server/wire/request_loop.h"
#include "server/wire/wire_codec.h"

namespace {

using namespace tmem;  // NOLINT

struct World {
  pool::testing::EngineHarness harness{16, 128 << 10};
  pool::PoolEngine* engine = nullptr;
  pool::PoolId mine = 0, theirs = 0;
  std::vector<uint8_t> their_page;
  std::unique_ptr<wire::DeviceReads> reads;  // gets that wait for the device (half the inputs)
  World() {
    // Bounded RAM over a million runs: a small DRAM tier and index cache (both still used).
    harness.set_customize([](pool::EngineOptions& o) {
      o.ram_cache_bytes = 4 << 20;
      o.index_cache_entries = 1 << 16;
    });
    engine = &harness.Open();
    reads = wire::DeviceReads::Create(engine);
    mine = *engine->CreatePool(4096, "alpha");
    theirs = *engine->CreateSharedPool(pool::Uuid{7}, 4096, "beta");
    their_page = pool::testing::MakePage(4096, theirs, "secret", 0, 1);
    (void)engine->Put(theirs, "secret", 0, their_page);
  }
};

World& TheWorld() {
  static World* w = new World();
  return *w;
}

}  // namespace

// The first byte chooses how the rest is cut into reads (LLVMFuzzerTestOneInput).
std::vector<std::string> TmemFuzzSeeds() {
  using namespace tmem::wire;  // NOLINT
  std::vector<uint8_t> b = {5};
  AppendHello(b, 1);
  size_t at = BeginRequest(b, Verb::kPut, 2, 1, 1, 4096);
  AppendEntry(b, "obj", 3);
  b.insert(b.end(), 4096, 0x5a);
  FinishRequest(b, at);
  at = BeginRequest(b, Verb::kGet, 3, 1, 2);
  AppendEntry(b, "obj", 3);
  AppendEntry(b, "obj", 4);
  FinishRequest(b, at);
  at = BeginRequest(b, Verb::kFlushObject, 4, 2, 1);
  AppendEntry(b, "secret", 0);
  FinishRequest(b, at);
  FinishRequest(b, BeginRequest(b, Verb::kFlushPool, 5, 1, 0));
  std::string all(b.begin(), b.end());
  // The same requests read whole, and a request before HELLO.
  std::string whole = all;
  whole[0] = 63;
  // The same with gets waiting for the device, reaped at once or later.
  std::string waiting = all, reaped = all;
  waiting[0] = static_cast<char>(0x85);
  reaped[0] = static_cast<char>(0xC5);
  return {all, whole, "\x01" + all.substr(1 + sizeof(RequestHeader) + sizeof(Hello)), waiting, reaped};
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  tmem::fuzz::WriteSeedsIfAsked(TmemFuzzSeeds());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tmem::wire;  // NOLINT
  World& w = TheWorld();
  trust::Identity alpha;
  alpha.tenant = "alpha";
  alpha.pages = true;
  WireCounters counters;
  LoopLimits limits;
  limits.max_pending_reply_bytes = 256 << 10;
  // The first byte chooses the chunk size, so that requests split across reads are tried, and
  // whether gets wait for their device reads (DeviceReads, reaped as a loop would) or read in place.
  DeviceReads* reads = size > 0 && (data[0] & 0x80) != 0 ? w.reads.get() : nullptr;
  RequestLoop loop(w.engine, alpha, nullptr, &counters, limits, nullptr, nullptr, reads);
  const size_t chunk = size == 0 ? 1 : 1 + data[0] % 64 * 97;
  std::vector<std::pair<void*, std::unique_ptr<PendingGet>>> done;
  auto reap_all = [&] {
    while (reads != nullptr && reads->in_flight() > 0) {
      pollfd p{reads->event_fd(), POLLIN, 0};
      ::poll(&p, 1, 100);
      done.clear();
      reads->Reap(&done);
      for (auto& [owner, get] : done) {
        TMEM_FUZZ_CHECK(owner == &loop);
        loop.Complete(std::move(get));
      }
    }
  };
  size_t at = size == 0 ? 0 : 1;
  bool open = true;
  std::vector<uint8_t> replies;
  while (open && at < size) {
    const size_t n = std::min(chunk, size - at);
    std::span<uint8_t> space = loop.InputSpace(n);
    std::memcpy(space.data(), data + at, n);
    loop.Received(n);
    at += n;
    open = loop.Run();
    if ((data[0] & 0x40) != 0) reap_all();  // else the gets' reads finish while more arrives
    // The client reads its replies only now and then: backpressure is exercised too.
    if (!loop.wants_input() || !open || at >= size) {
      reap_all();
      replies.insert(replies.end(), loop.out().begin(), loop.out().end());
      loop.Sent(loop.out().size());
      if (open) open = loop.Run();
    }
  }
  reap_all();
  TMEM_FUZZ_CHECK(loop.pending_gets() == 0);
  replies.insert(replies.end(), loop.out().begin(), loop.out().end());
  size_t pos = 0;
  Reply r;
  bool closed_reply = false;
  while (TakeReply(std::span<const uint8_t>(replies).subspan(pos), &r)) {
    TMEM_FUZZ_CHECK(r.header.magic == kReplyMagic);
    TMEM_FUZZ_CHECK(r.header.status <= 16);
    TMEM_FUZZ_CHECK(!closed_reply);  // nothing after a closing reply
    closed_reply = (r.header.flags & kReplyClosing) != 0;
    pos += r.bytes;
  }
  TMEM_FUZZ_CHECK(pos == replies.size());
  TMEM_FUZZ_CHECK(closed_reply == loop.closing());
  // The other tenant's pool saw no put and no flush, and its page, while the log still holds it
  // (pages are ephemeral: the FIFO may reclaim it), is the one it put.
  auto stats = w.engine->GetPoolStats(w.theirs);
  TMEM_FUZZ_CHECK(stats.ok() && stats->puts == 1 && stats->flush_page == 0 && stats->flush_object == 0 &&
                  stats->flush_pool == 0);
  std::vector<uint8_t> page(4096);
  auto got = w.engine->Get(w.theirs, "secret", 0, page);
  TMEM_FUZZ_CHECK(got.ok() && (*got == pool::GetOutcome::kMiss || page == w.their_page));
  return 0;
}
