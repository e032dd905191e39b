// tmem.v1.Admin: server identity, capacity and per-pool statistics, read from the engine, and
// control of cached exports.
//
// Roles (caller.h): ServerInfo needs pages or admin; ListPools and PoolStats show a tenant only
// its own pools (another's id is NOT_FOUND) and an admin every pool; ListExports (which shows
// every export's backend) and ExportControl need admin, else PERMISSION_DENIED. Every
// ExportControl is logged with its tenant and counted (trust::Audit).
// Thread-safety: stateless; the engine is thread-safe.
#ifndef TMEM_SERVER_GRPC_ADMIN_SERVICE_H_
#define TMEM_SERVER_GRPC_ADMIN_SERVICE_H_

#include "common/version.h"
#include "proto/tmem.grpc.pb.h"
#include "server/grpc/caller.h"
#include "server/grpc/health_service.h"
#include "server/nbd/nbd_server.h"
#include "server/pool/pool_engine.h"

namespace tmem::grpc_service {

class AdminService final : public tmem::v1::Admin::Service {
 public:
  // Borrows `engine`, `nbd`, `callers` (null: every caller the local tenant) and `health` (null:
  // ServerInfo names no service health), which must outlive the service.
  explicit AdminService(pool::PoolEngine* engine, const nbd::NbdServer* nbd = nullptr,
                        const CallerResolver* callers = nullptr, const HealthService* health = nullptr)
      : engine_(engine), nbd_(nbd), callers_(callers != nullptr ? callers : &local_), health_(health) {}

  // The page wire protocol's ports, told to clients by ServerInfo (0: none). Before the gRPC
  // server starts.
  void set_wire_ports(uint32_t tls, uint32_t plaintext) {
    wire_tls_port_ = tls;
    wire_plaintext_port_ = plaintext;
  }

  ::grpc::Status ServerInfo(::grpc::ServerContext*, const tmem::v1::ServerInfoRequest*,
                            tmem::v1::ServerInfoResponse*) override;
  ::grpc::Status ListPools(::grpc::ServerContext*, const tmem::v1::ListPoolsRequest*,
                           tmem::v1::ListPoolsResponse*) override;
  ::grpc::Status PoolStats(::grpc::ServerContext*, const tmem::v1::PoolStatsRequest*,
                           tmem::v1::PoolStatsResponse*) override;
  ::grpc::Status ListExports(::grpc::ServerContext*, const tmem::v1::ListExportsRequest*,
                             tmem::v1::ListExportsResponse*) override;
  ::grpc::Status ExportControl(::grpc::ServerContext*, const tmem::v1::ExportControlRequest*,
                               tmem::v1::ExportControlResponse*) override;

 private:
  pool::PoolEngine* const engine_;
  const nbd::NbdServer* const nbd_;  // may be null (no exports)
  const CallerResolver local_;
  const CallerResolver* const callers_;
  const HealthService* const health_;
  uint32_t wire_tls_port_ = 0;  // set before serving, then const
  uint32_t wire_plaintext_port_ = 0;
};

}  // namespace tmem::grpc_service

#endif  // TMEM_SERVER_GRPC_ADMIN_SERVICE_H_
