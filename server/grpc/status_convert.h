// absl::Status -> grpc::Status. The two code spaces match one for one.
#ifndef TMEM_SERVER_GRPC_STATUS_CONVERT_H_
#define TMEM_SERVER_GRPC_STATUS_CONVERT_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace tmem::grpc_service {

inline ::grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return ::grpc::Status::OK;
  return ::grpc::Status(static_cast<::grpc::StatusCode>(s.code()), std::string(s.message()));
}

}  // namespace tmem::grpc_service

#endif  // TMEM_SERVER_GRPC_STATUS_CONVERT_H_
