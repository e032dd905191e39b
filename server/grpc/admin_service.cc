#include "server/grpc/admin_service.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "server/grpc/status_convert.h"

namespace tmem::grpc_service {
namespace {

void Fill(const pool::PoolInfo& info, tmem::v1::PoolInfo* out) {
  out->set_pool_id(info.id);
  out->set_shared(info.kind == pool::PoolKind::kShared);
  out->set_page_bytes(info.page_bytes);
  if (info.kind == pool::PoolKind::kShared) {
    out->set_uuid(std::string(info.uuid.begin(), info.uuid.end()));
    out->set_tenant(info.tenant);
  }
}

}  // namespace

::grpc::Status AdminService::ServerInfo(::grpc::ServerContext*, const tmem::v1::ServerInfoRequest*,
                                        tmem::v1::ServerInfoResponse* resp) {
  const log::SegmentLog& log = engine_->segment_log();
  const log::LogGeometry& g = log.geometry();
  resp->set_instance_id(engine_->instance_id());
  resp->set_version(tmem::kVersion);
  resp->set_segment_bytes(g.segment_bytes);
  resp->set_segment_count(g.segment_count);
  resp->set_capacity_bytes(g.segment_count * g.segment_bytes);
  const uint64_t free = log.free_segments();
  resp->set_free_segments(free);
  resp->set_used_bytes((g.segment_count - free) * g.segment_bytes);
  resp->set_kept_pages_from_previous_run(engine_->kept_pages_from_previous_run());
  return ::grpc::Status::OK;
}

::grpc::Status AdminService::ListPools(::grpc::ServerContext*, const tmem::v1::ListPoolsRequest*,
                                       tmem::v1::ListPoolsResponse* resp) {
  for (const pool::PoolInfo& info : engine_->ListPools()) Fill(info, resp->add_pools());
  return ::grpc::Status::OK;
}

::grpc::Status AdminService::PoolStats(::grpc::ServerContext*, const tmem::v1::PoolStatsRequest* req,
                                       tmem::v1::PoolStatsResponse* resp) {
  absl::StatusOr<pool::PoolEngine::PoolStats> st = engine_->GetPoolStats(req->pool_id());
  if (!st.ok()) return ToGrpc(st.status());
  Fill(st->info, resp->mutable_pool());
  resp->set_puts(st->puts);
  resp->set_puts_dropped(st->puts_dropped);
  resp->set_gets_hit(st->gets_hit);
  resp->set_gets_miss(st->gets_miss);
  resp->set_flush_page(st->flush_page);
  resp->set_flush_object(st->flush_object);
  resp->set_flush_pool(st->flush_pool);
  return ::grpc::Status::OK;
}

::grpc::Status AdminService::ListExports(::grpc::ServerContext*, const tmem::v1::ListExportsRequest*,
                                         tmem::v1::ListExportsResponse* resp) {
  if (nbd_ == nullptr) return ::grpc::Status::OK;
  const auto& listen = nbd_->options().listen;
  for (size_t i = 0; i < listen.size() && i < nbd_->tcp_ports().size(); ++i) {
    resp->add_nbd_addresses(absl::StrCat(listen[i].substr(0, listen[i].rfind(':')), ":", nbd_->tcp_ports()[i]));
  }
  resp->set_nbd_unix_socket(nbd_->options().unix_socket);
  for (const auto& e : nbd_->exports()) {
    tmem::v1::ExportInfo* x = resp->add_exports();
    x->set_name(e->name);
    x->set_backend(e->backend->Describe());
    x->set_size_bytes(e->backend->size());
    const uint16_t flags = e->TransmissionFlags();
    x->set_read_only((flags & 2) != 0);
    x->set_description(e->description);
    x->set_transmission_flags(flags);
    x->set_open_connections(static_cast<uint64_t>(std::max<int64_t>(0, e->connections_open.load())));
    x->set_connections_total(e->connections_total.load());
    x->set_bytes_read(e->bytes_read.load());
    x->set_bytes_written(e->bytes_written.load());
  }
  return ::grpc::Status::OK;
}

}  // namespace tmem::grpc_service
