# SPDX-License-Identifier: GPL-2.0
# Shared settings for the dm-remap scripts. Source it; do not run it.

# shellcheck disable=SC2034
DMR_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Everything built outside the repository (kernels, unpacked source, guest
# images) lives here, so a fresh clone on the same machine reuses it.
DMR_CACHE=${DMR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dm-remap}
# Debian ships only the -19 suffixed LLVM tools.
DMR_LLVM=${DMR_LLVM:--19}
JOBS=${JOBS:-$(($(nproc) + 1))}
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '[dm-remap] %s\n' "$*" >&2; }
die() { printf '[dm-remap] error: %s\n' "$*" >&2; exit 1; }
