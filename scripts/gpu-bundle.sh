#!/usr/bin/env bash
# The bundle (deploy/bundle.sh) in .gpu/ (ignored by git), for the device tool to
# carry to the GPU machine (or the folder given): .gpu/bin/cuda_tests, .gpu/bin/lattice_step_bench, ...
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/bundle.sh "${1:-.gpu}"
