#!/usr/bin/env bash
# System packages the test suite needs beyond Python (none yet: the editor plug-in tests add theirs).
set -euo pipefail
