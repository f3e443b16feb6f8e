// Invariant checks that abort with file:line. Dependency-free, so every module
// (the coordinator included) may use it. For broken invariants only: errors
// caused by input, files, network or configuration are absl::Status values.
#pragma once

#include <cstdio>
#include <cstdlib>

#define LATTICE_CHECK(cond)                                                              \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);      \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)

#define LATTICE_CHECK_MSG(cond, ...)                                                     \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);      \
      std::fprintf(stderr, __VA_ARGS__);                                                 \
      std::fprintf(stderr, "\n");                                                        \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)
