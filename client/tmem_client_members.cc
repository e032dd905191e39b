// TmemClient's membership: the servers objects are spread over (a static list and dns:
// entries asked again while the client runs), rendezvous placement over them, and where each
// object was last put, so that a moved object's former server forgets it (docs/client.md).
#include <algorithm>
#include <atomic>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/dns_members.h"
#include "client/tmem_client.h"
#include "client/tmem_client_parts.h"
#include "common/logging.h"

namespace tmem::client {

TmemClient::Server* TmemClient::ServerOf(const std::string& address) {
  for (auto& s : servers_) {
    if (s->address == address) return s.get();
  }
  auto s = std::make_unique<Server>();
  s->address = address;
  {
    MutexLock lock(&s->mu);
    s->rpc = NewPagePoolClient(channels_, address);
    s->stub_created = std::chrono::steady_clock::now();
    s->streams.resize(options_.streams_per_server);
    s->backoff_ms = options_.reconnect_min_ms;
  }
  servers_.push_back(std::move(s));
  return servers_.back().get();
}

std::shared_ptr<const TmemClient::Members> TmemClient::CurrentMembers() const {
  MutexLock lock(&members_mu_);
  return members_;
}

std::vector<TmemClient::Server*> TmemClient::AllServers() const {
  MutexLock lock(&members_mu_);
  std::vector<Server*> all;
  for (const auto& s : servers_) all.push_back(s.get());
  return all;
}

std::vector<std::string> TmemClient::members() const {
  std::vector<std::string> out;
  for (const Server* s : CurrentMembers()->list) out.push_back(s->address);
  return out;
}

bool TmemClient::RefreshMembers() {
  std::vector<std::string> addresses = static_servers_;
  for (const auto& [name, port] : dns_targets_) {
    absl::StatusOr<std::vector<std::string>> got = ResolveMembers({name, port}, options_.dns_server);
    if (!got.ok()) {
      TMEM_LOG_RATE_LIMITED(Warning) << "dns:" << name << ":" << port << ": " << got.status().message()
                                     << "; the servers stay as they were";
      return false;
    }
    if (got->empty()) {
      TMEM_LOG_RATE_LIMITED(Warning) << "dns:" << name << ":" << port
                                     << " has no address now; the servers stay as they were";
      return false;
    }
    addresses.insert(addresses.end(), got->begin(), got->end());
  }
  std::sort(addresses.begin() + static_cast<ptrdiff_t>(static_servers_.size()), addresses.end());
  addresses.erase(std::unique(addresses.begin(), addresses.end()), addresses.end());
  std::shared_ptr<const Members> old;
  std::vector<Server*> lost_history_targets;
  {
    MutexLock lock(&members_mu_);
    old = members_;
    std::vector<std::string> now;
    for (const Server* s : old->list) now.push_back(s->address);
    if (now == addresses && !old->list.empty()) return false;
    auto m = std::make_shared<Members>();
    for (const std::string& a : addresses) m->list.push_back(ServerOf(a));
    m->version = old->version + 1;
    members_ = m;
    if (old->version > 0 || !old->list.empty()) lost_history_targets = old->list;
  }
  if (old->version > 0) counters_.membership_changes.fetch_add(1, std::memory_order_relaxed);
  TMEM_LOG(Info) << "servers now: " << absl::StrJoin(addresses, ",");
  // Objects move only with a membership change. Where the last put of each is remembered, its
  // former server is flushed of it when it is next put (NoteOwner); if that memory overflowed,
  // every former server forgets every pool now instead (more misses, the same guarantee).
  bool lost;
  {
    MutexLock lock(&owners_mu_);
    lost = owners_lost_;
    owners_lost_ = false;
  }
  if (lost) {
    std::vector<PoolRef> refs;
    {
      MutexLock lock(&mu_);
      for (const auto& [ref, pool] : pools_) refs.push_back(ref);
    }
    for (Server* s : lost_history_targets) {
      MutexLock lock(&s->mu);
      for (PoolRef ref : refs) DeferFlush(*s, {DeferredFlush::Kind::kPool, ref, "", 0});
    }
  }
  return true;
}

void TmemClient::RefreshLoop() {
  while (true) {
    {
      MutexLock lock(&refresh_mu_);
      const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.dns_refresh_ms);
      while (!stopping_) {
        const auto now = std::chrono::steady_clock::now();
        if (now >= until) break;
        refresh_cv_.WaitFor(&refresh_mu_, until - now);
      }
      if (stopping_) return;
    }
    RefreshMembers();
  }
}

void TmemClient::NoteOwner(const Pool& pool, std::string_view object, Server* server) {
  if (dns_targets_.empty()) return;  // a static list never moves an object
  const uint64_t key = StableHash(pool.hash_key, object, "owner");
  Server* former = nullptr;
  {
    MutexLock lock(&owners_mu_);
    auto [it, inserted] = owners_.try_emplace(key, server);
    if (!inserted && it->second != server) {
      former = it->second;
      it->second = server;
    }
    if (inserted && owners_.size() > options_.max_tracked_objects) {
      owners_.clear();
      owners_lost_ = true;
    }
  }
  if (former == nullptr) return;
  MutexLock lock(&former->mu);
  DeferFlush(*former, {DeferredFlush::Kind::kObject, pool.ref, std::string(object), 0});
  counters_.moved_object_flushes.fetch_add(1, std::memory_order_relaxed);
}

size_t TmemClient::ServerFor(PoolRef ref, std::string_view object) const {
  std::string key;
  {
    MutexLock lock(&mu_);
    auto it = pools_.find(ref);
    key = it == pools_.end() ? absl::StrCat("p", ref) : it->second->hash_key;
  }
  return ServerForKey(*CurrentMembers(), key, object);
}

size_t TmemClient::ServerForKey(const Members& m, std::string_view hash_key, std::string_view object) {
  size_t best = 0;
  uint64_t best_score = 0;
  for (size_t i = 0; i < m.list.size(); ++i) {
    uint64_t score = StableHash(hash_key, object, m.list[i]->address);
    if (i == 0 || score > best_score) {
      best = i;
      best_score = score;
    }
  }
  return best;
}

size_t TmemClient::ThreadStream() const {
  static std::atomic<size_t> next_thread{0};
  thread_local const size_t thread_number = next_thread.fetch_add(1, std::memory_order_relaxed);
  return thread_number % static_cast<size_t>(options_.streams_per_server);
}

std::vector<TmemClient::Part> TmemClient::Split(const Members& m, const Pool& pool, size_t count,
                                                const std::function<std::string_view(size_t)>& object,
                                                const std::vector<char>* own_stream) const {
  const size_t streams = static_cast<size_t>(options_.streams_per_server);
  const size_t mine = own_stream != nullptr && streams > 1 ? ThreadStream() : 0;
  std::vector<size_t> where(m.list.size() * streams, SIZE_MAX);
  std::vector<Part> parts;
  for (size_t i = 0; i < count; ++i) {
    const size_t server = m.list.size() == 1 ? 0 : ServerForKey(m, pool.hash_key, object(i));
    const size_t stream = streams == 1 ? 0
                          : own_stream != nullptr && (*own_stream)[server]
                              ? mine
                              : std::hash<std::string_view>()(object(i)) % streams;
    size_t& at = where[server * streams + stream];
    if (at == SIZE_MAX) {
      at = parts.size();
      parts.push_back({server, stream, {}});
    }
    parts[at].items.push_back(i);
  }
  return parts;
}

}  // namespace tmem::client
