// Protocol limits. One struct, passed to every decoder, so a length from the
// wire is capped before anything is allocated (a peer could declare 4 GiB).
// A node announces its limits in HELLO; these defaults are the protocol
// maximums, and a node may only announce values at or below them.
#pragma once

#include <array>
#include <cstdint>

namespace gpulease::wire {

struct Limits {
  uint32_t max_token_bytes = 1024;         // token section of a request
  uint32_t max_payload_bytes = 64u << 20;  // payload of any frame
  uint32_t max_message_bytes = 1024;       // UTF-8 message of an error reply
  uint32_t max_ping_bytes = 64u << 10;     // PING echo data
  uint32_t max_name_bytes = 256;           // kernel names, node id, device names
  uint32_t max_kernel_args = 128;          // arguments of one launch
  uint32_t max_arg_bytes = 4096;           // total parameter bytes of one launch
  uint32_t max_scalar_bytes = 256;         // one typed scalar argument
  uint32_t max_devices = 64;               // devices listed in HELLO
  uint32_t max_list_entries = 4096;        // leases listed by LEASE_LIST
  uint32_t max_threads_per_block = 1024;
  std::array<uint32_t, 3> max_block{1024, 1024, 64};
  std::array<uint32_t, 3> max_grid{0x7fffffff, 65535, 65535};
  uint32_t max_shared_bytes = 228u << 10;  // dynamic shared memory of one launch
  uint32_t max_inflight = 64;              // requests in flight per connection
};

}  // namespace gpulease::wire
