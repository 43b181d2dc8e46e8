#!/usr/bin/env bash
# Make sure Fashion-MNIST (IDX, gzip) is on disk. Idempotent.
set -euo pipefail
have() {
  for d in "${SLIMRT_DATA:-}" /usr/share/dataset-fashion-mnist /usr/share/datasets/fashion-mnist; do
    [ -n "$d" ] && [ -f "$d/train-images-idx3-ubyte.gz" ] && return 0
  done
  if command -v dpkg >/dev/null 2>&1 && dpkg -L dataset-fashion-mnist 2>/dev/null | grep -q 'train-images-idx3-ubyte.gz'; then
    return 0
  fi
  return 1
}
if have; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Fashion-MNIST not found: installing the Debian package dataset-fashion-mnist"
  apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; }
  exit 0
fi
cat >&2 <<'MSG'
Fashion-MNIST was not found. Get it one of these ways:
  * Debian/Ubuntu (root):  apt-get install -y dataset-fashion-mnist
  * anywhere: download train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
    t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz from
    https://github.com/zalandoresearch/fashion-mnist (data/fashion) into a folder
    and set SLIMRT_DATA=/that/folder (or pass --data /that/folder).
MSG
exit 1
