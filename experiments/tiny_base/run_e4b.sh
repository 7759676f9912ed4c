#!/bin/bash
set -x
cd "$(dirname "$0")"
while kill -0 22936 2>/dev/null; do sleep 5; done
./run_e4.sh outputs/tiny_base/sft-aligned aligned > ../../outputs/tiny_base/logs/e4_aligned.log 2>&1
