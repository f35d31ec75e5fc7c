#!/bin/bash
# fieldshift-greenboot's MicroShift health check, installed in place of MicroShift's
# 40_microshift_running_check.sh: microshift.service active, API /readyz ok, core workloads rolled out,
# waiting MICROSHIFT_WAIT_TIMEOUT_SEC x boot attempts used. See docs/greenboot.md.
exec fieldshift-greenboot --root "${FIELDSHIFT_GREENBOOT_ROOT:-/}" microshift-check "$@"
