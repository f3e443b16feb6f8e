// Limits both ends of an internal channel must agree on. Proto-independent, so the
// coordinator and the worker include the same numbers without pulling in each other.
#pragma once

namespace lattice {

// Cap on one control-plane message (WorkerControl/Connect), set as the gRPC channel's
// and the server's max send and receive size. A StepRequest carries every scheduled
// token and block id of a step; 64 MiB is far above any real step, yet bounds what a
// broken or hostile peer can make the other side allocate.
inline constexpr int kMaxControlMessageBytes = 64 << 20;

}  // namespace lattice
