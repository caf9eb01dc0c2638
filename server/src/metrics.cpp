#include "metrics.hpp"

#include <cstdio>

namespace gpulease::server {

size_t opcode_slot(wire::Opcode op) noexcept {
  for (size_t i = 0; i < kOpcodeSlots; ++i) {
    if (wire::kAllOpcodes[i] == op) return i;
  }
  return kOpcodeSlots;
}

Metrics::Metrics() = default;

void Metrics::frame_done(wire::Opcode op, wire::Status status, uint64_t latency_us) noexcept {
  size_t slot = opcode_slot(op);
  auto st = static_cast<size_t>(status);
  if (slot >= kOpcodeSlots || st >= kStatusSlots) return;
  frames_[slot][st].fetch_add(1, std::memory_order_relaxed);
  Histogram& h = latency_[slot];
  size_t b = 0;
  while (b < kLatencyBucketsUs.size() && latency_us > kLatencyBucketsUs[b]) ++b;
  h.buckets[b].fetch_add(1, std::memory_order_relaxed);
  h.sum_us.fetch_add(latency_us, std::memory_order_relaxed);
  h.count.fetch_add(1, std::memory_order_relaxed);
}

void Metrics::auth_failed(wire::Status status) noexcept {
  auto st = static_cast<size_t>(status);
  if (st < kStatusSlots) auth_failures_[st].fetch_add(1, std::memory_order_relaxed);
}

namespace {

void header(std::string& out, const char* name, const char* type, const char* help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

template <typename T>
void sample(std::string& out, const char* name, const std::string& labels, T v) {
  out += name;
  if (!labels.empty()) {
    out += '{';
    out += labels;
    out += '}';
  }
  out += ' ';
  out += std::to_string(v);
  out += '\n';
}

std::string label(std::string_view k, std::string_view v) {
  std::string s(k);
  s += "=\"";
  s += v;
  s += '"';
  return s;
}

constexpr const char* kDropNames[] = {"released", "expired", "disconnected", "shutdown"};

}  // namespace

std::string Metrics::render() const {
  std::string o;
  o.reserve(16 << 10);
  auto rd = [](const auto& a) { return a.load(std::memory_order_relaxed); };

  header(o, "gpu_lease_acquired_total", "counter", "Leases granted.");
  sample(o, "gpu_lease_acquired_total", "", rd(lease_acquired));
  header(o, "gpu_lease_dropped_total", "counter", "Leases ended, by reason.");
  for (size_t i = 0; i < dropped_.size(); ++i) {
    sample(o, "gpu_lease_dropped_total", label("reason", kDropNames[i]), rd(dropped_[i]));
  }
  header(o, "gpu_leases_active", "gauge", "Leases currently held.");
  sample(o, "gpu_leases_active", "", rd(leases_active));
  header(o, "gpu_session_mem_alloc_bytes", "gauge", "Device memory allocated by sessions.");
  sample(o, "gpu_session_mem_alloc_bytes", "", rd(mem_alloc_bytes));
  header(o, "gpu_session_launch_total", "counter", "Kernel launches queued.");
  sample(o, "gpu_session_launch_total", "", rd(launch_total));
  header(o, "gpu_session_sync_total", "counter", "SYNC operations completed.");
  sample(o, "gpu_session_sync_total", "", rd(sync_total));
  header(o, "gpu_session_sync_errors_total", "counter", "SYNC operations that reported a fault.");
  sample(o, "gpu_session_sync_errors_total", "", rd(sync_errors));

  header(o, "gpulease_frames_total", "counter", "Request frames answered, by opcode and status.");
  for (size_t i = 0; i < kOpcodeSlots; ++i) {
    for (size_t s = 0; s < kStatusSlots; ++s) {
      uint64_t v = rd(frames_[i][s]);
      if (v == 0) continue;
      sample(o, "gpulease_frames_total",
             label("opcode", wire::opcode_name(wire::kAllOpcodes[i])) + "," +
                 label("status", wire::status_name(static_cast<wire::Status>(s))),
             v);
    }
  }
  header(o, "gpulease_auth_failures_total", "counter",
         "Frames refused by token validation, by reason.");
  for (auto st : {wire::Status::kUnauthenticated, wire::Status::kTokenExpired,
                  wire::Status::kPermissionDenied, wire::Status::kRevoked}) {
    sample(o, "gpulease_auth_failures_total", label("reason", wire::status_name(st)),
           rd(auth_failures_[static_cast<size_t>(st)]));
  }
  if (token_cache_stats) {
    auto [hits, misses] = token_cache_stats();
    header(o, "gpulease_token_cache_hits_total", "counter", "Token signature cache hits.");
    sample(o, "gpulease_token_cache_hits_total", "", hits);
    header(o, "gpulease_token_cache_misses_total", "counter", "Token signature cache misses.");
    sample(o, "gpulease_token_cache_misses_total", "", misses);
  }
  if (signature_checks) {
    header(o, "gpulease_token_signature_checks_total", "counter",
           "Ed25519 token signature checks run (tokens not in the signature cache).");
    sample(o, "gpulease_token_signature_checks_total", "", signature_checks());
  }
  header(o, "gpulease_auth_rate_limited_total", "counter",
         "Frames refused without a token check: their client address had no failed "
         "verification left (--auth-failures-per-second).");
  sample(o, "gpulease_auth_rate_limited_total", "", rd(auth_rate_limited));
  header(o, "gpulease_bytes_in_total", "counter", "Bytes received from clients.");
  sample(o, "gpulease_bytes_in_total", "", rd(bytes_in));
  header(o, "gpulease_bytes_out_total", "counter", "Bytes sent to clients.");
  sample(o, "gpulease_bytes_out_total", "", rd(bytes_out));
  header(o, "gpulease_mem_read_lent_bytes_total", "counter",
         "MEM_READ reply bytes sent straight from device memory (no copy).");
  sample(o, "gpulease_mem_read_lent_bytes_total", "", rd(mem_read_lent_bytes));
  header(o, "gpulease_mem_read_loans_revoked_total", "counter",
         "MEM_READ replies sent from device memory that were copied first because a later op "
         "of the lease would change or free that memory.");
  sample(o, "gpulease_mem_read_loans_revoked_total", "", rd(mem_read_loans_revoked));
  header(o, "gpulease_connections_active", "gauge", "Open client connections.");
  sample(o, "gpulease_connections_active", "", rd(connections_active));
  header(o, "gpulease_connections_total", "counter", "Client connections accepted.");
  sample(o, "gpulease_connections_total", "", rd(connections_total));
  header(o, "gpulease_connections_rejected_total", "counter",
         "Connections refused by a connection limit.");
  sample(o, "gpulease_connections_rejected_total", "", rd(connections_rejected));
  header(o, "gpulease_connections_evicted_total", "counter",
         "Connections without a verified token, closed to admit a new one at a limit.");
  sample(o, "gpulease_connections_evicted_total", "", rd(connections_evicted));
  header(o, "gpulease_bad_frames_total", "counter", "Frames rejected before dispatch.");
  sample(o, "gpulease_bad_frames_total", "", rd(bad_frames));
  header(o, "gpulease_metrics_connections_rejected_total", "counter",
         "Metrics scrapes refused by the endpoint's connection limit.");
  sample(o, "gpulease_metrics_connections_rejected_total", "", rd(metrics_connections_rejected));
  if (const int64_t reg = rd(fleet_registered); reg >= 0) {
    header(o, "gpulease_fleet_registered", "gauge",
           "1 while the node's record is in the fleet directory (etcd), else 0.");
    sample(o, "gpulease_fleet_registered", "", static_cast<uint64_t>(reg));
    header(o, "gpulease_fleet_registrations_total", "counter",
           "Registrations in the fleet directory (the first and every re-registration).");
    sample(o, "gpulease_fleet_registrations_total", "", rd(fleet_registrations));
    header(o, "gpulease_fleet_registry_errors_total", "counter",
           "Calls to the fleet registry (etcd) that failed; the node retries.");
    sample(o, "gpulease_fleet_registry_errors_total", "", rd(fleet_errors));
  }
  if (frame_bytes_stats) {
    auto fb = frame_bytes_stats();
    header(o, "gpulease_frame_bytes_held", "gauge",
           "Frame-body bytes reserved against the frame-bytes budget now.");
    sample(o, "gpulease_frame_bytes_held", "", fb.held);
    header(o, "gpulease_frame_bytes_pooled", "gauge", "Body buffer bytes kept for reuse.");
    sample(o, "gpulease_frame_bytes_pooled", "", fb.pooled);
    header(o, "gpulease_frame_budget_waits_total", "counter",
           "Frames that waited for room in a share of the frame-bytes budget.");
    sample(o, "gpulease_frame_budget_waits_total", "", fb.waits);
  }

  header(o, "gpulease_request_duration_seconds", "histogram",
         "Time from frame read to reply queued, by opcode.");
  for (size_t i = 0; i < kOpcodeSlots; ++i) {
    const Histogram& h = latency_[i];
    uint64_t count = rd(h.count);
    if (count == 0) continue;
    std::string op = label("opcode", wire::opcode_name(wire::kAllOpcodes[i]));
    uint64_t cum = 0;
    for (size_t b = 0; b <= kLatencyBucketsUs.size(); ++b) {
      cum += rd(h.buckets[b]);
      char le[32];
      if (b < kLatencyBucketsUs.size()) {
        std::snprintf(le, sizeof le, "%g", static_cast<double>(kLatencyBucketsUs[b]) / 1e6);
      } else {
        std::snprintf(le, sizeof le, "+Inf");
      }
      sample(o, "gpulease_request_duration_seconds_bucket", op + "," + label("le", le), cum);
    }
    char sum[32];
    std::snprintf(sum, sizeof sum, "%.6f", static_cast<double>(rd(h.sum_us)) / 1e6);
    o += "gpulease_request_duration_seconds_sum{" + op + "} " + sum + "\n";
    sample(o, "gpulease_request_duration_seconds_count", op, count);
  }
  return o;
}

}  // namespace gpulease::server
