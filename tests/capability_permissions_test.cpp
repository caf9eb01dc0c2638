#include "gpulease/capability/permissions.hpp"

#include <gtest/gtest.h>

namespace gpulease::capability {
namespace {

using wire::Opcode;

TEST(RequiredPermission, FollowsTheSpecTable) {
  EXPECT_EQ(required_permission(Opcode::kHello), Permission::kNone);
  EXPECT_EQ(required_permission(Opcode::kPing), Permission::kNone);
  EXPECT_EQ(required_permission(Opcode::kLeaseAcquire), Permission::kLeaseAcquire);
  EXPECT_EQ(required_permission(Opcode::kLeaseQuery), Permission::kLeaseQuery);
  EXPECT_EQ(required_permission(Opcode::kLeaseList), Permission::kLeaseQuery);
  EXPECT_EQ(required_permission(Opcode::kLeaseRenew), Permission::kLeaseRenew);
  EXPECT_EQ(required_permission(Opcode::kLeaseRelease), Permission::kLeaseRelease);
  EXPECT_EQ(required_permission(Opcode::kCapRequest), Permission::kCapRequest);
  for (Opcode op : {Opcode::kMemAlloc, Opcode::kMemFree, Opcode::kMemWrite, Opcode::kMemRead}) {
    EXPECT_EQ(required_permission(op), Permission::kMem);
  }
  EXPECT_EQ(required_permission(Opcode::kModuleLoad), Permission::kModule);
  EXPECT_EQ(required_permission(Opcode::kModuleUnload), Permission::kModule);
  EXPECT_EQ(required_permission(Opcode::kModuleGlobal), Permission::kModule);
  for (Opcode op : {Opcode::kLaunch, Opcode::kSync, Opcode::kGpuSubmit}) {
    EXPECT_EQ(required_permission(op), Permission::kTaskletSubmit);
  }
}

TEST(RequiredPermission, UnknownOpcodeIsGrantedByNothing) {
  EXPECT_FALSE(required_permission(static_cast<Opcode>(0x7777)));
}

TEST(RequiredPermission, EveryKnownOpcodeIsMapped) {
  for (Opcode op : wire::kAllOpcodes) EXPECT_TRUE(required_permission(op)) << opcode_name(op);
}

TEST(RequiresToken, OnlyHelloAndPingGoWithout) {
  for (Opcode op : wire::kAllOpcodes) {
    EXPECT_EQ(requires_token(op), op != Opcode::kHello && op != Opcode::kPing);
  }
}

TEST(Permissions, NoneIsAlwaysGranted) {
  EXPECT_TRUE(grants(0, Permission::kNone));
  EXPECT_FALSE(grants(0, Permission::kMem));
  EXPECT_TRUE(grants(kAllPermissions, Permission::kAdmin));
}

TEST(ParsePermissions, AcceptsListsAllAndCaseInsensitiveNames) {
  EXPECT_EQ(*parse_permissions("lease_acquire,mem, module ,TASKLET_SUBMIT"),
            bits(Permission::kLeaseAcquire) | bits(Permission::kMem) | bits(Permission::kModule) |
                bits(Permission::kTaskletSubmit));
  EXPECT_EQ(*parse_permissions("all"), kAllPermissions);
  EXPECT_EQ(*parse_permissions("none"), 0u);
  EXPECT_EQ(*parse_permissions("mem,mem"), bits(Permission::kMem));
}

TEST(ParsePermissions, RejectsUnknownAndEmptyEntries) {
  auto r = parse_permissions("mem,gpu");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.status(), Status::kInvalidArgument);
  EXPECT_NE(r.error().message.find("'gpu'"), std::string::npos);
  EXPECT_FALSE(parse_permissions(""));
  EXPECT_FALSE(parse_permissions("mem,"));
}

TEST(FormatPermissions, RoundTripsThroughParse) {
  for (PermissionSet s : {0u, 1u, 0x55u, kAllPermissions}) {
    EXPECT_EQ(*parse_permissions(format_permissions(s)), s);
  }
  EXPECT_EQ(format_permissions(bits(Permission::kAdmin) | (1u << 12)), "admin,0x1000");
}

TEST(PermissionNames, EveryBitHasAUniqueName) {
  for (unsigned b = 0; b < 9; ++b) {
    const auto p = static_cast<Permission>(1u << b);
    EXPECT_EQ(permission_from_name(permission_name(p)), p);
  }
}

}  // namespace
}  // namespace gpulease::capability
