// Builds against the installed headers and libraries; runs without a node.
#include <cstdio>

#include "gpulease/client/client.hpp"

int main() {
  namespace gl = gpulease::client;
  auto addr = gl::NodeAddress::parse("127.0.0.1:7070");
  if (!addr || addr->port != 7070) return 1;
  gl::KernelArgs args;
  args.push_u32(1).push_f32(2.0f).push_buffer(gl::DeviceBuffer{0x1000, 64});
  if (args.size() != 3) return 1;
  // Nothing listens on port 1: a clean CONNECTION_LOST, no exception.
  auto c = gl::Connection::connect("127.0.0.1:1", "");
  if (c.ok() || !c.error().is_connection_lost()) return 1;
  std::printf("consumer OK: %s\n", c.error().to_string().c_str());
  return 0;
}
