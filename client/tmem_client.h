// libtmemclient: page pools spread over many tmemd servers.
//
// A pool exists on every server; each page lives on the server chosen by rendezvous hashing of
// (pool, object), so FlushObject reaches one server and FlushPool all of them. Pages are
// ephemeral, so failures turn into misses and dropped puts, never errors: a call to a server that
// is down or slow costs at most `call_timeout_ms`.
//
// Flushes are never lost: a flush that cannot be delivered is kept and replayed before any other
// call reaches that server (a server may come back with its pages, after a clean restart or a
// network partition); until the replay succeeds, gets from that server miss. A server restart is
// noticed through its instance id; a server that lost its pools (a new device) gets them created
// again on the next call.
//
// Puts and gets travel on tmem.v1 Session streams (`streams_per_server` per server): a batch is
// split by server (and at the wire limit), every part is sent before any reply is awaited, and
// calls from many threads share the streams, taking them in turn, so many operations are in
// flight at once. The server runs each stream's operations in order, so a batch's pages are
// applied in the caller's order (of two puts to one handle the later wins). A broken
// stream is opened again on demand, no sooner than a backoff that doubles from
// `reconnect_min_ms` to `reconnect_max_ms` while the server stays unreachable; until then its
// puts are dropped and its gets miss at once.
//
// Thread-safety: all methods are thread-safe.
#ifndef TMEM_CLIENT_TMEM_CLIENT_H_
#define TMEM_CLIENT_TMEM_CLIENT_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "client/channel.h"
#include "common/mutex.h"

namespace tmem::v1 {
class SessionResponse;
}

namespace tmem::client {

class PageStream;
class WireTlsCredentials;

struct DeferredFlush;  // tmem_client.cc

struct ClientOptions {
  // host:port of every tmemd, and/or dns:NAME:PORT entries: every A/AAAA record of NAME with
  // PORT (a headless Service), asked again every dns_refresh_ms while the client runs, so that a
  // node that joins or leaves moves only its own share of objects (rendezvous hashing).
  std::vector<std::string> servers;
  int64_t dns_refresh_ms = 5000;
  std::string dns_server;  // "IPv4:PORT" of the name server to ask ("": the system's resolver)
  // Objects whose last put's server is remembered (dns: membership only; 24 bytes each): when an
  // object's server changes, the old one gets a flush of it before it is asked anything else, so
  // that it never serves the older page should the object come back (docs/client.md).
  size_t max_tracked_objects = 1 << 20;
  int64_t call_timeout_ms = 1000;
  int streams_per_server = 2;  // Session streams per server (1..64)
  int64_t reconnect_min_ms = 50;
  int64_t reconnect_max_ms = 2000;
  int max_batch_pages = 256;  // pages per operation on the wire (the server's limit)
  // Put batches per server sent and not yet answered: PutPages returns once its pages are sent,
  // as the kernel's cleancache put does not wait for its page to be stored; their replies are
  // read later, and a put that failed is settled then (counted, its handles' older versions
  // flushed). A put is always settled before a flush or a get could overtake it (docs/client.md).
  // 0: PutPages waits for every reply before it returns. (64 batches of 32 pages: 8 MiB sent
  // ahead of its replies per server.)
  int max_unacked_put_batches = 64;
  TlsClientOptions tls;  // empty: plaintext (tmemd allows it on loopback only)
  // How pages travel: "auto" (the page wire protocol where the server offers it, found through
  // ServerInfo; gRPC Session streams otherwise), "wire" (the same, but a server that offers no
  // wire port is unreachable), "grpc" (Session streams only).
  std::string transport = "auto";
};

using PoolRef = uint32_t;  // the client's name for a pool (the same on every server or not)

class TmemClient {
 public:
  // InvalidArgument for an empty or duplicate server list. Connects lazily.
  static absl::StatusOr<std::unique_ptr<TmemClient>> Create(const ClientOptions& options);
  ~TmemClient();
  TmemClient(const TmemClient&) = delete;
  TmemClient& operator=(const TmemClient&) = delete;

  // A shared pool (uuid of 16 bytes) or a private one, on every server that answers; servers
  // that do not get it on first use. InvalidArgument for a bad page size or UUID.
  absl::StatusOr<PoolRef> CreateSharedPool(const std::array<uint8_t, 16>& uuid, uint32_t page_bytes,
                                           const std::string& tenant = "");
  absl::StatusOr<PoolRef> CreatePool(uint32_t page_bytes);

  // Ephemeral operations: never fail because a server is unreachable.
  // Put: InvalidArgument for a page of the wrong size; otherwise OK (stored or dropped).
  absl::Status Put(PoolRef pool, std::string_view object, uint64_t index, std::span<const uint8_t> page);
  // Get: true with the page in `out` on a hit, false on a miss (including an unreachable server).
  absl::StatusOr<bool> Get(PoolRef pool, std::string_view object, uint64_t index, std::span<uint8_t> out);
  // Batches: the same contracts per page. InvalidArgument (nothing sent) if any page or buffer
  // is of the wrong size or an object key is empty.
  struct PagePut {
    std::string_view object;
    uint64_t index = 0;
    std::span<const uint8_t> page;
  };
  absl::Status PutPages(PoolRef pool, std::span<const PagePut> pages);
  // Waits until every put sent so far is answered and settled (tests, tools, a clean exit).
  void WaitForPuts();
  struct PageGet {
    std::string_view object;
    uint64_t index = 0;
    std::span<uint8_t> out;
  };
  // hits[i] answers gets[i]; a hit's page is in gets[i].out.
  absl::StatusOr<std::vector<bool>> GetPages(PoolRef pool, std::span<const PageGet> gets);
  // Flushes: OK once delivered or recorded for replay.
  absl::Status FlushPage(PoolRef pool, std::string_view object, uint64_t index);
  absl::Status FlushObject(PoolRef pool, std::string_view object);
  absl::Status FlushPool(PoolRef pool);
  // Destroys the pool on every server that answers (a server that does not keeps it until it is
  // destroyed there by other means; its pages are unreachable through this client anyway).
  // Later calls with `pool` fail with NotFound. Returns the first error other than
  // unreachability or NotFound.
  absl::Status DestroyPool(PoolRef pool);

  // Which server (index into members(); with a static list, into options.servers) holds
  // `object` of `pool`.
  size_t ServerFor(PoolRef pool, std::string_view object) const;
  // The servers objects are spread over now (host:port), in ServerFor's order.
  std::vector<std::string> members() const;
  // Resolves the dns: entries now (as the refresh thread does every dns_refresh_ms); true if
  // the membership changed. For tests and tools.
  bool RefreshMembers();

  struct Counters {
    std::atomic<uint64_t> puts_dropped{0};      // server unreachable or refused
    std::atomic<uint64_t> gets_unreachable{0};  // misses because a server did not answer
    std::atomic<uint64_t> flushes_deferred{0};  // flushes recorded for replay
    std::atomic<uint64_t> flushes_replayed{0};
    std::atomic<uint64_t> restarts_seen{0};         // instance id changes
    std::atomic<uint64_t> streams_opened{0};        // streams opened (first ones and reconnects), either transport
    std::atomic<uint64_t> membership_changes{0};    // dns: membership changes seen
    std::atomic<uint64_t> moved_object_flushes{0};  // flushes queued on an object's former server
    std::atomic<uint64_t> wire_streams_opened{0};   // of which page wire protocol connections
    // Attempts to open a stream (after the backoff allowed one), opened or not: with the wire
    // protocol, asking a down server for its wire port is an attempt that opens nothing.
    std::atomic<uint64_t> stream_attempts{0};
    std::atomic<uint64_t> get_requests{0};  // get operations sent (a batch's parts)
  };
  const Counters& counters() const { return counters_; }

 public:
  struct Server;  // per-server connection state (tmem_client.cc)

 private:
  struct Pool;
  // The servers objects are spread over, as of one membership (a snapshot each call keeps).
  struct Members {
    std::vector<Server*> list;
    uint64_t version = 0;
  };
  explicit TmemClient(const ClientOptions& options);
  std::shared_ptr<const Members> CurrentMembers() const;
  // The Server of `address`, made on first use (servers are never forgotten: a node that leaves
  // and comes back finds its deferred flushes).
  Server* ServerOf(const std::string& address) ABSL_EXCLUSIVE_LOCKS_REQUIRED(members_mu_);
  // Every server ever known.
  std::vector<Server*> AllServers() const;
  void RefreshLoop();
  // dns: membership: remembers `server` as where `object` of `pool` was last put; if another
  // server held it, queues a flush of the object there.
  void NoteOwner(const Pool& pool, std::string_view object, Server* server);

  Pool* FindPool(PoolRef ref);
  // The one path of the three flushes: queues `flush` on the servers it concerns and delivers
  // what it can (the rest is replayed before those servers' next calls).
  absl::Status Invalidate(DeferredFlush flush);
  // Queues `flush` for `server` (its mu held), bounded by kMaxDeferredFlushes per server.
  void DeferFlush(Server& server, DeferredFlush flush);
  static constexpr size_t kMaxDeferredFlushes = 4096;
  static size_t ServerForKey(const Members& m, std::string_view hash_key, std::string_view object);
  struct Part;
  // Splits a batch by server and stream: a handle's stream is chosen by its object key, except
  // on servers where `own_stream[server]` holds: their whole share travels on the calling
  // thread's own stream (ThreadStream).
  std::vector<Part> Split(const Members& m, const Pool& pool, size_t count,
                          const std::function<std::string_view(size_t)>& object,
                          const std::vector<char>* own_stream = nullptr) const;
  // The calling thread's own stream index (threads numbered in the order they first ask, so
  // that up to streams_per_server threads each have a stream of their own).
  size_t ThreadStream() const;
  // A healthy stream `k` of `server`, opened if needed and the backoff allows; nullptr if not.
  std::shared_ptr<PageStream> StreamFor(Server& server, size_t k);
  // The server's page wire protocol port for this client (0: none), asked through ServerInfo once
  // per connection; -1 when the server did not answer. The caller holds server.mu.
  int WirePortOf(Server& server);
  struct UnackedPut;
  // Settles `server`'s unanswered put batches: every one already answered; then, waiting for
  // them, every one when `all`, or those sent on stream `index` by another stream object than
  // `keep_stream` (a stream that broke since; all of that index when it is null). Takes no lock
  // of the caller's. False when a put waited for got no reply in time (the server hangs).
  static constexpr size_t kNoIndex = SIZE_MAX;
  bool SettlePuts(Server& server, const PageStream* keep_stream, bool all, size_t index = kNoIndex);
  // The caller holds server.settle_mu.
  bool SettlePutsLocked(Server& server, const PageStream* keep_stream, bool all, size_t index);
  // False when the put got no reply in time.
  bool SettlePut(Server& server, UnackedPut& put);
  // Records what a reply (or its absence) says about `server`.
  void NoteReply(Server& server, PoolRef pool, const absl::StatusOr<tmem::v1::SessionResponse>& reply);
  // Makes `server` ready for calls on `pool`: replays deferred flushes, creates the pool there if
  // needed. Returns the server's pool id, or an error if it cannot be reached.
  absl::StatusOr<uint32_t> Prepare(Server& server, Pool& pool);
  // Prepare's steps, the caller holding server.mu (and, to deliver, server.settle_mu).
  absl::StatusOr<uint32_t> DeliverFlushesLocked(Server& server, Pool& pool);
  absl::StatusOr<uint32_t> PoolIdLocked(Server& server, Pool& pool);
  // Creates (or, for a shared pool, joins) `pool` on `server`; the caller holds server.mu.
  absl::StatusOr<uint32_t> CreateOn(Server& server, const Pool& pool);

  const ClientOptions options_;
  ChannelFactory channels_;                       // set in Create, then const
  std::shared_ptr<WireTlsCredentials> wire_tls_;  // set in Create (TLS only), then const
  // Lock order: members_mu_ -> Server::mu -> mu_ (members_mu_ is held only to read or change
  // the lists, never across a call).
  mutable Mutex members_mu_;
  std::vector<std::unique_ptr<Server>> servers_ ABSL_GUARDED_BY(members_mu_);  // every server ever known
  std::shared_ptr<const Members> members_ ABSL_GUARDED_BY(members_mu_);
  std::vector<std::pair<std::string, int>> dns_targets_;  // (name, port), set in Create, then const
  std::vector<std::string> static_servers_;               // set in Create, then const
  // Where each object was last put (by a 64-bit hash of pool and object), dns: membership only.
  Mutex owners_mu_;
  std::unordered_map<uint64_t, Server*> owners_ ABSL_GUARDED_BY(owners_mu_);
  bool owners_lost_ ABSL_GUARDED_BY(owners_mu_) = false;  // the table overflowed and was cleared
  Mutex refresh_mu_;
  CondVar refresh_cv_;
  bool stopping_ ABSL_GUARDED_BY(refresh_mu_) = false;
  std::thread refresher_;

  mutable Mutex mu_;
  std::map<PoolRef, std::unique_ptr<Pool>> pools_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<Pool>> retired_ ABSL_GUARDED_BY(mu_);  // destroyed pools, kept alive
  PoolRef next_ref_ ABSL_GUARDED_BY(mu_) = 1;

  Counters counters_;
};

}  // namespace tmem::client

#endif  // TMEM_CLIENT_TMEM_CLIENT_H_
