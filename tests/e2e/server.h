// A `lattice serve` (or `lattice coordinator`) process on loopback for end-to-end
// tests, with a gRPC stub to it.
#pragma once

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "lattice/v1/lattice.grpc.pb.h"
#include "tests/e2e/run_process.h"

namespace lattice::testing {

// `lattice serve` (or `coordinator`, or either under mpirun: `prefix`) in the
// background; stopped (SIGTERM) when destroyed.
class Server {
 public:
  Server(const std::filesystem::path& model, std::vector<std::string> flags, std::vector<std::string> prefix = {},
         const char* command = "serve", bool wait_ready = true)
      : under_mpirun_(!prefix.empty()) {
    std::vector<std::string> argv = prefix;
    for (const std::string& a : {std::string(LATTICE_BINARY), std::string(command), std::string("--model"),
                                 model.string(), std::string("--host"), std::string("127.0.0.1"),
                                 std::string("--port"), std::string("0")}) {
      argv.push_back(a);
    }
    if (std::find(flags.begin(), flags.end(), "--kv-cache-memory") == flags.end()) {
      flags.insert(flags.end(), {"--kv-cache-memory", "8M"});  // small: many servers share CI's memory
    }
    argv.insert(argv.end(), flags.begin(), flags.end());
    process_ = StartWithFirstLine(argv, 60);
    const size_t colon = process_.first_line.rfind(':');
    EXPECT_NE(colon, std::string::npos) << "no listening line: " << process_.first_line;
    address_ = "127.0.0.1:" + process_.first_line.substr(colon + 1);
    stub_ = v1::Lattice::NewStub(grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
    if (wait_ready) WaitReady();
  }
  // Ready once the model info is known (every worker loaded).
  void WaitReady() {
    for (int i = 0; i < 600 && !ready_; ++i) {
      grpc::ClientContext context;
      v1::ModelInfo info;
      ready_ = stub_->GetModelInfo(&context, {}, &info).ok();
      if (!ready_) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    EXPECT_TRUE(ready_) << "the server did not become ready";
  }
  ~Server() {
    const int code = StopProcess(process_, 30);
    // mpirun reports the signal it was stopped with; its ranks still shut down in order.
    if (!under_mpirun_) {
      EXPECT_EQ(code, 0) << "lattice serve did not stop cleanly";
    }
  }

  const std::string& address() const { return address_; }
  v1::Lattice::Stub& stub() { return *stub_; }
  v1::InstanceStatus Status() {
    grpc::ClientContext context;
    v1::ClusterStatus status;
    EXPECT_TRUE(stub_->GetClusterStatus(&context, {}, &status).ok());
    return status.instances_size() > 0 ? status.instances(0) : v1::InstanceStatus();
  }

 private:
  bool under_mpirun_;
  BackgroundProcess process_;
  std::string address_;
  std::unique_ptr<v1::Lattice::Stub> stub_;
  bool ready_ = false;
};

}  // namespace lattice::testing
