#include "server/grpc/health_service.h"

namespace tmem::grpc_service {

using grpc::health::v1::HealthCheckResponse;

void HealthService::SetServing(const std::string& service, bool serving, const std::string& reason) {
  MutexLock lock(&mu_);
  if (shut_down_) return;  // a stop has begun: nothing turns SERVING again
  const Status now = serving ? HealthCheckResponse::SERVING : HealthCheckResponse::NOT_SERVING;
  reasons_[service] = serving ? std::string() : reason;
  auto [it, added] = statuses_.emplace(service, now);
  if (!added && it->second == now) return;  // no change: Watch calls need not wake
  it->second = now;
  ++version_;
  changed_.SignalAll();
}

std::vector<HealthService::Entry> HealthService::Snapshot() const {
  MutexLock lock(&mu_);
  std::vector<Entry> out;
  for (const auto& [name, status] : statuses_) {
    auto r = reasons_.find(name);
    out.push_back(Entry{name, status == HealthCheckResponse::SERVING, r == reasons_.end() ? "" : r->second});
  }
  return out;
}

void HealthService::Shutdown() {
  MutexLock lock(&mu_);
  shut_down_ = true;
  for (auto& [name, status] : statuses_) {
    status = HealthCheckResponse::NOT_SERVING;
    reasons_[name] = "the server is stopping";
  }
  statuses_[""] = HealthCheckResponse::NOT_SERVING;
  reasons_[""] = "the server is stopping";
  ++version_;
  changed_.SignalAll();
}

HealthService::Status HealthService::StatusOfLocked(const std::string& service) const {
  auto it = statuses_.find(service);
  return it == statuses_.end() ? HealthCheckResponse::SERVICE_UNKNOWN : it->second;
}

::grpc::Status HealthService::Check(::grpc::ServerContext*, const grpc::health::v1::HealthCheckRequest* req,
                                    HealthCheckResponse* resp) {
  MutexLock lock(&mu_);
  const Status s = StatusOfLocked(req->service());
  if (s == HealthCheckResponse::SERVICE_UNKNOWN) {
    return ::grpc::Status(::grpc::StatusCode::NOT_FOUND, "unknown service " + req->service());
  }
  resp->set_status(s);
  return ::grpc::Status::OK;
}

::grpc::Status HealthService::Watch(::grpc::ServerContext* ctx, const grpc::health::v1::HealthCheckRequest* req,
                                    ::grpc::ServerWriter<HealthCheckResponse>* writer) {
  MutexLock lock(&mu_);
  if (watchers_ >= max_watchers_) {
    return ::grpc::Status(::grpc::StatusCode::RESOURCE_EXHAUSTED, "too many health watchers");
  }
  ++watchers_;
  uint64_t seen = version_ - 1;  // send the status at once
  Status last = HealthCheckResponse::UNKNOWN;
  bool first = true;
  while (!ctx->IsCancelled()) {
    if (seen != version_) {
      seen = version_;
      const Status now = StatusOfLocked(req->service());
      // Whether this status is the last one, decided with it: a stop that begins while the
      // lock is released for the write below is another change, sent next round.
      const bool stopped = shut_down_;
      if (first || now != last) {
        first = false;
        last = now;
        HealthCheckResponse resp;
        resp.set_status(now);
        mu_.Unlock();
        const bool written = writer->Write(resp);
        mu_.Lock();
        if (!written) break;
      }
      if (stopped) break;
      continue;
    }
    changed_.WaitFor(&mu_, kWatchPoll);
  }
  --watchers_;
  return ::grpc::Status::OK;
}

}  // namespace tmem::grpc_service
