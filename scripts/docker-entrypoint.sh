#!/bin/sh
# Entrypoint of the Agentry image: one image, the process chosen by the first argument.
#   worker            the worker (apps/worker)           /healthz and /metrics on AGENTRY_WORKER_PORT
#   producer          the HTTP API (apps/producer)       PORT (8080)
#   agentry ARGS...   the admin CLI (apps/admin), e.g. `agentry approvals list`
#   anything else     run as a command (e.g. `sh`)
# `exec` makes node PID 1's direct replacement, so SIGTERM reaches its graceful shutdown.
set -e
# AGENTRY_HOME: where the image tree is (/app); scripts/image-smoke.sh points it at its own tree.
cd "${AGENTRY_HOME:-/app}"
case "${1:-worker}" in
  worker) if [ "$#" -gt 0 ]; then shift; fi; exec node apps/worker/dist/main.js "$@" ;;
  producer) shift; exec node apps/producer/dist/main.js "$@" ;;
  agentry | admin) shift; exec node apps/admin/dist/cli.js "$@" ;;
  *) exec "$@" ;;
esac
