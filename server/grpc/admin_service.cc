#include "server/grpc/admin_service.h"

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

}  // namespace tmem::grpc_service
