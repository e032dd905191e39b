// For tests: asks grpc.health.v1 Check through the generated gRPC client, over a real channel.
#ifndef TMEM_SERVER_GRPC_HEALTH_TESTING_H_
#define TMEM_SERVER_GRPC_HEALTH_TESTING_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <string>

#include "proto/health.grpc.pb.h"

namespace tmem::grpc_service::testing {

// The status Check answers for `service` ("SERVING", "NOT_SERVING", ...), "NOT_FOUND" for an
// unknown service, or "error ..." for a failed call (5 s deadline).
inline std::string CheckHealth(grpc::health::v1::Health::Stub& health, const std::string& service) {
  ::grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::health::v1::HealthCheckRequest req;
  req.set_service(service);
  grpc::health::v1::HealthCheckResponse resp;
  ::grpc::Status s = health.Check(&ctx, req, &resp);
  if (s.error_code() == ::grpc::StatusCode::NOT_FOUND) return "NOT_FOUND";
  if (!s.ok()) return "error " + s.error_message();
  return grpc::health::v1::HealthCheckResponse::ServingStatus_Name(resp.status());
}

}  // namespace tmem::grpc_service::testing

#endif  // TMEM_SERVER_GRPC_HEALTH_TESTING_H_
