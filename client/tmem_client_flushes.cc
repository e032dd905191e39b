// libtmemclient's ordering of flushes and puts: what may reach a server before what. Flushes
// are queued per server and delivered (Prepare) before anything else reaches it, once every put
// sent there before them is settled; unanswered puts are settled here (docs/client.md).
#include <algorithm>
#include <chrono>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/tmem_client.h"
#include "client/tmem_client_parts.h"
#include "common/logging.h"
#include "proto/tmem_clients.h"

namespace tmem::client {

absl::StatusOr<uint32_t> TmemClient::Prepare(Server& s, Pool& pool) {
  {
    MutexLock lock(&s.mu);
    if (s.deferred.empty()) return PoolIdLocked(s, pool);  // nothing to deliver: no ordering to keep
  }
  // Flushes travel on their own calls: every put sent here before them is settled first, so
  // that none lands after a flush meant to follow it (and a failed one's flushes join the
  // queue). settle_mu is held until the flushes are delivered and no put is unanswered when
  // Server::mu is taken, so a flush queued meanwhile (under Server::mu) either waits for the
  // next Prepare or came after puts this one sees and settles. A server that leaves puts
  // unanswered that long hangs: the flushes wait for a later call (this one misses or drops,
  // as a call to a hung server does) rather than cost a second timeout.
  MutexLock settle(&s.settle_mu);
  while (true) {
    if (!SettlePutsLocked(s, nullptr, /*all=*/true, kNoIndex)) {
      return absl::UnavailableError(absl::StrCat(s.address, " left puts unanswered; its flushes wait"));
    }
    MutexLock lock(&s.mu);
    {
      MutexLock unacked(&s.unacked_mu);
      if (!s.unacked.empty()) continue;  // puts sent meanwhile: settle them too
    }
    return DeliverFlushesLocked(s, pool);
  }
}

absl::StatusOr<uint32_t> TmemClient::DeliverFlushesLocked(Server& s, Pool& pool) {
  s.mu.AssertHeld();
  // Deferred flushes first, in order: nothing may reach this server before them.
  while (!s.deferred.empty()) {
    const DeferredFlush& f = s.deferred.front();
    auto id = s.pool_ids.find(f.pool);
    if (id == s.pool_ids.end()) {
      // A shared pool this client has not reached on this server yet may still hold pages there
      // (put by an earlier client of the same UUID, e.g. before a restart): join it, then flush.
      // A private pool never created here has nothing to flush.
      const Pool* target = FindPool(f.pool);  // lock order: Server::mu -> mu_
      if (target != nullptr && target->shared) {
        absl::StatusOr<uint32_t> created = CreateOn(s, *target);
        if (!created.ok()) return created.status();
        id = s.pool_ids.find(f.pool);
      }
    }
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
        NoteFailure(channels_, s, st);
        return FromGrpc(st);
      }
      if (st.ok()) NoteInstance(s, instance, counters_.restarts_seen);
      if (!st.ok()) s.pool_ids.erase(f.pool);
    }
    // A flush for a pool never created on this server has nothing to flush there.
    s.deferred.erase(s.deferred.begin());
    counters_.flushes_replayed.fetch_add(1, std::memory_order_relaxed);
  }
  return PoolIdLocked(s, pool);
}

absl::StatusOr<uint32_t> TmemClient::PoolIdLocked(Server& s, Pool& pool) {
  s.mu.AssertHeld();
  auto it = s.pool_ids.find(pool.ref);
  if (it != s.pool_ids.end()) return it->second;
  return CreateOn(s, pool);
}

bool TmemClient::SettlePuts(Server& s, const PageStream* keep_stream, bool all, size_t index) {
  // Settling what is answered, after a put, is housekeeping: a thread that finds another
  // settling goes on instead of queueing behind its wait.
  const bool optional = index == kNoIndex && !all;
  if (optional) {
    if (!s.settle_mu.TryLock()) return true;
    const bool answered = SettlePutsLocked(s, keep_stream, all, index);
    s.settle_mu.Unlock();
    return answered;
  }
  MutexLock settle(&s.settle_mu);
  return SettlePutsLocked(s, keep_stream, all, index);
}

bool TmemClient::SettlePutsLocked(Server& s, const PageStream* keep_stream, bool all, size_t index) {
  s.settle_mu.AssertHeld();
  std::vector<UnackedPut> todo;
  {
    MutexLock lock(&s.unacked_mu);
    if (s.unacked.empty()) return true;
    std::deque<UnackedPut> rest;
    for (UnackedPut& u : s.unacked) {
      const bool must = all || (index != kNoIndex && u.stream_index == index && u.stream.get() != keep_stream);
      if (must || u.op->finished()) {
        todo.push_back(std::move(u));
      } else {
        rest.push_back(std::move(u));
      }
    }
    s.unacked.swap(rest);
  }
  bool answered = true;
  for (UnackedPut& u : todo) answered = SettlePut(s, u) && answered;
  return answered;
}

bool TmemClient::SettlePut(Server& s, UnackedPut& u) {
  // A broken stream answers nothing more: its unanswered puts failed (no wait for their deadline).
  absl::StatusOr<tmem::v1::SessionResponse> reply =
      !u.op->finished() && u.stream->broken() && u.op->Abandon()
          ? absl::StatusOr<tmem::v1::SessionResponse>(absl::UnavailableError("the stream broke before the reply"))
          : u.stream->Wait(*u.op, u.deadline);
  NoteReply(s, u.ref, reply);
  if (reply.ok() && reply->code() == 0) return true;
  // The put did not arrive: its handles' older versions on this server are flushed before
  // anything else reaches it (put-put-get), as for a put that failed at once.
  TMEM_LOG_RATE_LIMITED(Warning) << "puts to " << s.address << " dropped: "
                                 << (reply.ok() ? reply->message() : std::string(reply.status().message()));
  const size_t n = u.handles.size();
  {
    MutexLock lock(&s.mu);
    for (auto& [object, index] : u.handles) {
      DeferFlush(s, {DeferredFlush::Kind::kPage, u.ref, std::move(object), index});
    }
  }
  counters_.flushes_deferred.fetch_add(n, std::memory_order_relaxed);
  counters_.puts_dropped.fetch_add(n, std::memory_order_relaxed);
  return !absl::IsDeadlineExceeded(reply.status());
}

void TmemClient::WaitForPuts() {
  for (Server* s : AllServers()) SettlePuts(*s, nullptr, /*all=*/true);
}

void TmemClient::DeferFlush(Server& s, DeferredFlush flush) {
  s.mu.AssertHeld();
  // Bounded: past kMaxDeferredFlushes (a server down while puts and flushes keep coming), this
  // pool's queued flushes become one flush of the whole pool (more misses, the same guarantee).
  if (s.deferred.size() >= kMaxDeferredFlushes) {
    const PoolRef pool = flush.pool;
    std::erase_if(s.deferred, [pool](const DeferredFlush& f) { return f.pool == pool; });
    flush = DeferredFlush{DeferredFlush::Kind::kPool, pool, "", 0};
  }
  if (!s.deferred.empty() && s.deferred.back().kind == DeferredFlush::Kind::kPool &&
      s.deferred.back().pool == flush.pool) {
    return;  // the pool's flush at the end covers it
  }
  s.deferred.push_back(std::move(flush));
}

absl::Status TmemClient::Invalidate(DeferredFlush flush) {
  Pool* pool = FindPool(flush.pool);
  if (pool == nullptr) return absl::NotFoundError(absl::StrCat("pool ", flush.pool, " was not created by this client"));
  // A page or an object lives on one server; a whole pool on all of them. Servers that are not
  // members now (a node that left) get it queued, delivered should they come back.
  const std::shared_ptr<const Members> members = CurrentMembers();
  std::vector<Server*> targets;
  std::vector<Server*> queued_only;
  if (flush.kind == DeferredFlush::Kind::kPool) {
    targets = members->list;
    for (Server* s : AllServers()) {
      if (std::find(targets.begin(), targets.end(), s) == targets.end()) queued_only.push_back(s);
    }
  } else if (!members->list.empty()) {
    Server* owner = members->list[ServerForKey(*members, pool->hash_key, flush.object)];
    targets.push_back(owner);
    // Where the object was last put, if that is elsewhere now (dns: membership).
    if (!dns_targets_.empty()) {
      MutexLock lock(&owners_mu_);
      auto it = owners_.find(StableHash(pool->hash_key, flush.object, "owner"));
      if (it != owners_.end() && it->second != owner) queued_only.push_back(it->second);
    }
  }
  for (Server* s : queued_only) {
    MutexLock lock(&s->mu);
    DeferFlush(*s, flush);
  }
  for (Server* s : targets) {
    {
      // Queue it, then let Prepare deliver it with anything queued before it.
      MutexLock lock(&s->mu);
      DeferFlush(*s, flush);
    }
    if (!Prepare(*s, *pool).ok()) counters_.flushes_deferred.fetch_add(1, std::memory_order_relaxed);
  }
  return absl::OkStatus();
}

absl::Status TmemClient::FlushPage(PoolRef ref, std::string_view object, uint64_t index) {
  return Invalidate({DeferredFlush::Kind::kPage, ref, std::string(object), index});
}

absl::Status TmemClient::FlushObject(PoolRef ref, std::string_view object) {
  return Invalidate({DeferredFlush::Kind::kObject, ref, std::string(object), 0});
}

absl::Status TmemClient::FlushPool(PoolRef ref) { return Invalidate({DeferredFlush::Kind::kPool, ref, "", 0}); }

}  // namespace tmem::client
