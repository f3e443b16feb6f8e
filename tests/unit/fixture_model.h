// One fixture model (tests/fixtures/models/NAME) loaded whole on the CPU, for suites
// that share it across their tests.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "worker/model.h"
#include "worker/model_config.h"

namespace lattice::testing {

// Null (and a test failure) when the fixture does not load.
inline DecoderModel* LoadFixtureModel(const std::string& name) {
  const std::string dir = std::string(LATTICE_SOURCE_DIR) + "/tests/fixtures/models/" + name;
  absl::StatusOr<ModelConfig> config = LoadModelConfig(dir);
  EXPECT_TRUE(config.ok()) << config.status();
  if (!config.ok()) return nullptr;
  absl::StatusOr<std::unique_ptr<DecoderModel>> model = DecoderModel::Load(dir, *config);
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? model->release() : nullptr;
}

}  // namespace lattice::testing
