#include "server/grpc/admin_service.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "server/blockcache/block_cache.h"
#include "server/grpc/status_convert.h"

namespace tmem::grpc_service {
namespace {

void Fill(const pool::PoolInfo& info, tmem::v1::PoolInfo* out) {
  out->set_pool_id(info.id);
  out->set_shared(info.kind == pool::PoolKind::kShared);
  out->set_page_bytes(info.page_bytes);
  if (info.kind == pool::PoolKind::kShared) out->set_uuid(std::string(info.uuid.begin(), info.uuid.end()));
  out->set_tenant(info.tenant);
}

}  // namespace

::grpc::Status AdminService::ServerInfo(::grpc::ServerContext* ctx, const tmem::v1::ServerInfoRequest*,
                                        tmem::v1::ServerInfoResponse* resp) {
  TMEM_AUTHORIZE(false, "ServerInfo");
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
  resp->set_wire_tls_port(wire_tls_port_);
  resp->set_wire_plaintext_port(wire_plaintext_port_);
  if (health_ != nullptr) {
    for (const HealthService::Entry& h : health_->Snapshot()) {
      tmem::v1::ServiceHealth* out = resp->add_health();
      out->set_service(h.service);
      out->set_serving(h.serving);
      out->set_reason(h.reason);
    }
  }
  return ::grpc::Status::OK;
}

::grpc::Status AdminService::ListPools(::grpc::ServerContext* ctx, const tmem::v1::ListPoolsRequest*,
                                       tmem::v1::ListPoolsResponse* resp) {
  TMEM_AUTHORIZE(false, "ListPools");
  for (const pool::PoolInfo& info :
       engine_->ListPools(caller.admin ? std::nullopt : std::optional<std::string_view>(caller.tenant))) {
    Fill(info, resp->add_pools());
  }
  return ::grpc::Status::OK;
}

::grpc::Status AdminService::PoolStats(::grpc::ServerContext* ctx, const tmem::v1::PoolStatsRequest* req,
                                       tmem::v1::PoolStatsResponse* resp) {
  TMEM_AUTHORIZE(false, "PoolStats");
  if (!caller.admin) {
    absl::StatusOr<pool::PoolInfo> owned = engine_->OwnedPool(req->pool_id(), caller.tenant);
    if (!owned.ok()) return ToGrpc(owned.status());
  }
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

namespace {

void FillCacheStatus(const blockcache::BlockCache& cache, tmem::v1::CacheStatus* out) {
  const blockcache::BlockCacheStatus s = cache.status();
  out->set_dirty_bytes(s.dirty_lines * blockcache::kLineBytes);
  out->set_cached_bytes(s.cached_lines * blockcache::kLineBytes);
  out->set_head_segment(s.head_seq);
  out->set_synced_segment(s.synced_seq);
  out->set_migrated_segment(s.migrated_seq);
  out->set_free_segments(s.free_segments);
  out->set_segment_count(s.segment_count);
  out->set_read_hits(s.read_hits);
  out->set_read_misses(s.read_misses);
  out->set_lines_written(s.write_lines);
  out->set_flushes(s.flushes);
  out->set_syncs(s.syncs);
  out->set_migrated_bytes(s.migrated_bytes);
  out->set_migration_errors(s.migration_errors);
  out->set_failed(s.failed);
  out->set_failure(s.failure);
  out->set_oldest_dirty_age_ms(static_cast<uint64_t>(s.oldest_dirty_age_ns / 1'000'000));
  out->set_ram_bytes(s.ram_bytes);
  out->set_ram_capacity_bytes(s.ram_capacity_bytes);
  out->set_ram_hits(s.ram_hits);
  const blockcache::BlockCache::Tunables t = cache.tunables();
  out->mutable_tunables()->set_barrier_deadline_us(t.barrier_deadline_us);
  out->mutable_tunables()->set_migrate_batch_segments(t.migrate_batch_segments);
  out->mutable_tunables()->set_migrate_idle_ms(t.migrate_idle_ms);
  out->mutable_tunables()->set_migrate_free_segments_low(t.migrate_free_segments_low);
  out->mutable_tunables()->set_migrate_max_age_ms(t.migrate_max_age_ms);
}

}  // namespace

::grpc::Status AdminService::ListExports(::grpc::ServerContext* ctx, const tmem::v1::ListExportsRequest*,
                                         tmem::v1::ListExportsResponse* resp) {
  TMEM_AUTHORIZE(true, "ListExports");
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
    if (const auto* cache = dynamic_cast<const blockcache::BlockCache*>(e->backend.get())) {
      FillCacheStatus(*cache, x->mutable_cache());
    }
  }
  return ::grpc::Status::OK;
}

::grpc::Status AdminService::ExportControl(::grpc::ServerContext* ctx, const tmem::v1::ExportControlRequest* req,
                                           tmem::v1::ExportControlResponse* resp) {
  TMEM_AUTHORIZE(true, "ExportControl");
  const nbd::Export* found = nullptr;
  if (nbd_ != nullptr) {
    for (const auto& e : nbd_->exports()) {
      if (e->name == req->export_name()) found = e.get();
    }
  }
  if (found == nullptr) {
    return ::grpc::Status(::grpc::StatusCode::NOT_FOUND, absl::StrCat("no export named '", req->export_name(), "'"));
  }
  auto* cache = dynamic_cast<blockcache::BlockCache*>(found->backend.get());
  if (cache == nullptr) {
    return ::grpc::Status(::grpc::StatusCode::FAILED_PRECONDITION,
                          absl::StrCat("export '", req->export_name(), "' has no writeback cache"));
  }
  if (callers_->audit() != nullptr) {
    callers_->audit()->Mutation(
        caller, absl::StrCat("ExportControl ", tmem::v1::ExportControlRequest::Action_Name(req->action()),
                             " export=", req->export_name()));
  }
  absl::Status st;
  switch (req->action()) {
    case tmem::v1::ExportControlRequest::FLUSH:
      st = cache->Flush();
      break;
    case tmem::v1::ExportControlRequest::MIGRATE_NOW:
      st = cache->MigrateNow();
      break;
    case tmem::v1::ExportControlRequest::DRAIN: {
      // Bounded by the call's deadline (none: as long as it takes).
      std::optional<std::chrono::steady_clock::time_point> deadline;
      const auto d = ctx->deadline();
      if (d != std::chrono::system_clock::time_point::max()) {
        deadline = std::chrono::steady_clock::now() + (d - std::chrono::system_clock::now());
      }
      st = cache->Drain(deadline);
      break;
    }
    case tmem::v1::ExportControlRequest::SET_TUNABLES: {
      blockcache::BlockCache::Tunables t = cache->tunables();
      const tmem::v1::CacheTunables& in = req->tunables();
      if (in.has_barrier_deadline_us()) t.barrier_deadline_us = in.barrier_deadline_us();
      if (in.has_migrate_batch_segments()) t.migrate_batch_segments = in.migrate_batch_segments();
      if (in.has_migrate_idle_ms()) t.migrate_idle_ms = in.migrate_idle_ms();
      if (in.has_migrate_free_segments_low()) t.migrate_free_segments_low = in.migrate_free_segments_low();
      if (in.has_migrate_max_age_ms()) t.migrate_max_age_ms = in.migrate_max_age_ms();
      st = cache->SetTunables(t);
      break;
    }
    default:
      return ::grpc::Status(::grpc::StatusCode::INVALID_ARGUMENT,
                            "action: want FLUSH, MIGRATE_NOW, DRAIN or SET_TUNABLES");
  }
  if (!st.ok()) return ToGrpc(st);
  FillCacheStatus(*cache, resp->mutable_cache());
  return ::grpc::Status::OK;
}

}  // namespace tmem::grpc_service
