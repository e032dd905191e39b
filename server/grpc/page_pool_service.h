// tmem.v1.PagePool over the page pool engine. Thin: every request is checked here, once, then
// handed to PoolEngine; engine errors become gRPC statuses with the same code.
//
// Thread-safety: gRPC calls the handlers from many threads; the engine is thread-safe and the
// service holds no state of its own.
#ifndef TMEM_SERVER_GRPC_PAGE_POOL_SERVICE_H_
#define TMEM_SERVER_GRPC_PAGE_POOL_SERVICE_H_

#include "common/stats.h"
#include "proto/tmem.grpc.pb.h"
#include "server/pool/pool_engine.h"

namespace tmem::grpc_service {

// Request limits, checked at the edge.
inline constexpr int kMaxBatch = 256;
// Largest message a client may send: a full batch of the largest pages, plus framing.
inline constexpr int kMaxMessageBytes = kMaxBatch * (64 << 10) + (1 << 20);

class PagePoolService final : public tmem::v1::PagePool::Service {
 public:
  // Borrows `engine` and `latency` (may be null), which must outlive the service. Each call's
  // duration is reported to `latency` under the method's name.
  explicit PagePoolService(pool::PoolEngine* engine, LatencyObserver* latency = nullptr)
      : engine_(engine), latency_(latency) {}

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

 private:
  pool::PoolEngine* const engine_;
  LatencyObserver* const latency_;
};

}  // namespace tmem::grpc_service

#endif  // TMEM_SERVER_GRPC_PAGE_POOL_SERVICE_H_
