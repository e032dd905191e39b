// The parts of TmemClient shared by its .cc files (tmem_client.cc: calls, pools, streams;
// tmem_client_flushes.cc: flush delivery and the settling of unanswered puts;
// tmem_client_members.cc: which servers, and where objects live): the per-server and per-pool
// state, a queued flush, the stable hash every client places objects by, and the small helpers
// of gRPC calls.
// Internal to //client:tmem_client.
#ifndef TMEM_CLIENT_TMEM_CLIENT_PARTS_H_
#define TMEM_CLIENT_TMEM_CLIENT_PARTS_H_

#include <grpcpp/grpcpp.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "client/channel.h"
#include "client/page_stream.h"
#include "client/tmem_client.h"
#include "common/mutex.h"
#include "proto/tmem_clients.h"

namespace tmem::client {

// FNV-1a then a splitmix64 finish: stable across processes and builds, so that every client
// places an object on the same server.
inline uint64_t StableHash(std::string_view a, std::string_view b, std::string_view c) {
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

inline std::shared_ptr<tmem::v1::PagePoolClient> NewPagePoolClient(const ChannelFactory& channels,
                                                                   const std::string& address) {
  return tmem::v1::PagePool::NewStub(channels.Make(address));
}

// A flush of a page, an object or a whole pool, queued per server until delivered.
struct DeferredFlush {
  enum class Kind { kPage, kObject, kPool } kind;
  PoolRef pool;
  std::string object;
  uint64_t index = 0;
};

struct TmemClient::Pool {
  PoolRef ref;
  bool shared;
  std::array<uint8_t, 16> uuid;
  std::string tenant;
  uint32_t page_bytes;
  std::string hash_key;  // what rendezvous hashing sees: stable for shared pools across clients
};

// A put batch sent and not answered yet (max_unacked_put_batches): what settling it needs.
struct TmemClient::UnackedPut {
  std::shared_ptr<PageStream> stream;
  size_t stream_index = 0;  // which of the server's streams (a handle always travels on one)
  std::shared_ptr<PageStream::Op> op;
  PoolRef ref = 0;
  std::vector<std::pair<std::string, uint64_t>> handles;  // flushed on this server if it failed
  std::chrono::steady_clock::time_point deadline;
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
  std::vector<std::shared_ptr<PageStream>> streams ABSL_GUARDED_BY(mu);  // streams_per_server
  // The page wire protocol's port for this client: -1 not known yet (asked through ServerInfo
  // before the next stream opens), 0 none. Forgotten when a stream breaks: a restarted server may
  // listen elsewhere.
  int wire_port ABSL_GUARDED_BY(mu) = -1;
  // No stream is opened before this; the wait doubles while the server stays unreachable.
  std::chrono::steady_clock::time_point next_connect ABSL_GUARDED_BY(mu);
  int64_t backoff_ms ABSL_GUARDED_BY(mu) = 0;
  // Put batches sent here and not settled, oldest first. A leaf: never held while waiting,
  // settling or taking another lock (but an op's own, to ask whether it finished).
  // settle_mu is held while puts are settled (waiting for their replies, queueing flushes), so
  // that a caller who needs a put settled finds it settled, not in another thread's hands.
  // Order: settle_mu -> mu; unacked_mu is a leaf.
  Mutex settle_mu ABSL_ACQUIRED_BEFORE(mu);
  Mutex unacked_mu;
  std::deque<UnackedPut> unacked ABSL_GUARDED_BY(unacked_mu);
};

// The parts of one batch: the pages bound for one server and one of its streams. A handle's
// operations always travel on the same stream (chosen by its object key), in order, so the
// server runs them in the caller's order — also a put whose reply came too late (the caller
// counted it dropped) before the next put of that handle; separate calls are ordered by their
// callers, who wait for each call to return.
struct TmemClient::Part {
  size_t server = 0;
  size_t stream = 0;
  std::vector<size_t> items;  // indexes into the caller's batch
};

// Shared by the calls of tmem_client.cc and the flush delivery of tmem_client_flushes.cc.
// After a failed call: an unreachable server gets a fresh channel, at most once a second.
inline void NoteFailure(const ChannelFactory& channels, TmemClient::Server& s, const ::grpc::Status& st)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
  if (st.error_code() != ::grpc::StatusCode::UNAVAILABLE) return;
  const auto now = std::chrono::steady_clock::now();
  if (now - s.stub_created < std::chrono::seconds(1)) return;
  s.rpc = NewPagePoolClient(channels, s.address);
  s.stub_created = now;
}

// After a reply: a new instance id means the server restarted.
inline void NoteInstance(TmemClient::Server& s, uint64_t instance, std::atomic<uint64_t>& restarts)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
  if (s.instance != 0 && instance != s.instance) restarts.fetch_add(1, std::memory_order_relaxed);
  s.instance = instance;
}

inline void SetDeadline(::grpc::ClientContext* ctx, int64_t timeout_ms) {
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms));
}

inline absl::Status FromGrpc(const ::grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

}  // namespace tmem::client

#endif  // TMEM_CLIENT_TMEM_CLIENT_PARTS_H_
