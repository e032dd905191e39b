#include "client/tmem_client.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "proto/tmem_clients.h"

namespace tmem::client {
namespace {

// FNV-1a then a splitmix64 finish: stable across processes and builds, so that every client
// places an object on the same server.
uint64_t StableHash(std::string_view a, std::string_view b, std::string_view c) {
  uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&](std::string_view s) {
    for (unsigned char ch : s) {
      h ^= ch;
      h *= 0x100000001b3ull;
    }
    h ^= 0xff;
    h *= 0x100000001b3ull;
  };
  mix(a);
  mix(b);
  mix(c);
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  return h ^ (h >> 31);
}

std::shared_ptr<tmem::v1::PagePoolClient> NewPagePoolClient(const std::string& address) {
  ::grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  return tmem::v1::PagePool::NewStub(::grpc::CreateCustomChannel(address, ::grpc::InsecureChannelCredentials(), args));
}

struct DeferredFlush {
  enum class Kind { kPage, kObject, kPool } kind;
  PoolRef pool;
  std::string object;
  uint64_t index = 0;
};

}  // namespace

struct TmemClient::Pool {
  PoolRef ref;
  bool shared;
  std::array<uint8_t, 16> uuid;
  std::string tenant;
  uint32_t page_bytes;
  std::string hash_key;  // what rendezvous hashing sees: stable for shared pools across clients
};

struct TmemClient::Server {
  std::string address;
  // Held across the replay of deferred flushes and pool creation, so that nothing else reaches
  // this server before them. Calls themselves run without it, on a copy of `rpc`.
  Mutex mu;
  // Replaced (at most once a second) after a call fails with UNAVAILABLE: a fresh channel
  // connects on its first call, where a long-lived one may sit in reconnect backoff.
  std::shared_ptr<tmem::v1::PagePoolClient> rpc ABSL_GUARDED_BY(mu);
  std::chrono::steady_clock::time_point stub_created ABSL_GUARDED_BY(mu);
  uint64_t instance ABSL_GUARDED_BY(mu) = 0;
  std::map<PoolRef, uint32_t> pool_ids ABSL_GUARDED_BY(mu);
  std::vector<DeferredFlush> deferred ABSL_GUARDED_BY(mu);
};

namespace {
// After a failed call: an unreachable server gets a fresh channel, at most once a second.
void NoteFailure(TmemClient::Server& s, const ::grpc::Status& st) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
  if (st.error_code() != ::grpc::StatusCode::UNAVAILABLE) return;
  const auto now = std::chrono::steady_clock::now();
  if (now - s.stub_created < std::chrono::seconds(1)) return;
  s.rpc = NewPagePoolClient(s.address);
  s.stub_created = now;
}
}  // namespace

namespace {

void SetDeadline(::grpc::ClientContext* ctx, int64_t timeout_ms) {
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms));
}

absl::Status FromGrpc(const ::grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

}  // namespace

TmemClient::TmemClient(const ClientOptions& options) : options_(options) {}
TmemClient::~TmemClient() = default;

absl::StatusOr<std::unique_ptr<TmemClient>> TmemClient::Create(const ClientOptions& options) {
  if (options.servers.empty()) return absl::InvalidArgumentError("no servers");
  if (std::set<std::string>(options.servers.begin(), options.servers.end()).size() != options.servers.size()) {
    return absl::InvalidArgumentError("a server is listed twice");
  }
  if (options.call_timeout_ms <= 0) return absl::InvalidArgumentError("call timeout must be positive");
  std::unique_ptr<TmemClient> c(new TmemClient(options));
  for (const std::string& address : options.servers) {
    auto s = std::make_unique<Server>();
    s->address = address;
    MutexLock lock(&s->mu);
    s->rpc = NewPagePoolClient(address);
    s->stub_created = std::chrono::steady_clock::now();
    c->servers_.push_back(std::move(s));
  }
  return c;
}

size_t TmemClient::ServerFor(PoolRef ref, std::string_view object) const {
  std::string key;
  {
    MutexLock lock(&mu_);
    auto it = pools_.find(ref);
    key = it == pools_.end() ? absl::StrCat("p", ref) : it->second->hash_key;
  }
  size_t best = 0;
  uint64_t best_score = 0;
  for (size_t i = 0; i < servers_.size(); ++i) {
    uint64_t score = StableHash(key, object, servers_[i]->address);
    if (i == 0 || score > best_score) {
      best = i;
      best_score = score;
    }
  }
  return best;
}

TmemClient::Pool* TmemClient::FindPool(PoolRef ref) {
  MutexLock lock(&mu_);
  auto it = pools_.find(ref);
  return it == pools_.end() ? nullptr : it->second.get();  // pools are never removed
}

absl::StatusOr<PoolRef> TmemClient::CreateSharedPool(const std::array<uint8_t, 16>& uuid, uint32_t page_bytes,
                                                     const std::string& tenant) {
  auto pool = std::make_unique<Pool>();
  pool->shared = true;
  pool->uuid = uuid;
  pool->tenant = tenant;
  pool->page_bytes = page_bytes == 0 ? 4096 : page_bytes;
  pool->hash_key = absl::StrCat("s", tenant, "/", std::string(uuid.begin(), uuid.end()));
  Pool* p = pool.get();
  {
    MutexLock lock(&mu_);
    pool->ref = next_ref_++;
    pools_[pool->ref] = std::move(pool);
  }
  // Create it everywhere now; a server that does not answer gets it on first use. A server that
  // rejects the request (bad page size, bad UUID) makes the whole call fail.
  bool any = false;
  for (auto& s : servers_) {
    absl::StatusOr<uint32_t> id = Prepare(*s, *p);
    if (id.ok()) any = true;
    if (!id.ok() && absl::IsInvalidArgument(id.status())) return id.status();
  }
  (void)any;
  return p->ref;
}

absl::StatusOr<PoolRef> TmemClient::CreatePool(uint32_t page_bytes) {
  auto pool = std::make_unique<Pool>();
  pool->shared = false;
  pool->uuid = {};
  pool->page_bytes = page_bytes == 0 ? 4096 : page_bytes;
  Pool* p = pool.get();
  {
    MutexLock lock(&mu_);
    pool->ref = next_ref_++;
    pool->hash_key = absl::StrCat("p", pool->ref);
    pools_[pool->ref] = std::move(pool);
  }
  for (auto& s : servers_) {
    absl::StatusOr<uint32_t> id = Prepare(*s, *p);
    if (!id.ok() && absl::IsInvalidArgument(id.status())) return id.status();
  }
  return p->ref;
}

absl::StatusOr<uint32_t> TmemClient::Prepare(Server& s, Pool& pool) {
  MutexLock lock(&s.mu);
  auto note_instance = [&](uint64_t instance) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
    if (s.instance != 0 && instance != s.instance) counters_.restarts_seen.fetch_add(1, std::memory_order_relaxed);
    s.instance = instance;
  };
  // Deferred flushes first, in order: nothing may reach this server before them.
  while (!s.deferred.empty()) {
    const DeferredFlush& f = s.deferred.front();
    auto id = s.pool_ids.find(f.pool);
    if (id != s.pool_ids.end()) {
      ::grpc::ClientContext ctx;
      SetDeadline(&ctx, options_.call_timeout_ms);
      ::grpc::Status st;
      uint64_t instance = 0;
      if (f.kind == DeferredFlush::Kind::kPage) {
        tmem::v1::FlushPagesRequest req;
        req.set_pool_id(id->second);
        auto* h = req.add_handles();
        h->set_object(f.object);
        h->set_index(f.index);
        tmem::v1::FlushPagesResponse resp;
        st = s.rpc->FlushPages(&ctx, req, &resp);
        instance = resp.instance_id();
      } else if (f.kind == DeferredFlush::Kind::kObject) {
        tmem::v1::FlushObjectRequest req;
        req.set_pool_id(id->second);
        req.set_object(f.object);
        tmem::v1::FlushObjectResponse resp;
        st = s.rpc->FlushObject(&ctx, req, &resp);
        instance = resp.instance_id();
      } else {
        tmem::v1::FlushPoolRequest req;
        req.set_pool_id(id->second);
        tmem::v1::FlushPoolResponse resp;
        st = s.rpc->FlushPool(&ctx, req, &resp);
        instance = resp.instance_id();
      }
      // NOT_FOUND: the server lost the pool, and with it the pages to flush.
      if (!st.ok() && st.error_code() != ::grpc::StatusCode::NOT_FOUND) {
        NoteFailure(s, st);
        return FromGrpc(st);
      }
      if (st.ok()) note_instance(instance);
      if (!st.ok()) s.pool_ids.erase(f.pool);
    }
    // A flush for a pool never created on this server has nothing to flush there.
    s.deferred.erase(s.deferred.begin());
    counters_.flushes_replayed.fetch_add(1, std::memory_order_relaxed);
  }
  auto it = s.pool_ids.find(pool.ref);
  if (it != s.pool_ids.end()) return it->second;
  ::grpc::ClientContext ctx;
  SetDeadline(&ctx, options_.call_timeout_ms);
  tmem::v1::CreatePoolResponse resp;
  ::grpc::Status st;
  if (pool.shared) {
    tmem::v1::CreateSharedPoolRequest req;
    req.set_uuid(std::string(pool.uuid.begin(), pool.uuid.end()));
    req.set_page_bytes(pool.page_bytes);
    req.set_tenant(pool.tenant);
    st = s.rpc->CreateSharedPool(&ctx, req, &resp);
  } else {
    tmem::v1::CreatePoolRequest req;
    req.set_page_bytes(pool.page_bytes);
    st = s.rpc->CreatePool(&ctx, req, &resp);
  }
  if (!st.ok()) {
    NoteFailure(s, st);
    return FromGrpc(st);
  }
  note_instance(resp.instance_id());
  s.pool_ids[pool.ref] = resp.pool_id();
  return resp.pool_id();
}

absl::Status TmemClient::Put(PoolRef ref, std::string_view object, uint64_t index, std::span<const uint8_t> page) {
  Pool* pool = FindPool(ref);
  if (pool == nullptr) return absl::NotFoundError(absl::StrCat("pool ", ref, " was not created by this client"));
  if (page.size() != pool->page_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("page of ", page.size(), " bytes for a pool of ", pool->page_bytes,
                                                   "-byte pages"));
  }
  Server& s = *servers_[ServerFor(ref, object)];
  absl::StatusOr<uint32_t> id = Prepare(s, *pool);
  if (!id.ok()) {
    counters_.puts_dropped.fetch_add(1, std::memory_order_relaxed);
    TMEM_LOG_RATE_LIMITED(Warning) << "put dropped: " << s.address << " is not ready: " << id.status();
    return absl::OkStatus();
  }
  std::shared_ptr<tmem::v1::PagePoolClient> rpc;
  {
    MutexLock lock(&s.mu);
    rpc = s.rpc;
  }
  tmem::v1::PutPagesRequest req;
  req.set_pool_id(*id);
  auto* p = req.add_pages();
  p->mutable_handle()->set_object(std::string(object));
  p->mutable_handle()->set_index(index);
  p->set_data(std::string(reinterpret_cast<const char*>(page.data()), page.size()));
  ::grpc::ClientContext ctx;
  SetDeadline(&ctx, options_.call_timeout_ms);
  tmem::v1::PutPagesResponse resp;
  ::grpc::Status st = rpc->PutPages(&ctx, req, &resp);
  MutexLock lock(&s.mu);
  if (!st.ok()) {
    if (st.error_code() == ::grpc::StatusCode::NOT_FOUND) s.pool_ids.erase(ref);
    NoteFailure(s, st);
    counters_.puts_dropped.fetch_add(1, std::memory_order_relaxed);
    TMEM_LOG_RATE_LIMITED(Warning) << "put to " << s.address << " dropped: " << st.error_message();
    return absl::OkStatus();
  }
  if (s.instance != 0 && resp.instance_id() != s.instance) counters_.restarts_seen.fetch_add(1);
  s.instance = resp.instance_id();
  return absl::OkStatus();
}

absl::StatusOr<bool> TmemClient::Get(PoolRef ref, std::string_view object, uint64_t index, std::span<uint8_t> out) {
  Pool* pool = FindPool(ref);
  if (pool == nullptr) return absl::NotFoundError(absl::StrCat("pool ", ref, " was not created by this client"));
  if (out.size() != pool->page_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("buffer of ", out.size(), " bytes for a pool of ",
                                                   pool->page_bytes, "-byte pages"));
  }
  Server& s = *servers_[ServerFor(ref, object)];
  absl::StatusOr<uint32_t> id = Prepare(s, *pool);
  if (!id.ok()) {
    counters_.gets_unreachable.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  std::shared_ptr<tmem::v1::PagePoolClient> rpc;
  {
    MutexLock lock(&s.mu);
    rpc = s.rpc;
  }
  tmem::v1::GetPagesRequest req;
  req.set_pool_id(*id);
  auto* h = req.add_handles();
  h->set_object(std::string(object));
  h->set_index(index);
  ::grpc::ClientContext ctx;
  SetDeadline(&ctx, options_.call_timeout_ms);
  tmem::v1::GetPagesResponse resp;
  ::grpc::Status st = rpc->GetPages(&ctx, req, &resp);
  {
    MutexLock lock(&s.mu);
    if (!st.ok()) {
      if (st.error_code() == ::grpc::StatusCode::NOT_FOUND) s.pool_ids.erase(ref);
      NoteFailure(s, st);
      counters_.gets_unreachable.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    if (s.instance != 0 && resp.instance_id() != s.instance) counters_.restarts_seen.fetch_add(1);
    s.instance = resp.instance_id();
  }
  if (resp.results_size() != 1 || !resp.results(0).hit()) return false;
  const std::string& data = resp.results(0).data();
  if (data.size() != out.size()) return false;
  std::copy(data.begin(), data.end(), out.begin());
  return true;
}

absl::Status TmemClient::FlushPage(PoolRef ref, std::string_view object, uint64_t index) {
  Pool* pool = FindPool(ref);
  if (pool == nullptr) return absl::NotFoundError(absl::StrCat("pool ", ref, " was not created by this client"));
  Server& s = *servers_[ServerFor(ref, object)];
  {
    // Queue it, then let Prepare deliver it with anything queued before it.
    MutexLock lock(&s.mu);
    s.deferred.push_back({DeferredFlush::Kind::kPage, ref, std::string(object), index});
  }
  if (!Prepare(s, *pool).ok()) counters_.flushes_deferred.fetch_add(1, std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::Status TmemClient::FlushObject(PoolRef ref, std::string_view object) {
  Pool* pool = FindPool(ref);
  if (pool == nullptr) return absl::NotFoundError(absl::StrCat("pool ", ref, " was not created by this client"));
  Server& s = *servers_[ServerFor(ref, object)];
  {
    MutexLock lock(&s.mu);
    s.deferred.push_back({DeferredFlush::Kind::kObject, ref, std::string(object), 0});
  }
  if (!Prepare(s, *pool).ok()) counters_.flushes_deferred.fetch_add(1, std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::Status TmemClient::FlushPool(PoolRef ref) {
  Pool* pool = FindPool(ref);
  if (pool == nullptr) return absl::NotFoundError(absl::StrCat("pool ", ref, " was not created by this client"));
  for (auto& s : servers_) {
    {
      MutexLock lock(&s->mu);
      s->deferred.push_back({DeferredFlush::Kind::kPool, ref, "", 0});
    }
    if (!Prepare(*s, *pool).ok()) counters_.flushes_deferred.fetch_add(1, std::memory_order_relaxed);
  }
  return absl::OkStatus();
}

}  // namespace tmem::client
