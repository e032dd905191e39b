// tmemctl's page pool commands: create-pool, destroy-pool, stats, flush, put, get.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>

#include "client/tmemctl_commands.h"

namespace tmem::ctl {
namespace {

// What put and get share: the pool, the object, the first index and the pool's page size.
struct PageTarget {
  uint32_t pool = 0;
  std::string object;
  uint64_t index = 0;
  uint32_t page_bytes = 0;
};
// Fills `t` from the flags and the server; an exit status when it cannot.
std::optional<int> Target(Client& c, const std::string& cmd, const Flags& f, PageTarget& t) {
  auto pool = PoolFlag(f);
  if (!pool.ok()) return Usage(std::string(pool.status().message()));
  auto index = f.GetUint("index", 0);
  if (!index.ok()) return Usage(std::string(index.status().message()));
  if (!f.Has("object")) return Usage("--object=KEY is required");
  Call call(c);
  tmem::v1::PoolStatsRequest req;
  req.set_pool_id(*pool);
  tmem::v1::PoolStatsResponse resp;
  ::grpc::Status s = c.admin().PoolStats(&call.ctx, req, &resp);
  if (!s.ok()) return Failed(cmd, s, c.server());
  t = {*pool, f.Get("object"), *index, resp.pool().page_bytes()};
  return std::nullopt;
}

}  // namespace

int CmdCreatePool(Client& c, const Flags& f) {
  auto page = f.GetSize("page-size", 4096);
  if (!page.ok()) return Usage(std::string(page.status().message()));
  Call call(c);
  tmem::v1::CreatePoolResponse r;
  ::grpc::Status s;
  if (f.Has("shared-uuid")) {
    tmem::v1::CreateSharedPoolRequest req;
    std::string uuid;
    if (!HexToBytes(f.Get("shared-uuid"), &uuid)) return Usage("--shared-uuid wants 32 hex digits");
    req.set_uuid(uuid);
    req.set_page_bytes(static_cast<uint32_t>(*page));
    req.set_tenant(f.Get("tenant"));
    s = c.pool().CreateSharedPool(&call.ctx, req, &r);
  } else {
    tmem::v1::CreatePoolRequest req;
    req.set_page_bytes(static_cast<uint32_t>(*page));
    s = c.pool().CreatePool(&call.ctx, req, &r);
  }
  if (!s.ok()) return Failed("create-pool", s, c.server());
  std::printf("%u\n", r.pool_id());
  return 0;
}

int CmdDestroyPool(Client& c, const Flags& f) {
  auto pool = PoolFlag(f);
  if (!pool.ok()) return Usage(std::string(pool.status().message()));
  Call call(c);
  tmem::v1::DestroyPoolRequest req;
  req.set_pool_id(*pool);
  tmem::v1::DestroyPoolResponse r;
  ::grpc::Status s = c.pool().DestroyPool(&call.ctx, req, &r);
  return s.ok() ? 0 : Failed("destroy-pool", s, c.server());
}

int CmdStats(Client& c, const Flags& f) {
  auto pool = PoolFlag(f);
  if (!pool.ok()) return Usage(std::string(pool.status().message()));
  Call call(c);
  tmem::v1::PoolStatsRequest req;
  req.set_pool_id(*pool);
  tmem::v1::PoolStatsResponse r;
  ::grpc::Status s = c.admin().PoolStats(&call.ctx, req, &r);
  if (!s.ok()) return Failed("stats", s, c.server());
  std::printf(
      "pool %u (%s, %u-byte pages)\nputs          %lu\nputs dropped  %lu\ngets hit      %lu\n"
      "gets missed   %lu\nflush page    %lu\nflush object  %lu\nflush pool    %lu\n",
      r.pool().pool_id(), r.pool().shared() ? "shared" : "private", r.pool().page_bytes(), r.puts(), r.puts_dropped(),
      r.gets_hit(), r.gets_miss(), r.flush_page(), r.flush_object(), r.flush_pool());
  return 0;
}

int CmdFlush(Client& c, const Flags& f) {
  auto pool = PoolFlag(f);
  if (!pool.ok()) return Usage(std::string(pool.status().message()));
  auto index = f.GetUint("index", 0);
  if (!index.ok()) return Usage(std::string(index.status().message()));
  Call call(c);
  ::grpc::Status s;
  if (!f.Has("object")) {
    tmem::v1::FlushPoolRequest req;
    req.set_pool_id(*pool);
    tmem::v1::FlushPoolResponse r;
    s = c.pool().FlushPool(&call.ctx, req, &r);
  } else if (!f.Has("index")) {
    tmem::v1::FlushObjectRequest req;
    req.set_pool_id(*pool);
    req.set_object(f.Get("object"));
    tmem::v1::FlushObjectResponse r;
    s = c.pool().FlushObject(&call.ctx, req, &r);
  } else {
    tmem::v1::FlushPagesRequest req;
    req.set_pool_id(*pool);
    auto* h = req.add_handles();
    h->set_object(f.Get("object"));
    h->set_index(*index);
    tmem::v1::FlushPagesResponse r;
    s = c.pool().FlushPages(&call.ctx, req, &r);
  }
  return s.ok() ? 0 : Failed("flush", s, c.server());
}

int CmdPut(Client& c, const Flags& f) {
  PageTarget t;
  if (std::optional<int> rc = Target(c, "put", f, t)) return *rc;
  FILE* in = f.Has("file") ? std::fopen(f.Get("file").c_str(), "rb") : stdin;
  if (in == nullptr) {
    std::fprintf(stderr, "tmemctl: cannot open %s: %s\n", f.Get("file").c_str(), std::strerror(errno));
    return 1;
  }
  uint64_t i = t.index, pages = 0;
  bool eof = false;
  while (!eof) {
    tmem::v1::PutPagesRequest req;
    req.set_pool_id(t.pool);
    while (req.pages_size() < 256) {
      std::string buf(t.page_bytes, '\0');
      size_t n = std::fread(buf.data(), 1, t.page_bytes, in);
      if (n == 0) {
        eof = true;
        break;
      }
      auto* p = req.add_pages();
      p->mutable_handle()->set_object(t.object);
      p->mutable_handle()->set_index(i++);
      p->set_data(std::move(buf));
      if (n < t.page_bytes) {
        eof = true;
        break;
      }
    }
    if (req.pages_size() == 0) break;
    Call call(c);
    tmem::v1::PutPagesResponse r;
    ::grpc::Status ps = c.pool().PutPages(&call.ctx, req, &r);
    if (!ps.ok()) return Failed("put", ps, c.server());
    pages += req.pages_size();
  }
  if (in != stdin) std::fclose(in);
  std::fprintf(stderr, "put %lu pages of %u bytes\n", pages, t.page_bytes);
  return 0;
}

int CmdGet(Client& c, const Flags& f) {
  PageTarget t;
  if (std::optional<int> rc = Target(c, "get", f, t)) return *rc;
  auto count = f.GetUint("count", 1);
  if (!count.ok()) return Usage(std::string(count.status().message()));
  FILE* out = f.Has("file") ? std::fopen(f.Get("file").c_str(), "wb") : stdout;
  if (out == nullptr) {
    std::fprintf(stderr, "tmemctl: cannot create %s: %s\n", f.Get("file").c_str(), std::strerror(errno));
    return 1;
  }
  uint64_t hits = 0, misses = 0;
  const std::string zeros(t.page_bytes, '\0');
  for (uint64_t first = t.index; first < t.index + *count;) {
    tmem::v1::GetPagesRequest req;
    req.set_pool_id(t.pool);
    for (; first < t.index + *count && req.handles_size() < 256; ++first) {
      auto* h = req.add_handles();
      h->set_object(t.object);
      h->set_index(first);
    }
    Call call(c);
    tmem::v1::GetPagesResponse r;
    ::grpc::Status gs = c.pool().GetPages(&call.ctx, req, &r);
    if (!gs.ok()) return Failed("get", gs, c.server());
    for (const auto& res : r.results()) {
      const std::string& data = res.hit() ? res.data() : zeros;
      std::fwrite(data.data(), 1, data.size(), out);
      (res.hit() ? hits : misses)++;
    }
  }
  if (out != stdout) std::fclose(out);
  std::fprintf(stderr, "%lu hits, %lu misses\n", hits, misses);
  return 0;
}

}  // namespace tmem::ctl
