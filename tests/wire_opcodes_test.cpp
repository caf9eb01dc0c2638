// The opcode table (wire/opcodes.hpp) is the one source of opcode facts: the
// spec's table says the same, and the codec, the permission map and the
// message types all follow it.
#include "gpulease/wire/opcodes.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "gpulease/capability/permissions.hpp"
#include "gpulease/wire/messages.hpp"

namespace gpulease::wire {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> cells(const std::string& line) {
  std::vector<std::string> out;
  std::stringstream ss(line);
  std::string cell;
  std::getline(ss, cell, '|');  // before the first bar
  while (std::getline(ss, cell, '|')) {
    const auto b = cell.find_first_not_of(' ');
    const auto e = cell.find_last_not_of(' ');
    out.push_back(b == std::string::npos ? "" : cell.substr(b, e - b + 1));
  }
  if (!out.empty() && out.back().empty()) out.pop_back();
  return out;
}

std::string unquote(std::string s) {
  if (s.size() >= 2 && s.front() == '`' && s.back() == '`') return s.substr(1, s.size() - 2);
  return s;
}

// Rows of the table that follows the marker comment in docs/PROTOCOL.md.
std::vector<std::vector<std::string>> spec_rows() {
  std::ifstream in(fs::path(GPULEASE_SOURCE_DIR) / "docs" / "PROTOCOL.md");
  EXPECT_TRUE(in) << "docs/PROTOCOL.md is missing";
  std::string line;
  bool in_table = false;
  std::vector<std::vector<std::string>> rows;
  while (std::getline(in, line)) {
    if (line.find("<!-- opcode table:") != std::string::npos) {
      in_table = true;
      continue;
    }
    if (!in_table) continue;
    if (line.empty() || line[0] != '|') break;
    auto c = cells(line);
    if (c.empty() || c[0] == "opcode" || c[0].rfind("---", 0) == 0) continue;
    rows.push_back(std::move(c));
  }
  return rows;
}

TEST(OpcodeTable, TheSpecTableSaysWhatTheCodeTableSays) {
  const auto rows = spec_rows();
  ASSERT_EQ(rows.size(), kOpcodeTable.size()) << "docs/PROTOCOL.md opcode table";
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& r = rows[i];
    const OpcodeInfo& info = kOpcodeTable[i];
    ASSERT_GE(r.size(), 6u);
    SCOPED_TRACE(std::string(info.name));
    EXPECT_EQ(std::stoul(unquote(r[0]), nullptr, 16), static_cast<uint16_t>(info.op));
    EXPECT_EQ(unquote(r[1]), info.name);
    EXPECT_EQ(r[2], info.lease_rule == LeaseRule::kZero ? "0" : "the lease");
    EXPECT_EQ(r[3], info.needs_token ? "required" : "optional");
    const auto perm = static_cast<capability::Permission>(info.permission);
    EXPECT_EQ(unquote(r[4]), info.permission == 0 ? "none" : capability::permission_name(perm));
    EXPECT_EQ(r[5], info.resend_safe ? "yes" : "no");
  }
}

TEST(OpcodeTable, NamesAndNumbersRoundTrip) {
  std::set<std::string_view> names;
  for (const auto& info : kOpcodeTable) {
    EXPECT_EQ(opcode_name(info.op), info.name);
    EXPECT_EQ(opcode_from_name(info.name), info.op);
    EXPECT_TRUE(is_known_opcode(static_cast<uint16_t>(info.op)));
    EXPECT_TRUE(names.insert(info.name).second) << "duplicate name " << info.name;
  }
  EXPECT_FALSE(is_known_opcode(0x0000));
  EXPECT_FALSE(is_known_opcode(0x060b));
  EXPECT_EQ(opcode_name(static_cast<Opcode>(0x7777)), "UNKNOWN");
  EXPECT_FALSE(opcode_from_name("NOT_AN_OPCODE"));
}

TEST(OpcodeTable, ThePermissionMapReadsTheTable) {
  for (const auto& info : kOpcodeTable) {
    auto p = capability::required_permission(info.op);
    ASSERT_TRUE(p) << info.name;
    EXPECT_EQ(capability::bits(*p), info.permission) << info.name;
    EXPECT_EQ(capability::requires_token(info.op), info.needs_token) << info.name;
  }
  EXPECT_FALSE(capability::required_permission(static_cast<Opcode>(0x7777)));
}

TEST(OpcodeTable, TheCodecDecodesEachOpcodeAsItsMessageTypes) {
  const Limits limits;
  // An empty payload is the whole request of exactly the opcodes whose
  // request type is Empty, and is refused for every other.
  for (const auto& info : kOpcodeTable) {
    auto d = decode_request(info.op, {}, limits);
    const bool empty_request = info.op == Opcode::kLeaseRelease || info.op == Opcode::kLeaseQuery ||
                               info.op == Opcode::kLeaseList || info.op == Opcode::kSync ||
                               info.op == Opcode::kPing;
    EXPECT_EQ(static_cast<bool>(d), empty_request) << info.name;
  }
  auto sync = decode_reply(Opcode::kSync, encode_payload(SyncReply{7}), limits);
  ASSERT_TRUE(sync);
  EXPECT_EQ(std::get<SyncReply>(*sync).completed, 7u);
  static_assert(std::is_same_v<RequestOf<Opcode::kMemAlloc>, MemAllocRequest>);
  static_assert(std::is_same_v<ReplyOf<Opcode::kMemRead>, MemReadReply>);
}

TEST(OpcodeTable, OnlyTokenlessOpcodesAndListingsActOnNoLease) {
  std::set<Opcode> zero;
  for (const auto& info : kOpcodeTable) {
    if (info.lease_rule == LeaseRule::kZero) zero.insert(info.op);
  }
  EXPECT_EQ(zero, (std::set<Opcode>{Opcode::kHello, Opcode::kPing, Opcode::kLeaseAcquire,
                                    Opcode::kLeaseList}));
}

}  // namespace
}  // namespace gpulease::wire
