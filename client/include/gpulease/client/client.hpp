// The gpulease native client library: everything a tenant program needs.
// Guide: docs/CLIENT.md.
#pragma once

#include "gpulease/client/connection.hpp"   // IWYU pragma: export
#include "gpulease/client/errors.hpp"       // IWYU pragma: export
#include "gpulease/client/fleet.hpp"        // IWYU pragma: export
#include "gpulease/client/grants.hpp"       // IWYU pragma: export
#include "gpulease/client/idempotency.hpp"  // IWYU pragma: export
#include "gpulease/client/jobs.hpp"         // IWYU pragma: export
#include "gpulease/client/lease.hpp"        // IWYU pragma: export
#include "gpulease/client/renewal.hpp"      // IWYU pragma: export
#include "gpulease/client/session.hpp"      // IWYU pragma: export
