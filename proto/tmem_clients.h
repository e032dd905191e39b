// Project names for the generated gRPC client classes of tmem.v1 (what grpc_cpp_plugin emits
// as PagePool::NewStub and Admin::NewStub return).
#ifndef TMEM_PROTO_TMEM_CLIENTS_H_
#define TMEM_PROTO_TMEM_CLIENTS_H_

#include <memory>
#include <utility>

#include "proto/tmem.grpc.pb.h"

namespace tmem::v1 {

using PagePoolClient =
    decltype(PagePool::NewStub(std::declval<std::shared_ptr<::grpc::ChannelInterface>>()))::element_type;
using AdminClient = decltype(Admin::NewStub(std::declval<std::shared_ptr<::grpc::ChannelInterface>>()))::element_type;

}  // namespace tmem::v1

#endif  // TMEM_PROTO_TMEM_CLIENTS_H_
