// Admission: best-fit placement, tenant caps, and a Reservation that gives
// its bytes back exactly once (destructor, release(), move).
#include <gtest/gtest.h>

#include "gpulease/sim/sim_backend.hpp"
#include "leases/admission.hpp"

namespace gpulease::server {
namespace {

struct Fixture {
  Fixture() {
    sim::SimConfig c;
    c.devices = {{"small", 10 << 20}, {"large", 100 << 20}};
    c.context_overhead_bytes = 1 << 20;
    c.worker_threads = 1;
    backend = sim::make_sim_backend(c);
    admission = std::make_unique<Admission>(backend->devices(), *backend, AdmissionLimits{2, 0});
  }
  uint64_t room(uint16_t dev) { return admission->device_room().at(dev).second; }
  std::unique_ptr<DeviceBackend> backend;
  std::unique_ptr<Admission> admission;
};

TEST(Admission, BestFitTakesQuotaPlusOverheadAndTheReservationGivesItBack) {
  Fixture f;
  {
    auto r = f.admission->reserve({"alice", 4 << 20});
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->device(), 0);  // the device with the least room that fits
    EXPECT_EQ(f.room(0), (10u << 20) - (5u << 20));
    Reservation moved = std::move(r).value();
    EXPECT_TRUE(moved.held());
    EXPECT_EQ(f.room(0), (10u << 20) - (5u << 20));  // a move gives nothing back
  }
  EXPECT_EQ(f.room(0), 10u << 20);  // the destructor did, once
}

TEST(Admission, ReleaseIsIdempotentAndTenantCapsCountLiveReservations) {
  Fixture f;
  auto a = f.admission->reserve({"alice", 1 << 20});
  auto b = f.admission->reserve({"alice", 1 << 20});
  ASSERT_TRUE(a.ok() && b.ok());
  auto c = f.admission->reserve({"alice", 1 << 20});
  EXPECT_EQ(c.status(), wire::Status::kCapacityExceeded);  // 2 leases per tenant
  EXPECT_TRUE(f.admission->reserve({"bob", 1 << 20}).ok());
  a->release();
  a->release();
  EXPECT_FALSE(a->held());
  EXPECT_TRUE(f.admission->reserve({"alice", 1 << 20}).ok());
}

TEST(Admission, ADeviceExclusiveReservationHoldsTheDeviceAlone) {
  Fixture f;
  auto x = f.admission->reserve({"alice", 1 << 20, 1, wire::Exclusivity::kDeviceExclusive});
  ASSERT_TRUE(x.ok());
  EXPECT_EQ(f.room(1), 0u);
  EXPECT_EQ(f.admission->reserve({"bob", 1 << 20, 1}).status(), wire::Status::kCapacityExceeded);
  x->release();
  EXPECT_TRUE(f.admission->reserve({"bob", 1 << 20, 1}).ok());
}

TEST(Admission, NothingFitsIsCapacityExceededAndChangesNothing) {
  Fixture f;
  EXPECT_EQ(f.admission->reserve({"alice", 200 << 20}).status(), wire::Status::kCapacityExceeded);
  EXPECT_EQ(f.admission->reserve({"alice", 1, 7}).status(), wire::Status::kCapacityExceeded);
  EXPECT_EQ(f.room(0), 10u << 20);
  EXPECT_EQ(f.room(1), 100u << 20);
}

}  // namespace
}  // namespace gpulease::server
