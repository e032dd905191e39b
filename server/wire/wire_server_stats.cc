// The wire server's metrics: its loops' counters and histograms, summed.
#include "common/latency_histogram.h"
#include "server/wire/wire_server.h"

namespace tmem::wire {

void WireServer::VisitStats(StatsVisitor& v) const {
  static constexpr const char* kVerbs[] = {"invalid",     "hello",        "put",       "get",
                                           "flush_pages", "flush_object", "flush_pool"};
  const std::vector<const WireCounters*> loops = loop_counters();
  auto sum = [&](auto field) {
    uint64_t total = 0;
    for (const WireCounters* l : loops) total += static_cast<uint64_t>((l->*field).load(std::memory_order_relaxed));
    return total;
  };
  for (int verb = 0; verb <= kMaxVerb; ++verb) {
    uint64_t total = 0;
    for (const WireCounters* l : loops) total += l->requests[verb].load(std::memory_order_relaxed);
    v.Counter("wire_requests", "Page wire protocol requests, by verb", total, {{"verb", kVerbs[verb]}});
  }
  v.Counter("wire_errors", "Page wire protocol replies with a status other than OK", sum(&WireCounters::errors), {});
  v.Counter("wire_pages_put", "Pages put over the page wire protocol", sum(&WireCounters::pages_put), {});
  v.Counter("wire_pages_got", "Page hits sent over the page wire protocol", sum(&WireCounters::pages_got), {});
  v.Counter("wire_received_bytes", "Bytes of requests received over the page wire protocol (after TLS)",
            sum(&WireCounters::bytes_in), {});
  v.Counter("wire_sent_bytes", "Bytes of replies sent over the page wire protocol (before TLS)",
            sum(&WireCounters::bytes_out), {});
  v.Counter("wire_connections_accepted", "Page wire protocol connections accepted",
            sum(&WireCounters::connections_accepted), {});
  v.Counter("wire_connections_refused",
            "Page wire protocol connections refused: TLS handshake failed, no tenant, or max_connections reached",
            sum(&WireCounters::connections_refused), {});
  v.Counter("wire_connections_timed_out", "Page wire protocol connections closed for a handshake or idle timeout",
            sum(&WireCounters::connections_timed_out), {});
  v.Counter("wire_tls_sessions", "Page wire protocol TLS sessions by who seals and opens their records (tls.records)",
            sum(&WireCounters::tls_own_records), {{"records", "tmem"}});
  v.Counter("wire_tls_sessions", "Page wire protocol TLS sessions by who seals and opens their records (tls.records)",
            sum(&WireCounters::tls_gnutls_records), {{"records", "gnutls"}});
  v.Counter("wire_tls_key_updates", "TLS 1.3 key updates of closed page wire protocol sessions, by direction",
            sum(&WireCounters::tls_key_updates_received), {{"direction", "received"}});
  v.Counter("wire_tls_key_updates", "TLS 1.3 key updates of closed page wire protocol sessions, by direction",
            sum(&WireCounters::tls_key_updates_sent), {{"direction", "sent"}});
  v.Gauge("wire_connections", "Page wire protocol connections open", static_cast<double>(connections_open()), {});
  v.Gauge("wire_gets_waiting_device", "Page wire protocol GETs waiting for their device reads (off the event loops)",
          static_cast<double>(sum(&WireCounters::gets_waiting)), {});
  v.Counter("wire_gets_waited_device", "Page wire protocol GETs that waited for device reads off the event loops",
            sum(&WireCounters::gets_waited), {});
  for (int verb = 1; verb <= kMaxVerb; ++verb) {
    LatencyHistogram all;
    for (const WireCounters* l : loops) all.Add(l->durations[verb]);
    all.Visit(v, "wire_request_duration_seconds",
              "Page wire protocol requests' time in tmemd, by verb: from the request read whole to its reply "
              "queued, a GET's wait for the device included",
              {{"verb", kVerbs[verb]}});
  }
  LatencyHistogram waits;
  for (const WireCounters* l : loops) waits.Add(l->device_waits);
  waits.Visit(v, "wire_get_device_wait_seconds",
              "Page wire protocol GETs' wait for their device reads, from the lookup (the end of the event loop's "
              "turn starts them) to the loop reaping them",
              {});
}

}  // namespace tmem::wire
