# Sourced by the scripts: what they share, in one place.
#
# GRAPE_JOBS   cargo build jobs (default: the machine's cores).
# GRAPE_DATA   the real embedding sets (default: shared/data beside the repository); the tests,
#              benchmarks and demo read it too, and fall back to generated data without it.

jobs=${GRAPE_JOBS:-$(nproc 2>/dev/null || echo 2)}
export GRAPE_DATA=${GRAPE_DATA:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/../shared/data}

# A rustup target, added when missing (about 10 s the first time).
need_target() {
  rustup target list --installed | grep -qx "$1" || rustup target add "$1"
}

# The Python peers of the benchmarks (hnswlib, faiss-cpu, usearch, numpy, matplotlib) in
# target/peers-venv, installed once; exports GRAPE_PEERS_PYTHON, which the benchmarks run.
peers_venv() {
  local venv=target/peers-venv
  if ! "$venv/bin/python" -c "import hnswlib, faiss, usearch, numpy, matplotlib" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet hnswlib faiss-cpu usearch numpy matplotlib
  fi
  export GRAPE_PEERS_PYTHON="$PWD/$venv/bin/python"
}

# Qdrant Edge (qdrant-edge-py: Qdrant's own segment code), the oracle of the conformance suite,
# and qdrant-client (its REST models check what `grape export` writes), in target/qdrant-venv,
# installed once; exports GRAPE_QDRANT_PYTHON, which the suite runs.
qdrant_venv() {
  local venv=target/qdrant-venv
  if ! "$venv/bin/python" -c "import qdrant_edge, qdrant_client, numpy" 2>/dev/null \
    || [ "$("$venv/bin/pip" show qdrant-edge-py 2>/dev/null | sed -n "s/^Version: //p")" != 0.9.0 ]; then
    if ! python3 -m venv "$venv" 2>/dev/null; then
      # Debian keeps venv support in a package of its own.
      sudo_if_needed apt-get update -qq
      sudo_if_needed apt-get install -y -qq python3-venv
      python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install --quiet qdrant-edge-py==0.9.0 qdrant-client==1.20.0 numpy
  fi
  export GRAPE_QDRANT_PYTHON="$PWD/$venv/bin/python"
}

# zvec beside Qdrant Edge in the same venv: a peer of the filtered benchmark only (the test
# command does not need its 45 MiB).
zvec_peer() {
  qdrant_venv
  "$GRAPE_QDRANT_PYTHON" -c "import zvec" 2>/dev/null \
    || target/qdrant-venv/bin/pip install --quiet zvec==0.8.0
}

sudo_if_needed() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
