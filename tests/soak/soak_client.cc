// The page half of the soak (tests/soak/soak.sh): one client process on libtmemclient that runs
// put / get / flush_page / flush_object / flush_pool on a private pool of its own and on a shared
// pool that every soak client joins, checks every answer against a model of the cleancache
// contract (docs: /work/shared/DESIGN.md "Contract: page pools"; server/pool/pool_model_test.cc
// is the engine-level model), and prints one JSON line with its counts and violations when it
// stops (SIGTERM, SIGINT or --seconds).
//
//   soak_client --server=HOST:PORT --id=N --restart-log=FILE [--seconds=S] [--seed=S]
//               [--objects=16] [--pages=64] [--shared-uuid=HEX32] [--timeout-ms=3000]
//               [--strict-dropped-puts=1]
//
// Each client owns its objects (keys carry its id), so the model is per client; other clients'
// flush_pool of the shared pool only removes pages, which a model that always allows a miss
// accepts. A page holds (client, pool, object, index, version) and a fill derived from them, so
// a corrupt, foreign or stale page is told apart.
//
// The model, per handle: the set of versions a hit may return (empty: must miss).
//  - put acknowledged: exactly its version (put-put-get: never an older one);
//  - put dropped by the library (server unreachable or refused, `puts_dropped` grew): "maybe
//    put" — its version is added to the allowed ones. The library queues a flush of each
//    dropped handle for its server, so an older version must not come back either: with
//    --strict-dropped-puts=1 (soak.sh's default) such a hit is a violation, without it only
//    counted (`older_hits_after_dropped_put`);
//  - get hit on a private pool: must miss until the next put (exclusive);
//  - get answered by the server with a miss: must miss until the next put (get-get), unless the
//    latest put was dropped (it may still land);
//  - flush_page / flush_object / flush_pool returned: must miss (the library delivers a flush or
//    queues it and replays it before any other call reaches the server: never lost);
//  - tmemd restarted after kill -9 (the orchestrator appends "N kill" or "N term" to
//    --restart-log before it starts the next tmemd; the client notices the new instance id
//    through `restarts_seen`): every version put up to the last call the old instance answered
//    is gone; after a clean stop (SIGTERM) nothing changes (the pages may or may not be kept).
#include <signal.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "client/tmem_client.h"

namespace {

using Clock = std::chrono::steady_clock;
using tmem::client::PoolRef;
using tmem::client::TmemClient;

constexpr uint32_t kPageBytes = 4096;
constexpr uint64_t kMagic = 0x454741504b414f53ull;  // "SOAKPAGE"
constexpr size_t kMaxViolationsKept = 100;
constexpr int kSlots = 2;  // 0: the client's private pool, 1: the shared pool of every client
const char* const kSlotName[kSlots] = {"private", "shared"};

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop.store(true); }

uint64_t SplitMix(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t Fnv(std::string_view s, uint64_t h = 0xcbf29ce484222325ull) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

struct PageId {
  uint32_t client = 0;
  uint32_t slot = 0;
  std::string object;
  uint64_t index = 0;
  uint64_t version = 0;
};

// Header at 0: magic, client (u32), slot (u32), index, version, key length (u8), key (24 bytes);
// from byte 64 on, a fill that depends on all of them.
void MakePage(const PageId& id, std::span<uint8_t> page) {
  std::memset(page.data(), 0, 64);
  std::memcpy(page.data(), &kMagic, 8);
  std::memcpy(page.data() + 8, &id.client, 4);
  std::memcpy(page.data() + 12, &id.slot, 4);
  std::memcpy(page.data() + 16, &id.index, 8);
  std::memcpy(page.data() + 24, &id.version, 8);
  page[32] = static_cast<uint8_t>(id.object.size());
  std::memcpy(page.data() + 33, id.object.data(), std::min<size_t>(id.object.size(), 24));
  uint64_t x = Fnv(id.object) ^ (uint64_t{id.client} << 48) ^ (uint64_t{id.slot} << 40) ^ (id.index * 0x9e37) ^
               (id.version * 0x100000001b3ull);
  for (size_t k = 64; k + 8 <= page.size(); k += 8) {
    uint64_t w = SplitMix(x);
    std::memcpy(page.data() + k, &w, 8);
  }
}

// The page's own identity if it is a whole, well-formed soak page; false if corrupt.
bool ParsePage(std::span<const uint8_t> page, PageId* id) {
  uint64_t magic;
  std::memcpy(&magic, page.data(), 8);
  if (magic != kMagic || page[32] > 24) return false;
  std::memcpy(&id->client, page.data() + 8, 4);
  std::memcpy(&id->slot, page.data() + 12, 4);
  std::memcpy(&id->index, page.data() + 16, 8);
  std::memcpy(&id->version, page.data() + 24, 8);
  id->object.assign(reinterpret_cast<const char*>(page.data() + 33), page[32]);
  std::vector<uint8_t> want(page.size());
  MakePage(*id, want);
  return std::memcmp(want.data(), page.data(), page.size()) == 0;
}

// Why a handle's allowed set was last emptied (for the violation report).
enum class Why { kNeverPut, kFlushPage, kFlushObject, kFlushPool, kKill, kExclusiveGet, kMiss };
const char* WhyName(Why w) {
  switch (w) {
    case Why::kNeverPut:
      return "never put";
    case Why::kFlushPage:
      return "flush_page returned";
    case Why::kFlushObject:
      return "flush_object returned";
    case Why::kFlushPool:
      return "flush_pool returned";
    case Why::kKill:
      return "tmemd was killed (kill -9) since the put";
    case Why::kExclusiveGet:
      return "an earlier get of this private page hit (exclusive)";
    case Why::kMiss:
      return "an earlier get missed (get-get)";
  }
  return "?";
}

struct Allowed {
  uint64_t version;
  uint64_t op;     // the op that put it
  uint64_t epoch;  // restarts the client knew of when it was put
};

struct Handle {
  std::vector<Allowed> allowed;  // a hit may return one of these; empty: must miss
  bool uncertain = false;        // the latest put was dropped by the library
  uint64_t latest = 0;           // the newest version put, whatever became of it
  Why why = Why::kNeverPut;      // why `allowed` was last emptied
  uint64_t why_op = 0;
};

std::string JsonEscape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out;
}

struct Options {
  std::string server;
  uint32_t id = 0;
  std::string restart_log;
  double seconds = 1e9;
  uint64_t seed = 0;
  int objects = 16;
  int pages = 64;
  std::string shared_uuid = "50a450a450a450a450a450a450a450a4";
  int64_t timeout_ms = 3000;
  bool strict_dropped_puts = false;
};

class Soak {
 public:
  Soak(const Options& o, TmemClient* client, std::array<PoolRef, kSlots> pools)
      : o_(o), client_(client), pools_(pools), rng_(o.seed ^ (uint64_t{o.id} << 32)), t0_(Clock::now()) {
    for (int k = 0; k < o.objects; ++k) {
      // Inode-like short keys and file-handle-like 24-byte keys.
      std::string key = "c" + std::to_string(o.id) + "-o" + std::to_string(k);
      if (k % 2 == 1) key = (key + "-fh-").append(24, 'x').substr(0, 24);
      objects_.push_back(key);
    }
    handles_.resize(kSlots * o.objects * o.pages);
  }

  void Run() {
    const auto deadline = t0_ + std::chrono::duration<double>(o_.seconds);
    while (!g_stop.load() && Clock::now() < deadline) Step();
    FinalPass();
  }

  std::string Json() const {
    std::ostringstream j;
    j << "{\"client\":" << o_.id << ",\"seconds\":" << Elapsed() << ",\"ops\":" << ops_
      << ",\"pages_put\":" << pages_put_ << ",\"pages_put_dropped\":" << pages_dropped_
      << ",\"pages_got\":" << pages_got_ << ",\"hits\":" << hits_ << ",\"misses\":" << misses_
      << ",\"misses_unreachable\":" << misses_unreachable_ << ",\"flush_page\":" << flush_page_
      << ",\"flush_object\":" << flush_object_ << ",\"flush_pool\":" << flush_pool_
      << ",\"final_pass_pages\":" << final_pages_ << ",\"warm_hits\":" << warm_hits_
      << ",\"older_hits_after_dropped_put\":" << older_after_drop_ << ",\"restarts_clean\":" << restarts_clean_
      << ",\"restarts_kill\":" << restarts_kill_ << ",\"restarts_seen\":" << client_->counters().restarts_seen.load()
      << ",\"flushes_deferred\":" << client_->counters().flushes_deferred.load()
      << ",\"flushes_replayed\":" << client_->counters().flushes_replayed.load()
      << ",\"streams_opened\":" << client_->counters().streams_opened.load()
      << ",\"violation_count\":" << violation_count_ << ",\"violations\":[";
    for (size_t i = 0; i < violations_.size(); ++i) j << (i ? "," : "") << violations_[i];
    j << "]}";
    return j.str();
  }

  uint64_t violation_count() const { return violation_count_; }

 private:
  double Elapsed() const { return std::chrono::duration<double>(Clock::now() - t0_).count(); }
  Handle& H(int slot, int obj, uint64_t index) {
    return handles_[(static_cast<size_t>(slot) * o_.objects + obj) * o_.pages + index];
  }
  uint64_t Rand(uint64_t n) { return rng_() % n; }

  struct Before {
    uint64_t dropped, unreachable, deferred, restarts;
  };
  Before Snap() const {
    const auto& c = client_->counters();
    return {c.puts_dropped.load(), c.gets_unreachable.load(), c.flushes_deferred.load(), c.restarts_seen.load()};
  }

  void Violation(const std::string& kind, int slot, int obj, uint64_t index, const std::string& detail) {
    ++violation_count_;
    if (violations_.size() >= kMaxViolationsKept) return;
    std::ostringstream v;
    v << "{\"kind\":\"" << kind << "\",\"pool\":\"" << kSlotName[slot] << "\",\"object\":\""
      << JsonEscape(objects_[obj]) << "\",\"index\":" << index << ",\"op\":" << ops_ << ",\"t\":" << Elapsed()
      << ",\"restarts_known\":" << epoch_ << ",\"detail\":\"" << JsonEscape(detail) << "\"}";
    violations_.push_back(v.str());
    std::fprintf(stderr, "soak_client %u: VIOLATION %s\n", o_.id, violations_.back().c_str());
  }

  // After every call: a new instance id means tmemd restarted; the restart log says how.
  void NoteRestarts(const Before& before) {
    const uint64_t seen = client_->counters().restarts_seen.load();
    if (seen == before.restarts) return;
    std::ifstream in(o_.restart_log);
    std::string line;
    uint64_t n = 0;
    bool kill = false;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      if (++n <= log_lines_) continue;
      const bool k = line.find("kill") != std::string::npos;
      kill |= k;
      ++(k ? restarts_kill_ : restarts_clean_);
    }
    if (n > log_lines_) {
      epoch_ += n - log_lines_;
      log_lines_ = n;
    }
    if (log_lines_ < seen) {
      // The client saw more instance ids than the orchestrator made restarts.
      Violation("instance id changed without a restart", 0, 0, 0,
                "restarts_seen " + std::to_string(seen) + ", restarts made " + std::to_string(log_lines_));
      log_lines_ = seen;  // report it once
      kill = true;        // and assume the worst
    }
    if (!kill) return;
    // Everything the old instance acknowledged is gone; what later calls put (all of them
    // dropped, or the new instance's) may be there.
    for (Handle& h : handles_) {
      const size_t had = h.allowed.size();
      std::erase_if(h.allowed, [&](const Allowed& a) { return a.op <= last_good_op_; });
      if (had != 0 && h.allowed.empty()) {
        h.why = Why::kKill;
        h.why_op = ops_;
      }
    }
  }

  // After NoteRestarts: a call that an instance answered. A later kill -9 drops what it put.
  void Answered(bool answered) {
    answered_ = answered;
    if (answered) last_good_op_ = ops_;
  }

  // A get's answer for one handle, checked against the model and then applied to it.
  void CheckGet(int slot, int obj, uint64_t index, bool hit, bool reachable, std::span<const uint8_t> page) {
    Handle& h = H(slot, obj, index);
    if (!hit) {
      ++(reachable ? misses_ : misses_unreachable_);
      if (reachable && !h.uncertain && !h.allowed.empty()) {
        h.allowed.clear();
        h.why = Why::kMiss;
        h.why_op = ops_;
      }
      return;
    }
    ++hits_;
    PageId got;
    if (!ParsePage(page, &got)) {
      char head[80];
      std::snprintf(head, sizeof head, "%02x%02x%02x%02x%02x%02x%02x%02x", page[0], page[1], page[2], page[3], page[4],
                    page[5], page[6], page[7]);
      Violation("corrupt page", slot, obj, index, std::string("a hit that is no soak page; first bytes ") + head);
      return;
    }
    if (got.client != o_.id || got.slot != static_cast<uint32_t>(slot) || got.object != objects_[obj] ||
        got.index != index) {
      Violation("foreign page", slot, obj, index,
                "the hit holds client " + std::to_string(got.client) + " pool " +
                    (got.slot < kSlots ? kSlotName[got.slot] : "?") + " object " + got.object + " index " +
                    std::to_string(got.index) + " version " + std::to_string(got.version));
      return;
    }
    auto it =
        std::find_if(h.allowed.begin(), h.allowed.end(), [&](const Allowed& a) { return a.version == got.version; });
    if (it == h.allowed.end()) {
      std::string allowed;
      for (const Allowed& a : h.allowed) allowed += (allowed.empty() ? "" : ",") + std::to_string(a.version);
      std::string detail = "hit version " + std::to_string(got.version) + ", latest put " + std::to_string(h.latest) +
                           ", allowed {" + allowed + "}";
      std::string kind;
      if (h.allowed.empty()) {
        kind = "hit where a miss was due";
        detail += "; must miss because " + std::string(WhyName(h.why)) + " (op " + std::to_string(h.why_op) + ")";
      } else {
        kind = "stale version (put-put-get)";
      }
      Violation(kind, slot, obj, index, detail);
    } else {
      if (it->epoch < epoch_) ++warm_hits_;
      if (got.version < h.latest) {  // allowed only because the newer put was dropped
        ++older_after_drop_;
        if (o_.strict_dropped_puts) {
          Violation("older version after a dropped put", slot, obj, index,
                    "hit version " + std::to_string(got.version) + " after the put of " + std::to_string(h.latest) +
                        " was dropped (--strict-dropped-puts: put-put-get holds even when a put is dropped)");
        }
      }
    }
    if (slot == 0) {  // private pools are exclusive: the hit took the page
      h.allowed.clear();
      h.why = Why::kExclusiveGet;
      h.why_op = ops_;
    }
  }

  void Put(int slot, int obj, uint64_t first, uint64_t n) {
    std::vector<std::vector<uint8_t>> pages(n, std::vector<uint8_t>(kPageBytes));
    std::vector<TmemClient::PagePut> puts(n);
    std::vector<uint64_t> versions(n);
    for (uint64_t i = 0; i < n; ++i) {
      versions[i] = ++next_version_;
      MakePage({o_.id, static_cast<uint32_t>(slot), objects_[obj], first + i, versions[i]}, pages[i]);
      puts[i] = {objects_[obj], first + i, pages[i]};
    }
    const Before b = Snap();
    absl::Status st = client_->PutPages(pools_[slot], puts);
    if (!st.ok()) Fatal("PutPages: " + st.ToString());
    const bool dropped = client_->counters().puts_dropped.load() != b.dropped;
    NoteRestarts(b);
    Answered(!dropped);
    pages_put_ += n;
    if (dropped) pages_dropped_ += n;
    for (uint64_t i = 0; i < n; ++i) {
      Handle& h = H(slot, obj, first + i);
      h.latest = versions[i];
      const Allowed a{versions[i], ops_, epoch_};
      if (dropped) {
        h.allowed.push_back(a);  // maybe put; the older ones may still be there
        h.uncertain = true;
      } else {
        h.allowed.assign(1, a);
        h.uncertain = false;
      }
    }
  }

  void Get(int slot, int obj, uint64_t first, uint64_t n) {
    std::vector<std::vector<uint8_t>> pages(n, std::vector<uint8_t>(kPageBytes));
    std::vector<TmemClient::PageGet> gets(n);
    for (uint64_t i = 0; i < n; ++i) gets[i] = {objects_[obj], first + i, pages[i]};
    const Before b = Snap();
    absl::StatusOr<std::vector<bool>> hits = client_->GetPages(pools_[slot], gets);
    if (!hits.ok()) Fatal("GetPages: " + hits.status().ToString());
    const bool reachable = client_->counters().gets_unreachable.load() == b.unreachable;
    NoteRestarts(b);
    Answered(reachable);
    pages_got_ += n;
    for (uint64_t i = 0; i < n; ++i) CheckGet(slot, obj, first + i, (*hits)[i], reachable, pages[i]);
  }

  template <typename Fn>
  void Flush(Fn call, int slot, int obj_lo, int obj_hi, uint64_t idx_lo, uint64_t idx_hi, Why why) {
    const Before b = Snap();
    absl::Status st = call();
    if (!st.ok()) Fatal(std::string("flush: ") + st.ToString());
    const bool delivered = client_->counters().flushes_deferred.load() == b.deferred;
    NoteRestarts(b);
    Answered(delivered);
    for (int obj = obj_lo; obj < obj_hi; ++obj) {
      for (uint64_t i = idx_lo; i < idx_hi; ++i) {
        Handle& h = H(slot, obj, i);
        h.allowed.clear();
        h.uncertain = false;
        h.why = why;
        h.why_op = ops_;
      }
    }
  }

  void Step() {
    ++ops_;
    // The shared pool is every client's: its flush_pool is rarer.
    const int slot = static_cast<int>(Rand(kSlots));
    const int obj = static_cast<int>(Rand(o_.objects));
    const uint64_t pages = static_cast<uint64_t>(o_.pages);
    const uint64_t first = Rand(pages);
    const uint64_t n = std::min<uint64_t>(pages - first, 1 + (Rand(4) == 0 ? Rand(32) : Rand(4)));
    const uint64_t dice = Rand(10000);
    const PoolRef pool = pools_[slot];
    const std::string& key = objects_[obj];
    if (dice < 4200) {
      Put(slot, obj, first, n);
    } else if (dice < 8800) {
      Get(slot, obj, first, n);
    } else if (dice < 9700) {
      ++flush_page_;
      Flush([&] { return client_->FlushPage(pool, key, first); }, slot, obj, obj + 1, first, first + 1,
            Why::kFlushPage);
    } else if (dice < 9980) {
      ++flush_object_;
      Flush([&] { return client_->FlushObject(pool, key); }, slot, obj, obj + 1, 0, pages, Why::kFlushObject);
    } else if (slot == 0 || dice < 9985) {
      ++flush_pool_;
      Flush([&] { return client_->FlushPool(pool); }, slot, 0, o_.objects, 0, pages, Why::kFlushPool);
    } else {
      Get(slot, obj, first, n);
    }
    // tmemd is down or restarting: calls fail at once; do not spin.
    if (!answered_) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }

  // Before the JSON line: every handle read once more, whole objects at a time.
  void FinalPass() {
    for (int slot = 0; slot < kSlots; ++slot) {
      for (int obj = 0; obj < o_.objects; ++obj) {
        ++ops_;
        Get(slot, obj, 0, static_cast<uint64_t>(o_.pages));
        final_pages_ += static_cast<uint64_t>(o_.pages);
      }
    }
  }

  [[noreturn]] void Fatal(const std::string& what) {
    std::fprintf(stderr, "soak_client %u: %s\n", o_.id, what.c_str());
    std::printf("{\"client\":%u,\"fatal\":\"%s\"}\n", o_.id, JsonEscape(what).c_str());
    std::fflush(stdout);
    std::exit(2);
  }

  const Options o_;
  TmemClient* client_;
  const std::array<PoolRef, kSlots> pools_;
  std::mt19937_64 rng_;
  const Clock::time_point t0_;
  std::vector<std::string> objects_;
  std::vector<Handle> handles_;
  uint64_t next_version_ = 0;
  uint64_t ops_ = 0;
  bool answered_ = true;
  uint64_t last_good_op_ = 0;  // the last call that an instance answered (before any restart it showed)
  uint64_t epoch_ = 0;         // restarts applied to the model
  uint64_t log_lines_ = 0;     // restart log lines applied
  uint64_t pages_put_ = 0, pages_dropped_ = 0, pages_got_ = 0, hits_ = 0, misses_ = 0, misses_unreachable_ = 0;
  uint64_t flush_page_ = 0, flush_object_ = 0, flush_pool_ = 0, final_pages_ = 0, warm_hits_ = 0;
  uint64_t older_after_drop_ = 0, restarts_clean_ = 0, restarts_kill_ = 0, violation_count_ = 0;
  std::vector<std::string> violations_;
};

bool ParseUuid(const std::string& hex, std::array<uint8_t, 16>* out) {
  if (hex.size() != 32) return false;
  for (size_t i = 0; i < 16; ++i) {
    unsigned v;
    if (std::sscanf(hex.c_str() + 2 * i, "%2x", &v) != 1) return false;
    (*out)[i] = static_cast<uint8_t>(v);
  }
  return true;
}

[[noreturn]] void Usage(const std::string& why) {
  std::fprintf(stderr,
               "soak_client: %s\nusage: soak_client --server=HOST:PORT --id=N --restart-log=FILE [--seconds=S] "
               "[--seed=S] [--objects=16] [--pages=64] [--shared-uuid=HEX32] [--timeout-ms=3000] "
               "[--strict-dropped-puts=1]\n",
               why.c_str());
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto eq = a.find('=');
    if (a.rfind("--", 0) != 0 || eq == std::string::npos) Usage("bad argument " + a);
    std::string k = a.substr(2, eq - 2), v = a.substr(eq + 1);
    try {
      if (k == "server") {
        o.server = v;
      } else if (k == "id") {
        o.id = static_cast<uint32_t>(std::stoul(v));
      } else if (k == "restart-log") {
        o.restart_log = v;
      } else if (k == "seconds") {
        o.seconds = std::stod(v);
      } else if (k == "seed") {
        o.seed = std::stoull(v);
      } else if (k == "objects") {
        o.objects = std::stoi(v);
      } else if (k == "pages") {
        o.pages = std::stoi(v);
      } else if (k == "shared-uuid") {
        o.shared_uuid = v;
      } else if (k == "timeout-ms") {
        o.timeout_ms = std::stoll(v);
      } else if (k == "strict-dropped-puts") {
        o.strict_dropped_puts = v == "1" || v == "true";
      } else {
        Usage("unknown flag --" + k);
      }
    } catch (const std::exception&) {
      Usage("bad value in " + a);
    }
  }
  if (o.server.empty() || o.restart_log.empty()) Usage("--server and --restart-log are required");
  if (o.objects < 1 || o.objects > 1000 || o.pages < 1 || o.pages > 4096) Usage("--objects 1..1000, --pages 1..4096");
  std::array<uint8_t, 16> uuid;
  if (!ParseUuid(o.shared_uuid, &uuid)) Usage("--shared-uuid: 32 hex digits");
  signal(SIGTERM, OnSignal);
  signal(SIGINT, OnSignal);
  signal(SIGPIPE, SIG_IGN);

  tmem::client::ClientOptions co;
  co.servers = {o.server};
  co.call_timeout_ms = o.timeout_ms;
  co.transport = "wire";  // pages on the page wire protocol (a server without it would be unreachable)
  auto client = TmemClient::Create(co);
  if (!client.ok()) Usage(client.status().ToString());
  // Pools: tmemd may be down or slow to start; the library creates them on first use then.
  absl::StatusOr<PoolRef> priv = (*client)->CreatePool(kPageBytes);
  absl::StatusOr<PoolRef> shared = (*client)->CreateSharedPool(uuid, kPageBytes);
  if (!priv.ok() || !shared.ok()) {
    std::fprintf(stderr, "soak_client %u: pools: %s %s\n", o.id, priv.status().ToString().c_str(),
                 shared.status().ToString().c_str());
    return 2;
  }
  Soak soak(o, client->get(), {*priv, *shared});
  soak.Run();
  std::printf("%s\n", soak.Json().c_str());
  std::fflush(stdout);
  return soak.violation_count() == 0 ? 0 : 1;
}
