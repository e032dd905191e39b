#include "kshim/relay/relay.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <span>

#include "common/logging.h"

namespace tmem::kshim {

std::string ObjectKey(std::span<const uint8_t, TMEM_SHIM_KEY_BYTES> key) {
  size_t n = key.size();
  while (n > 1 && key[n - 1] == 0) --n;
  return std::string(reinterpret_cast<const char*>(key.data()), n);
}

Relay::Relay(client::TmemClient* client, RelayOptions options) : client_(client), options_(std::move(options)) {}

absl::Status Relay::Serve(ShimDevice& device, const std::atomic<bool>& stop) {
  absl::StatusOr<ShimMapping> map = device.Attach();
  if (!map.ok()) return map.status();
  counters_.attaches.fetch_add(1, std::memory_order_relaxed);
  counters_.attached.store(1, std::memory_order_relaxed);
  // Whatever ends this attach (stop, device error, impossible ring) leaves the relay detached.
  struct Detached {
    std::atomic<uint64_t>& attached;
    ~Detached() { attached.store(0, std::memory_order_relaxed); }
  } detached{counters_.attached};
  pools_.clear();  // the module announces every pool again (its ids may have changed)
  prefetched_.clear();
  prefetch_order_.clear();
  last_get_.clear();
  tsr_side side{map->area, map->nr_slots, 0, 0};
  while (!stop.load(std::memory_order_relaxed)) {
    if (absl::Status st = device.Wait(options_.wait_ms); !st.ok()) return st;
    if (!Round(side, *map)) return absl::DataLossError("the request ring's indices are impossible");
    if (absl::Status st = device.Kick(); !st.ok()) return st;
  }
  return absl::OkStatus();
}

void Relay::Answer(tsr_side& side, const tmem_shim_req& req, int32_t result) {
  tmem_shim_resp r{req.seq, req.tag, result};
  // Cannot be full: the module has at most nr_slots requests outstanding, one answer each.
  if (tsr_resp_push(&side, &r) != 0) counters_.bad_requests.fetch_add(1, std::memory_order_relaxed);
}

const Relay::Pool* Relay::Find(uint32_t shim_pool) {
  auto it = pools_.find(shim_pool);
  return it == pools_.end() ? nullptr : &it->second;
}

bool Relay::Round(tsr_side& side, const ShimMapping& map) {
  std::vector<tmem_shim_req> reqs;
  tmem_shim_req req;
  int rc;
  while ((rc = tsr_req_pop(&side, &req)) == 1) reqs.push_back(req);
  if (rc < 0) return false;
  counters_.requests.fetch_add(reqs.size(), std::memory_order_relaxed);
  size_t i = 0;
  while (i < reqs.size()) {
    const tmem_shim_req& r = reqs[i];
    if (r.tag >= map.nr_slots) {  // cannot be answered: its tag names no slot
      counters_.bad_requests.fetch_add(1, std::memory_order_relaxed);
      ++i;
      continue;
    }
    if (r.op == TMEM_SHIM_OP_PUT || r.op == TMEM_SHIM_OP_GET) {
      size_t end = i + 1;
      while (end < reqs.size() && reqs[end].op == r.op && reqs[end].pool == r.pool && reqs[end].tag < map.nr_slots)
        ++end;
      if (r.op == TMEM_SHIM_OP_PUT) {
        PutRun(side, map, reqs, i, end);
      } else {
        GetRun(side, map, reqs, i, end);
      }
      i = end;
      continue;
    }
    switch (r.op) {
      case TMEM_SHIM_OP_INIT_FS:
      case TMEM_SHIM_OP_INIT_SHARED_FS:
        Announce(r);
        Answer(side, r, TMEM_SHIM_OK);
        break;
      case TMEM_SHIM_OP_INVALIDATE_PAGE:
      case TMEM_SHIM_OP_INVALIDATE_INODE:
      case TMEM_SHIM_OP_FLUSH_POOL:
        Answer(side, r, Invalidate(r));
        break;
      case TMEM_SHIM_OP_INVALIDATE_FS:
        Release(r);
        Answer(side, r, TMEM_SHIM_OK);
        break;
      default:
        counters_.bad_requests.fetch_add(1, std::memory_order_relaxed);
        Answer(side, r, -22);
        break;
    }
    ++i;
  }
  return true;
}

void Relay::Announce(const tmem_shim_req& req) {
  Pool p;
  std::memcpy(p.uuid.data(), req.key, p.uuid.size());
  p.shared = req.op == TMEM_SHIM_OP_INIT_SHARED_FS;
  auto known = by_uuid_.find(p.uuid);
  if (known != by_uuid_.end()) {
    p.ref = known->second;
  } else {
    // Never fails for an unreachable server (the pool is made there on first use); only a
    // page size tmemd refuses does, and then the pool stays unmapped: its puts are dropped,
    // its gets miss.
    absl::StatusOr<client::PoolRef> ref = client_->CreateSharedPool(p.uuid, req.page_bytes, options_.tenant);
    if (!ref.ok()) {
      TMEM_LOG(Warning) << "tmem-shimd: pool " << req.pool << " refused by tmemd: " << ref.status();
      pools_.erase(req.pool);
      return;
    }
    p.ref = *ref;
    by_uuid_[p.uuid] = p.ref;
  }
  pools_[req.pool] = p;
  counters_.pools_announced.fetch_add(1, std::memory_order_relaxed);
}

void Relay::Forget(uint32_t shim_pool, const std::string* object, const uint64_t* index) {
  if (prefetched_.empty()) return;
  if (object != nullptr && index != nullptr) {
    prefetched_.erase(PageKey{shim_pool, *object, *index});
    return;
  }
  auto lo = prefetched_.lower_bound(PageKey{shim_pool, object ? *object : std::string(), 0});
  auto hi = object ? prefetched_.upper_bound(PageKey{shim_pool, *object, UINT64_MAX})
                   : prefetched_.lower_bound(PageKey{shim_pool + 1, std::string(), 0});
  prefetched_.erase(lo, hi);
}

void Relay::Release(const tmem_shim_req& req) {
  Forget(req.pool, nullptr, nullptr);
  auto it = pools_.find(req.pool);
  if (it == pools_.end()) return;
  if (!it->second.shared) {
    // A private pool's pages can never be asked for again: free them in tmemd.
    (void)client_->DestroyPool(it->second.ref);
    by_uuid_.erase(it->second.uuid);
  }
  pools_.erase(it);
  counters_.pools_released.fetch_add(1, std::memory_order_relaxed);
}

void Relay::PutRun(tsr_side& side, const ShimMapping& map, const std::vector<tmem_shim_req>& reqs, size_t begin,
                   size_t end) {
  counters_.puts.fetch_add(end - begin, std::memory_order_relaxed);
  counters_.batches.fetch_add(1, std::memory_order_relaxed);
  std::vector<std::string> objects;
  objects.reserve(end - begin);
  for (size_t i = begin; i < end; ++i) {
    objects.push_back(ObjectKey(reqs[i].key));
    const uint64_t index = reqs[i].index;
    Forget(reqs[i].pool, &objects.back(), &index);  // a newer page than any prefetched copy
  }
  if (const Pool* pool = Find(reqs[begin].pool); pool != nullptr) {
    std::vector<client::TmemClient::PagePut> puts;
    for (size_t i = begin; i < end; ++i) {
      const uint8_t* slot = tsr_slot(map.area, map.nr_slots, map.page_bytes, reqs[i].tag);
      puts.push_back({objects[i - begin], reqs[i].index, std::span<const uint8_t>(slot, map.page_bytes)});
    }
    (void)client_->PutPages(pool->ref, puts);  // a put may be dropped; nothing to tell the module
  }
  for (size_t i = begin; i < end; ++i) Answer(side, reqs[i], TMEM_SHIM_OK);
}

void Relay::GetRun(tsr_side& side, const ShimMapping& map, const std::vector<tmem_shim_req>& reqs, size_t begin,
                   size_t end) {
  counters_.gets.fetch_add(end - begin, std::memory_order_relaxed);
  counters_.batches.fetch_add(1, std::memory_order_relaxed);
  const uint32_t shim_pool = reqs[begin].pool;
  std::vector<bool> hits(end - begin, false);
  if (const Pool* pool = Find(shim_pool); pool != nullptr) {
    std::vector<std::string> objects;
    objects.reserve(end - begin);
    std::vector<size_t> remote;                           // positions in the run asked of tmemd
    std::vector<std::pair<std::string, uint64_t>> ahead;  // pages to fetch ahead
    if (last_get_.size() > 65536) last_get_.clear();
    for (size_t i = begin; i < end; ++i) {
      objects.push_back(ObjectKey(reqs[i].key));
      const std::string& object = objects.back();
      const uint64_t index = reqs[i].index;
      FileReads& file = last_get_[{shim_pool, object}];
      const bool sequential = file.last + 1 == index && index != 0;
      file.last = index;
      auto got = prefetched_.find(PageKey{shim_pool, object, index});
      if (got != prefetched_.end()) {
        std::memcpy(tsr_slot(map.area, map.nr_slots, map.page_bytes, reqs[i].tag), got->second.data(), map.page_bytes);
        prefetched_.erase(got);
        hits[i - begin] = true;
        counters_.prefetch_hits.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      remote.push_back(i);
      // Not for a shared pool: other clients' invalidations reach tmemd without passing here,
      // so a copy kept here could outlive one of them.
      if (!sequential || !file.last_remote_hit || pool->shared) continue;
      for (int k = 1; k < options_.prefetch_pages; ++k) {
        if (!prefetched_.count(PageKey{shim_pool, object, index + k})) ahead.emplace_back(object, index + k);
      }
    }
    if (!remote.empty()) {
      std::vector<client::TmemClient::PageGet> gets;
      for (size_t i : remote) {
        uint8_t* slot = tsr_slot(map.area, map.nr_slots, map.page_bytes, reqs[i].tag);
        gets.push_back({objects[i - begin], reqs[i].index, std::span<uint8_t>(slot, map.page_bytes)});
      }
      std::vector<std::vector<uint8_t>> pages(ahead.size(), std::vector<uint8_t>(map.page_bytes));
      for (size_t k = 0; k < ahead.size(); ++k) gets.push_back({ahead[k].first, ahead[k].second, pages[k]});
      absl::StatusOr<std::vector<bool>> got = client_->GetPages(pool->ref, gets);
      if (got.ok()) {
        for (size_t r = 0; r < remote.size(); ++r) {
          const size_t i = remote[r];
          hits[i - begin] = (*got)[r];
          last_get_[{shim_pool, objects[i - begin]}].last_remote_hit = (*got)[r];
        }
        for (size_t k = 0; k < ahead.size(); ++k) {
          if (!(*got)[remote.size() + k]) continue;
          PageKey key{shim_pool, ahead[k].first, ahead[k].second};
          prefetch_order_.push_back(key);
          prefetched_[std::move(key)] = std::move(pages[k]);
          counters_.prefetched.fetch_add(1, std::memory_order_relaxed);
        }
        while (prefetched_.size() > static_cast<size_t>(std::max(0, options_.prefetch_cache_pages)) &&
               !prefetch_order_.empty()) {
          prefetched_.erase(prefetch_order_.front());  // oldest first (a copy already used is gone)
          prefetch_order_.pop_front();
        }
        if (prefetch_order_.size() > 4 * prefetched_.size() + 1024) {  // drop keys of copies used
          std::deque<PageKey> live;
          for (auto& k : prefetch_order_) {
            if (prefetched_.count(k)) live.push_back(std::move(k));
          }
          prefetch_order_.swap(live);
        }
      }
    }
  }
  for (size_t i = begin; i < end; ++i) {
    const bool hit = hits[i - begin];
    if (hit) counters_.get_hits.fetch_add(1, std::memory_order_relaxed);
    Answer(side, reqs[i], hit ? TMEM_SHIM_HIT : TMEM_SHIM_MISS);
  }
}

int32_t Relay::Invalidate(const tmem_shim_req& req) {
  const std::string object = ObjectKey(req.key);
  const uint64_t index = req.index;
  Forget(req.pool, req.op == TMEM_SHIM_OP_FLUSH_POOL ? nullptr : &object,
         req.op == TMEM_SHIM_OP_INVALIDATE_PAGE ? &index : nullptr);
  const Pool* pool = Find(req.pool);
  if (pool == nullptr) return TMEM_SHIM_OK;  // only a pool tmemd refused is unmapped: it holds no page
  const uint64_t deferred_before = client_->counters().flushes_deferred.load();
  absl::Status st;
  switch (req.op) {
    case TMEM_SHIM_OP_INVALIDATE_PAGE:
      counters_.invalidations.fetch_add(1, std::memory_order_relaxed);
      st = client_->FlushPage(pool->ref, object, req.index);
      break;
    case TMEM_SHIM_OP_INVALIDATE_INODE:
      counters_.invalidations.fetch_add(1, std::memory_order_relaxed);
      st = client_->FlushObject(pool->ref, object);
      break;
    default:
      counters_.pool_flushes.fetch_add(1, std::memory_order_relaxed);
      st = client_->FlushPool(pool->ref);
      break;
  }
  if (!st.ok()) {
    TMEM_LOG(Warning) << "tmem-shimd: flush refused: " << st;
    // An invalidation that failed makes the module flush the pool whole; a whole-pool flush
    // that failed (the pool is gone from the client) has nothing left to flush.
    return req.op == TMEM_SHIM_OP_FLUSH_POOL ? TMEM_SHIM_OK : -5;
  }
  // This thread is the client's only caller, so a change of the counter is this flush's.
  if (client_->counters().flushes_deferred.load() != deferred_before) {
    counters_.invalidations_deferred.fetch_add(1, std::memory_order_relaxed);
    return TMEM_SHIM_DEFERRED;
  }
  return TMEM_SHIM_OK;
}

}  // namespace tmem::kshim
