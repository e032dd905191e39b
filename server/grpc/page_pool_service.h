// tmem.v1.PagePool over the page pool engine. Thin: every request is checked here, once, then
// handed to PoolEngine; engine errors become gRPC statuses with the same code.
//
// Every call runs as its caller's tenant (caller.h): a tenant reaches only the pools it owns —
// another tenant's pool id is NOT_FOUND, exactly as an id that does not exist — and a `tenant`
// field may name only the caller (PERMISSION_DENIED otherwise). A tenant with the admin role
// reaches every pool and may create shared pools for any tenant. A tenant with neither role is
// PERMISSION_DENIED.
//
// Thread-safety: gRPC calls the handlers from many threads; the engine is thread-safe and the
// service's own state (open Session streams per tenant) is a thread-safe TenantSlots.
#ifndef TMEM_SERVER_GRPC_PAGE_POOL_SERVICE_H_
#define TMEM_SERVER_GRPC_PAGE_POOL_SERVICE_H_

#include <map>
#include <set>
#include <string>

#include "common/mutex.h"
#include "common/stats.h"
#include "proto/tmem.grpc.pb.h"
#include "server/grpc/caller.h"
#include "server/pool/pool_engine.h"
#include "server/pool/request_checks.h"

namespace tmem::grpc_service {

// Request limits, checked at the edge.
inline constexpr int kMaxBatch = static_cast<int>(pool::kMaxBatch);
// Largest message a client may send: a full batch of the largest pages, plus framing.
inline constexpr int kMaxMessageBytes = kMaxBatch * (64 << 10) + (1 << 20);

class PagePoolService final : public tmem::v1::PagePool::Service {
 public:
  // Borrows `engine`, `latency` and `callers` (both may be null: no latencies; every caller the
  // local tenant), which must outlive the service. Each call's duration is reported to `latency`
  // under the method's name.
  // At most `max_sessions_per_tenant` Session streams of one tenant are open at once; more are
  // RESOURCE_EXHAUSTED.
  explicit PagePoolService(pool::PoolEngine* engine, LatencyObserver* latency = nullptr,
                           const CallerResolver* callers = nullptr, int max_sessions_per_tenant = 64)
      : engine_(engine),
        latency_(latency),
        callers_(callers != nullptr ? callers : &local_),
        sessions_(max_sessions_per_tenant, "Session streams open", "grpc.max_sessions_per_tenant") {}

  ::grpc::Status CreatePool(::grpc::ServerContext*, const tmem::v1::CreatePoolRequest*,
                            tmem::v1::CreatePoolResponse*) override;
  ::grpc::Status CreateSharedPool(::grpc::ServerContext*, const tmem::v1::CreateSharedPoolRequest*,
                                  tmem::v1::CreatePoolResponse*) override;
  ::grpc::Status DestroyPool(::grpc::ServerContext*, const tmem::v1::DestroyPoolRequest*,
                             tmem::v1::DestroyPoolResponse*) override;
  ::grpc::Status PutPages(::grpc::ServerContext*, const tmem::v1::PutPagesRequest*,
                          tmem::v1::PutPagesResponse*) override;
  ::grpc::Status GetPages(::grpc::ServerContext*, const tmem::v1::GetPagesRequest*,
                          tmem::v1::GetPagesResponse*) override;
  ::grpc::Status FlushPages(::grpc::ServerContext*, const tmem::v1::FlushPagesRequest*,
                            tmem::v1::FlushPagesResponse*) override;
  ::grpc::Status FlushObject(::grpc::ServerContext*, const tmem::v1::FlushObjectRequest*,
                             tmem::v1::FlushObjectResponse*) override;
  ::grpc::Status FlushPool(::grpc::ServerContext*, const tmem::v1::FlushPoolRequest*,
                           tmem::v1::FlushPoolResponse*) override;
  // Reads ops until the client half-closes; answers each (in order). A bad op gets its status in
  // its reply; the stream ends only on a transport error or cancellation.
  ::grpc::Status Session(::grpc::ServerContext*,
                         ::grpc::ServerReaderWriter<tmem::v1::SessionResponse, tmem::v1::SessionRequest>*) override;

  // A stop begins: every open Session stream is cancelled (its op in progress finishes; the
  // client sees the stream end and reconnects to the next instance), and new ones are refused
  // with UNAVAILABLE. Unary calls in flight are gRPC's Shutdown deadline's.
  void CancelSessions() ABSL_LOCKS_EXCLUDED(open_mu_);

 private:
  // The pool if `caller` may reach it (its own, or any for an admin); NOT_FOUND otherwise.
  ::grpc::Status Reach(const trust::Identity& caller, uint32_t pool_id, pool::PoolInfo* info) const;
  // The handlers, for a caller already authorized (Session authorizes once per stream).
  ::grpc::Status DoPutPages(const trust::Identity& caller, const tmem::v1::PutPagesRequest& req);
  ::grpc::Status DoGetPages(const trust::Identity& caller, const tmem::v1::GetPagesRequest& req,
                            tmem::v1::GetPagesResponse* resp);
  ::grpc::Status DoFlushPages(const trust::Identity& caller, const tmem::v1::FlushPagesRequest& req);
  ::grpc::Status DoFlushObject(const trust::Identity& caller, const tmem::v1::FlushObjectRequest& req);
  ::grpc::Status DoFlushPool(const trust::Identity& caller, const tmem::v1::FlushPoolRequest& req);

  pool::PoolEngine* const engine_;
  LatencyObserver* const latency_;
  const CallerResolver local_;
  const CallerResolver* const callers_;
  TenantSlots sessions_;  // open Session streams per tenant
  // Open Session streams, for CancelSessions. A leaf lock.
  Mutex open_mu_;
  std::set<::grpc::ServerContext*> open_ ABSL_GUARDED_BY(open_mu_);
  bool cancelled_ ABSL_GUARDED_BY(open_mu_) = false;
};

}  // namespace tmem::grpc_service

#endif  // TMEM_SERVER_GRPC_PAGE_POOL_SERVICE_H_
