// grpc.health.v1.Health, served with the synchronous API: Check answers the status of the whole
// server ("") or of one service by name; Watch streams the status and every change.
// Kubernetes' gRPC probes and `tmemctl health` call Check.
//
// Thread-safety: every method may be called from any thread. Lock order: mu_ is a leaf.
#ifndef TMEM_SERVER_GRPC_HEALTH_SERVICE_H_
#define TMEM_SERVER_GRPC_HEALTH_SERVICE_H_

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "common/mutex.h"
#include "proto/health.grpc.pb.h"

namespace tmem::grpc_service {

class HealthService final : public grpc::health::v1::Health::Service {
 public:
  using Status = grpc::health::v1::HealthCheckResponse::ServingStatus;

  // `max_watchers`: Watch calls held at once (each holds a handler thread); more are refused
  // with RESOURCE_EXHAUSTED.
  explicit HealthService(int max_watchers = 4) : max_watchers_(max_watchers) {}

  // Sets the status of `service` ("" is the whole server); a name never set is unknown.
  // `reason`: why it does not serve (for tmemctl info; empty while serving).
  void SetServing(const std::string& service, bool serving, const std::string& reason = "") ABSL_LOCKS_EXCLUDED(mu_);
  // Every service's status and reason, by name ("" first).
  struct Entry {
    std::string service;
    bool serving = false;
    std::string reason;
  };
  std::vector<Entry> Snapshot() const ABSL_LOCKS_EXCLUDED(mu_);
  // Every known service and the server NOT_SERVING from now on, for good (a stop has begun);
  // Watch calls see it and end.
  void Shutdown() ABSL_LOCKS_EXCLUDED(mu_);

  ::grpc::Status Check(::grpc::ServerContext* ctx, const grpc::health::v1::HealthCheckRequest* req,
                       grpc::health::v1::HealthCheckResponse* resp) override ABSL_LOCKS_EXCLUDED(mu_);
  ::grpc::Status Watch(::grpc::ServerContext* ctx, const grpc::health::v1::HealthCheckRequest* req,
                       ::grpc::ServerWriter<grpc::health::v1::HealthCheckResponse>* writer) override
      ABSL_LOCKS_EXCLUDED(mu_);

  // How often a Watch looks whether its client went away while nothing changes.
  static constexpr std::chrono::milliseconds kWatchPoll{100};

 private:
  Status StatusOfLocked(const std::string& service) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int max_watchers_;
  mutable Mutex mu_;
  CondVar changed_;
  std::map<std::string, Status> statuses_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> reasons_ ABSL_GUARDED_BY(mu_);
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t version_ ABSL_GUARDED_BY(mu_) = 0;  // bumped by every change, for Watch
  int watchers_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace tmem::grpc_service

#endif  // TMEM_SERVER_GRPC_HEALTH_SERVICE_H_
