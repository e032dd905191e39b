// The shim's core, as tmem_shim.ko runs it: the ring ABI, the lazy pool map, tags and the
// record of invalidations. The test plays both the kernel (cleancache calls) and the relay
// (popping requests and answering them through the shared area).
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

extern "C" {
#include "tmem_shim_abi.h"
#include "tsf_front.h"
#include "tsf_ring.h"
}

namespace {

constexpr uint32_t kPage = 4096;

struct Shim {
  explicit Shim(uint32_t slots = 8, uint32_t rec_cap = 4) : n(slots), tags(slots), free_tags(slots), rec(rec_cap) {
    bytes = TMEM_SHIM_MAP_BYTES(slots, kPage);
    area = std::aligned_alloc(4096, (bytes + 4095) / 4096 * 4096);
    std::memset(area, 0, bytes);
    EXPECT_EQ(tsf_init(&f, area, slots, kPage, tags.data(), free_tags.data(), rec.data(), rec_cap), 0);
  }
  ~Shim() { std::free(area); }

  void Attach() {
    tsf_attach(&f);
    relay = tsr_side{area, n, 0, 0};
  }
  // Attaches and answers the announcements, so that every slot is free again; returns how many
  // answers the module read.
  int AttachAndAnswer() {
    Attach();
    for (const auto& r : Pop()) Answer(r, TMEM_SHIM_OK);
    return Consume();
  }
  // Everything queued for the relay, in order.
  std::vector<tmem_shim_req> Pop() {
    std::vector<tmem_shim_req> out;
    tmem_shim_req r;
    while (tsr_req_pop(&relay, &r) == 1) out.push_back(r);
    return out;
  }
  void Answer(const tmem_shim_req& r, int32_t result) {
    tmem_shim_resp resp{r.seq, r.tag, result};
    ASSERT_EQ(tsr_resp_push(&relay, &resp), 0);
  }
  int Consume() {
    int queued;
    return tsf_consume(&f, &queued);
  }
  // Starts a get of page `index` of the object `key` in `pool`: its tag, or < 0 for a miss at once.
  int GetBegin(int pool, const std::vector<uint8_t>& key, uint64_t index) {
    int queued;
    return tsf_get_begin(&f, pool, key.data(), index, &queued);
  }
  int InitFs(uint8_t uuid_byte) {
    uint8_t uuid[16] = {uuid_byte};
    int queued;
    return tsf_init_fs(&f, 0, uuid, kPage, &queued);
  }
  uint8_t* Slot(uint32_t tag) { return tsr_slot(area, n, kPage, tag); }

  uint32_t n;
  size_t bytes = 0;
  void* area = nullptr;
  std::vector<tsf_tag> tags;
  std::vector<uint32_t> free_tags;
  std::vector<tsf_rec> rec;
  tsf_front f;
  tsr_side relay{};
};

std::vector<uint8_t> Key(uint64_t ino) {
  std::vector<uint8_t> k(TMEM_SHIM_KEY_BYTES, 0);
  std::memcpy(k.data(), &ino, sizeof(ino));
  return k;
}

int GetEnd(Shim& s, int tag, uint8_t* out) {
  int queued;
  return tsf_get_end(&s.f, tag, out, &queued);
}

std::vector<uint8_t> Page(uint8_t fill) { return std::vector<uint8_t>(kPage, fill); }

std::vector<uint32_t> Ops(const std::vector<tmem_shim_req>& reqs) {
  std::vector<uint32_t> ops;
  for (const auto& r : reqs) ops.push_back(r.op);
  return ops;
}

TEST(RingAbi, LayoutIsFixedAndAForeignOrDamagedHeaderIsRefused) {
  EXPECT_EQ(sizeof(tmem_shim_req), 64u);
  EXPECT_EQ(sizeof(tmem_shim_resp), 16u);
  EXPECT_EQ(TMEM_SHIM_SLOTS_OFFSET(256, 4096) % 4096, 0u);
  EXPECT_EQ(TMEM_SHIM_MAP_BYTES(256, 4096), TMEM_SHIM_SLOTS_OFFSET(256, 4096) + 256ull * 4096);
  Shim s;
  EXPECT_EQ(tsr_check_header(s.area, s.bytes), 0);
  EXPECT_EQ(tsr_check_header(s.area, s.bytes - 1), -4) << "a mapping shorter than the area";
  auto* h = tsr_header(s.area);
  h->abi_version = TMEM_SHIM_ABI_VERSION + 1;
  EXPECT_EQ(tsr_check_header(s.area, s.bytes), -2);
  h->abi_version = TMEM_SHIM_ABI_VERSION;
  h->nr_slots = 12;  // not a power of two
  EXPECT_EQ(tsr_check_header(s.area, s.bytes), -3);
  h->nr_slots = 8;
  h->magic ^= 1;
  EXPECT_EQ(tsr_check_header(s.area, s.bytes), -1);
  // Sizes the module refuses to start with.
  std::vector<tsf_tag> tags(12);
  std::vector<uint32_t> free_tags(12);
  std::vector<tsf_rec> rec(1);
  tsf_front f;
  EXPECT_EQ(tsf_init(&f, s.area, 12, kPage, tags.data(), free_tags.data(), rec.data(), 1), -1);
  EXPECT_EQ(tsf_init(&f, s.area, 8, 3000, tags.data(), free_tags.data(), rec.data(), 1), -1);
}

TEST(RingAbi, RingsWrapAroundAndRefuseImpossibleIndices) {
  Shim s;
  tsr_side module{s.area, s.n, 0, 0}, relay{s.area, s.n, 0, 0};
  for (uint64_t i = 1; i <= 3 * s.n; ++i) {  // three times round
    tmem_shim_req r{};
    r.seq = i;
    ASSERT_EQ(tsr_req_push(&module, &r), 0);
    tmem_shim_req out{};
    ASSERT_EQ(tsr_req_pop(&relay, &out), 1);
    EXPECT_EQ(out.seq, i);
  }
  tmem_shim_req r{};
  for (uint32_t i = 0; i < s.n; ++i) ASSERT_EQ(tsr_req_push(&module, &r), 0);
  EXPECT_EQ(tsr_req_push(&module, &r), -1) << "a full ring refuses";
  // The relay publishes a response head far beyond the tail: the module reads nothing from it.
  s.Attach();
  tsr_header(s.area)->resp.head = 5 * s.n;
  EXPECT_EQ(s.Consume(), -1);
  EXPECT_EQ(s.f.c.ring_errors, 1u);
  // And a request head the module never wrote is refused by the relay side.
  tsr_header(s.area)->req.head = s.relay.req_own + s.n + 1;
  tmem_shim_req out;
  EXPECT_EQ(tsr_req_pop(&s.relay, &out), -1);
}

TEST(ShimCore, APutIsCopiedIntoItsSlotAndDroppedWhenNoSlotIsFree) {
  Shim s;
  int pool = s.InitFs(1);
  ASSERT_EQ(pool, 0);
  auto key = Key(12);
  EXPECT_EQ(tsf_put(&s.f, pool, key.data(), 3, Page(7).data()), 0) << "no relay: dropped";
  EXPECT_EQ(s.f.c.puts_dropped_detached, 1u);
  s.Attach();
  auto init = s.Pop();
  ASSERT_EQ(Ops(init), std::vector<uint32_t>{TMEM_SHIM_OP_INIT_FS});
  // The announcement holds a slot until its answer is read.
  for (uint32_t i = 0; i < s.n - 1; ++i) EXPECT_EQ(tsf_put(&s.f, pool, key.data(), i, Page(i + 1).data()), 1);
  EXPECT_EQ(tsf_put(&s.f, pool, key.data(), 99, Page(9).data()), 0);
  EXPECT_EQ(s.f.c.puts_dropped_full, 1u);
  s.Answer(init[0], TMEM_SHIM_OK);
  s.Consume();
  EXPECT_EQ(tsf_put(&s.f, pool, key.data(), s.n - 1, Page(s.n).data()), 1);
  auto reqs = s.Pop();
  ASSERT_EQ(reqs.size(), s.n);
  for (const auto& r : reqs) {
    EXPECT_EQ(r.op, TMEM_SHIM_OP_PUT);
    EXPECT_EQ(std::memcmp(r.key, key.data(), key.size()), 0);
    EXPECT_EQ(std::vector<uint8_t>(s.Slot(r.tag), s.Slot(r.tag) + kPage), Page(static_cast<uint8_t>(r.index + 1)));
  }
}

TEST(ShimCore, PoolsMadeBeforeARelayAttachesAreAnnouncedFirst) {
  Shim s;
  int a = s.InitFs(0xa1), b = s.InitFs(0xb2);
  EXPECT_EQ(a, 0);
  EXPECT_EQ(b, 1);
  auto key = Key(5);
  std::vector<uint8_t> out(kPage);
  int queued;
  EXPECT_LT(tsf_get_begin(&s.f, a, key.data(), 0, &queued), 0) << "no relay: an immediate miss";
  s.Attach();
  int put_queued = tsf_put(&s.f, b, key.data(), 0, Page(3).data());
  EXPECT_EQ(put_queued, 1);
  auto reqs = s.Pop();
  ASSERT_EQ(Ops(reqs), (std::vector<uint32_t>{TMEM_SHIM_OP_INIT_FS, TMEM_SHIM_OP_INIT_FS, TMEM_SHIM_OP_PUT}));
  EXPECT_EQ(reqs[0].pool, 0u);
  EXPECT_EQ(reqs[0].key[0], 0xa1);
  EXPECT_EQ(reqs[1].pool, 1u);
  EXPECT_EQ(reqs[1].key[0], 0xb2);
  EXPECT_EQ(reqs[1].page_bytes, kPage);
  EXPECT_EQ(tsr_header(s.area)->generation, 1u);
  // A pool of another page size is refused (cleancache then leaves that filesystem alone).
  uint8_t uuid[16] = {};
  EXPECT_LT(tsf_init_fs(&s.f, 0, uuid, 2 * kPage, &queued), 0);
}

TEST(ShimCore, AGetHitCopiesItsSlotAndAMissDoesNot) {
  Shim s;
  int pool = s.InitFs(1);
  ASSERT_EQ(s.AttachAndAnswer(), 1);
  auto key = Key(9);
  int queued;
  int hit_tag = tsf_get_begin(&s.f, pool, key.data(), 1, &queued);
  int miss_tag = tsf_get_begin(&s.f, pool, key.data(), 2, &queued);
  ASSERT_GE(hit_tag, 0);
  ASSERT_GE(miss_tag, 0);
  auto reqs = s.Pop();
  ASSERT_EQ(reqs.size(), 2u);
  std::memset(s.Slot(reqs[0].tag), 0x5a, kPage);
  std::memset(s.Slot(reqs[1].tag), 0x66, kPage);
  s.Answer(reqs[0], TMEM_SHIM_HIT);
  s.Answer(reqs[1], TMEM_SHIM_MISS);
  EXPECT_FALSE(tsf_get_done(&s.f, hit_tag));
  ASSERT_EQ(s.Consume(), 2);
  EXPECT_TRUE(tsf_get_done(&s.f, hit_tag));
  std::vector<uint8_t> out(kPage, 0);
  EXPECT_EQ(GetEnd(s, hit_tag, out.data()), 0);
  EXPECT_EQ(out, Page(0x5a));
  std::vector<uint8_t> untouched(kPage, 1);
  EXPECT_EQ(GetEnd(s, miss_tag, untouched.data()), -1);
  EXPECT_EQ(untouched, Page(1));
  EXPECT_EQ(s.f.c.get_hits, 1u);
  EXPECT_EQ(s.f.nr_free, s.n);
}

TEST(ShimCore, ATimedOutGetKeepsItsSlotUntilItsLateAnswerComes) {
  Shim s;
  auto key = Key(4);
  const int pool = s.InitFs(1);
  s.AttachAndAnswer();
  const int tag = s.GetBegin(pool, key, 0);
  ASSERT_GE(tag, 0);
  auto get = s.Pop();
  std::vector<uint8_t> out(kPage, 0);
  EXPECT_EQ(GetEnd(s, tag, out.data()), -1) << "no answer yet: the caller gives up";
  EXPECT_EQ(s.f.c.get_timeouts, 1u);
  // Every other slot takes a put; the abandoned one is not handed out.
  for (uint32_t i = 0; i < s.n - 1; ++i) EXPECT_EQ(tsf_put(&s.f, pool, key.data(), 10 + i, Page(0x11).data()), 1);
  EXPECT_EQ(tsf_put(&s.f, pool, key.data(), 99, Page(0x11).data()), 0);
  auto puts = s.Pop();
  for (const auto& p : puts) EXPECT_NE(p.tag, get[0].tag);
  // The late answer writes its slot; no put's page is touched, and the slot is free again.
  std::memset(s.Slot(get[0].tag), 0xee, kPage);
  s.Answer(get[0], TMEM_SHIM_HIT);
  s.Consume();
  for (const auto& p : puts) EXPECT_EQ(s.Slot(p.tag)[0], 0x11);
  EXPECT_EQ(s.f.nr_free, 1u);
  EXPECT_EQ(s.f.c.bad_responses, 0u);
}

TEST(ShimCore, AnswersThatMatchNoRequestAreCountedAndIgnored) {
  Shim s;
  auto key = Key(4);
  const int pool = s.InitFs(1);
  s.AttachAndAnswer();
  const int tag = s.GetBegin(pool, key, 0);
  auto get = s.Pop();
  ASSERT_EQ(get.size(), 1u);
  tmem_shim_req wrong_seq = get[0], wrong_tag = get[0];
  wrong_seq.seq += 100;
  wrong_tag.tag = s.n + 3;
  s.Answer(wrong_seq, TMEM_SHIM_HIT);
  s.Answer(wrong_tag, TMEM_SHIM_HIT);
  s.Consume();
  EXPECT_EQ(s.f.c.bad_responses, 2u);
  EXPECT_FALSE(tsf_get_done(&s.f, tag));
  s.Answer(get[0], TMEM_SHIM_MISS);
  s.Answer(get[0], TMEM_SHIM_HIT);  // a second answer to the same request
  s.Consume();
  EXPECT_EQ(s.f.c.bad_responses, 3u);
  std::vector<uint8_t> out(kPage);
  EXPECT_EQ(GetEnd(s, tag, out.data()), -1) << "the first answer counts";
}

TEST(ShimCore, InvalidationsMadeWhileDetachedAreReplayedAfterThePoolIsAnnounced) {
  Shim s(8, 4);
  int pool = s.InitFs(1);
  auto k1 = Key(1), k2 = Key(2);
  tsf_invalidate_page(&s.f, pool, k1.data(), 7);
  tsf_invalidate_inode(&s.f, pool, k2.data());
  EXPECT_EQ(s.f.rec_len, 2u);
  s.Attach();
  auto reqs = s.Pop();
  ASSERT_EQ(Ops(reqs), (std::vector<uint32_t>{TMEM_SHIM_OP_INIT_FS, TMEM_SHIM_OP_INVALIDATE_PAGE,
                                               TMEM_SHIM_OP_INVALIDATE_INODE}));
  EXPECT_EQ(reqs[1].index, 7u);
  EXPECT_EQ(std::memcmp(reqs[1].key, k1.data(), k1.size()), 0);
  EXPECT_EQ(std::memcmp(reqs[2].key, k2.data(), k2.size()), 0);
  EXPECT_EQ(s.f.rec_len, 0u);
}

TEST(ShimCore, APoolWithInvalidationsNotYetQueuedMissesEveryGet) {
  Shim s(8, 4);
  int pool = s.InitFs(1);
  s.AttachAndAnswer();
  auto key = Key(3);
  // Every slot busy (a get and puts the relay has not answered): an invalidation has to wait.
  int queued;
  int first_get = tsf_get_begin(&s.f, pool, key.data(), 1, &queued);
  ASSERT_GE(first_get, 0);
  for (uint32_t i = 1; i < s.n; ++i) tsf_put(&s.f, pool, key.data(), 10 + i, Page(1).data());
  tsf_invalidate_page(&s.f, pool, key.data(), 2);
  EXPECT_EQ(s.f.rec_len, 1u);
  // The get is answered: until its caller collects it, its slot is held and the invalidation
  // stays recorded, so the pool misses every get.
  auto reqs = s.Pop();
  s.Answer(reqs[0], TMEM_SHIM_MISS);
  s.Consume();
  ASSERT_EQ(s.f.rec_len, 1u);
  EXPECT_EQ(tsf_get_begin(&s.f, pool, key.data(), 2, &queued), -1)
      << "a get queued now would pass the invalidation and could see the invalidated page";
  // Collecting it frees the slot, which the invalidation takes at once.
  std::vector<uint8_t> out(kPage);
  EXPECT_EQ(tsf_get_end(&s.f, first_get, out.data(), &queued), -1);
  EXPECT_EQ(queued, 1);
  EXPECT_EQ(s.f.rec_len, 0u);
  int tag = tsf_get_begin(&s.f, pool, key.data(), 2, &queued);
  EXPECT_EQ(tag, -2) << "no slot left: the caller may wait for one";
  for (size_t i = 1; i < reqs.size(); ++i) s.Answer(reqs[i], TMEM_SHIM_OK);
  s.Consume();
  tag = tsf_get_begin(&s.f, pool, key.data(), 2, &queued);
  EXPECT_GE(tag, 0);
  EXPECT_EQ(Ops(s.Pop()), (std::vector<uint32_t>{TMEM_SHIM_OP_INVALIDATE_PAGE, TMEM_SHIM_OP_GET}));
}

TEST(ShimCore, ARecordThatOverflowsBecomesAWholePoolFlushAndGetsMissUntilItIsQueued) {
  Shim s(8, 4);
  int pool = s.InitFs(1), other = s.InitFs(2);
  auto key = Key(3);
  for (uint64_t i = 0; i < 4; ++i) tsf_invalidate_page(&s.f, pool, key.data(), i);
  tsf_invalidate_page(&s.f, other, key.data(), 0);  // the record is full: the other pool overflows
  EXPECT_EQ(s.f.pools[other].flush, TSF_FLUSH_NEEDED);
  EXPECT_EQ(s.f.pools[pool].flush, TSF_FLUSH_NONE);
  EXPECT_EQ(s.f.c.pool_flushes_needed, 1u);
  s.Attach();
  auto reqs = s.Pop();
  ASSERT_EQ(Ops(reqs), (std::vector<uint32_t>{TMEM_SHIM_OP_INIT_FS, TMEM_SHIM_OP_INIT_FS, TMEM_SHIM_OP_FLUSH_POOL,
                                               TMEM_SHIM_OP_INVALIDATE_PAGE, TMEM_SHIM_OP_INVALIDATE_PAGE,
                                               TMEM_SHIM_OP_INVALIDATE_PAGE, TMEM_SHIM_OP_INVALIDATE_PAGE}));
  EXPECT_EQ(reqs[2].pool, static_cast<uint32_t>(other));
  EXPECT_EQ(s.f.pools[other].flush, TSF_FLUSH_QUEUED);
  // Attached, with every slot taken: an overflow now needs a flush that cannot be queued yet,
  // and the pool misses every get until it is.
  int queued;
  EXPECT_EQ(tsf_put(&s.f, other, key.data(), 0, Page(1).data()), 1);
  EXPECT_EQ(s.f.nr_free, 0u);
  for (uint64_t i = 0; i < 5; ++i) tsf_invalidate_page(&s.f, pool, key.data(), 10 + i);
  EXPECT_EQ(s.f.pools[pool].flush, TSF_FLUSH_NEEDED);
  EXPECT_EQ(tsf_get_begin(&s.f, pool, key.data(), 10, &queued), -1);
  EXPECT_EQ(tsf_put(&s.f, pool, key.data(), 10, Page(1).data()), 0) << "puts are dropped too";
  for (const auto& r : reqs) s.Answer(r, TMEM_SHIM_OK);
  s.Consume();
  EXPECT_EQ(s.f.pools[other].flush, TSF_FLUSH_NONE);
  EXPECT_EQ(s.f.c.pool_flushes_done, 1u);
  EXPECT_EQ(s.f.pools[pool].flush, TSF_FLUSH_QUEUED);
  EXPECT_GE(tsf_get_begin(&s.f, pool, key.data(), 10, &queued), 0);
  EXPECT_EQ(Ops(s.Pop()), (std::vector<uint32_t>{TMEM_SHIM_OP_PUT, TMEM_SHIM_OP_FLUSH_POOL, TMEM_SHIM_OP_GET}));
}

TEST(ShimCore, InvalidationsTheRelayDidNotFinishSurviveItsDeparture) {
  Shim s(8, 4);
  int pool = s.InitFs(1), deferred_pool = s.InitFs(2);
  s.AttachAndAnswer();
  auto key = Key(8);
  tsf_invalidate_page(&s.f, pool, key.data(), 5);           // taken, never answered
  tsf_invalidate_page(&s.f, deferred_pool, key.data(), 6);  // answered "deferred"
  int queued;
  int get = tsf_get_begin(&s.f, pool, key.data(), 1, &queued);  // a get still waiting
  auto reqs = s.Pop();
  ASSERT_EQ(reqs.size(), 3u);
  s.Answer(reqs[1], TMEM_SHIM_DEFERRED);
  s.Consume();
  EXPECT_EQ(s.f.c.invalidations_deferred, 1u);
  EXPECT_EQ(s.f.pools[deferred_pool].flush, TSF_FLUSH_NONE) << "the relay still holds it";
  tsf_detach(&s.f);
  EXPECT_TRUE(tsf_get_done(&s.f, get)) << "a waiting get is answered (a miss) at once";
  std::vector<uint8_t> out(kPage);
  EXPECT_EQ(GetEnd(s, get, out.data()), -1);
  EXPECT_EQ(s.f.rec_len, 1u) << "the unanswered invalidation is recorded again";
  EXPECT_EQ(s.f.pools[deferred_pool].flush, TSF_FLUSH_NEEDED) << "the deferred one becomes a whole flush";
  EXPECT_EQ(s.f.nr_free, s.n);
  s.Attach();
  reqs = s.Pop();
  ASSERT_EQ(Ops(reqs), (std::vector<uint32_t>{TMEM_SHIM_OP_INIT_FS, TMEM_SHIM_OP_INIT_FS, TMEM_SHIM_OP_FLUSH_POOL,
                                               TMEM_SHIM_OP_INVALIDATE_PAGE}));
  EXPECT_EQ(reqs[2].pool, static_cast<uint32_t>(deferred_pool));
  EXPECT_EQ(reqs[3].index, 5u);
  EXPECT_EQ(reqs[0].seq, 1u) << "sequence numbers restart with each attach";
  EXPECT_EQ(tsr_header(s.area)->generation, 2u);
}

TEST(ShimCore, AnUnmountWhileDetachedReleasesThePoolAfterTheNextAttach) {
  Shim s;
  int pool = s.InitFs(0x77);
  auto key = Key(1);
  tsf_invalidate_page(&s.f, pool, key.data(), 0);
  tsf_invalidate_fs(&s.f, pool);
  EXPECT_EQ(s.f.rec_len, 0u) << "the release covers the pool's recorded invalidations";
  EXPECT_EQ(s.InitFs(0x88), 1) << "the dying pool keeps its id until the relay knows";
  s.Attach();
  auto reqs = s.Pop();
  ASSERT_EQ(Ops(reqs), (std::vector<uint32_t>{TMEM_SHIM_OP_INIT_FS, TMEM_SHIM_OP_INIT_FS, TMEM_SHIM_OP_INVALIDATE_FS}));
  EXPECT_EQ(reqs[2].pool, 0u);
  EXPECT_EQ(reqs[2].key[0], 0x77);
  EXPECT_FALSE(s.f.pools[0].in_use);
  EXPECT_EQ(s.InitFs(0x99), 0) << "its id is free again";
}

TEST(ShimCore, AGetOfAPageNeverPutMissesWithoutARoundTrip) {
  Shim s;
  std::vector<uint64_t> words(1024 / 64);
  ASSERT_EQ(tsf_set_filter(&s.f, words.data(), 10), 0);  // 1024 bits
  EXPECT_EQ(tsf_set_filter(&s.f, words.data(), 9), -1);
  int pool = s.InitFs(1);
  s.AttachAndAnswer();
  auto key = Key(77);
  int queued;
  EXPECT_EQ(tsf_get_begin(&s.f, pool, key.data(), 5, &queued), -1) << "never put: a local miss";
  EXPECT_EQ(s.f.c.gets_filtered, 1u);
  EXPECT_TRUE(s.Pop().empty()) << "nothing went to the relay";
  ASSERT_EQ(tsf_put(&s.f, pool, key.data(), 5, Page(1).data()), 1);
  for (const auto& r : s.Pop()) s.Answer(r, TMEM_SHIM_OK);
  s.Consume();
  EXPECT_GE(tsf_get_begin(&s.f, pool, key.data(), 5, &queued), 0) << "put once: the relay is asked";
  EXPECT_EQ(Ops(s.Pop()), std::vector<uint32_t>{TMEM_SHIM_OP_GET});
  // An invalidation leaves the bit set: only a remote miss, never a wrong page.
  tsf_invalidate_page(&s.f, pool, key.data(), 5);
  // When half the bits are set the filter starts over: earlier pages then miss locally.
  Shim t(64, 4);
  ASSERT_EQ(tsf_set_filter(&t.f, words.data(), 10), 0);
  pool = t.InitFs(1);
  t.AttachAndAnswer();
  for (uint64_t i = 0; t.f.c.filter_resets == 0 && i < 100000; ++i) {
    ASSERT_EQ(tsf_put(&t.f, pool, key.data(), i, Page(1).data()), 1);
    for (const auto& r : t.Pop()) t.Answer(r, TMEM_SHIM_OK);
    t.Consume();
  }
  EXPECT_EQ(t.f.c.filter_resets, 1u);
  EXPECT_LE(t.f.filter_set, 1u);
}

}  // namespace

TEST(ShimCore, TheStatsTableReportsTheStateAndEveryCounterOnce) {
  Shim s;
  int pool = s.InitFs(1);
  ASSERT_EQ(pool, 0);
  auto key = Key(3);
  tsf_put(&s.f, pool, key.data(), 1, Page(1).data());  // dropped: detached
  s.AttachAndAnswer();
  tsf_put(&s.f, pool, key.data(), 2, Page(2).data());  // queued, holds a slot
  tsf_stats st;
  tsf_snapshot(&s.f, 1, &st);
  struct Seen {
    std::vector<std::pair<std::string, uint64_t>> values;
    int gauges = 0;
  } seen;
  tsf_stats_each(
      &st,
      [](void* ctx, const char* name, tsf_u64 value, int is_gauge) {
        auto* z = static_cast<Seen*>(ctx);
        z->values.emplace_back(name, value);
        z->gauges += is_gauge;
        EXPECT_EQ(tsf_stat_is_gauge(name), is_gauge) << name;
      },
      &seen);
  std::map<std::string, uint64_t> by_name(seen.values.begin(), seen.values.end());
  EXPECT_EQ(by_name.size(), seen.values.size()) << "a name is printed twice";
  EXPECT_EQ(seen.values.size() - seen.gauges, sizeof(tsf_counters) / sizeof(tsf_u64))
      << "a counter of struct tsf_counters is missing from the stats table";
  EXPECT_EQ(by_name["attached"], 1u);
  EXPECT_EQ(by_name["enabled"], 1u);
  EXPECT_EQ(by_name["pools"], 1u);
  EXPECT_EQ(by_name["slots"], s.n);
  EXPECT_EQ(by_name["free_slots"], s.n - 1);
  EXPECT_EQ(by_name["puts_dropped_detached"], 1u);
  EXPECT_EQ(by_name["puts_queued"], 1u);
  EXPECT_EQ(by_name["attaches"], 1u);
  EXPECT_EQ(tsf_stat_is_gauge("attache"), 0);
  EXPECT_EQ(tsf_stat_is_gauge("attachedx"), 0);
}
