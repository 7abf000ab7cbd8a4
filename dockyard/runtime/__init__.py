"""An OCI runtime: a bundle (config.json + rootfs) in, an isolated container out.

Modules and their contracts (each owned by one module; the lifecycle composes them):

runtime/spec.py          load_spec(bundle) -> dict: config.json read and validated
                         (InvalidArgument with a one-line message on any problem).
runtime/state.py         the state directory (default /run/dockyard-runtime/<id>/), locking,
                         state.json (ociVersion, id, status, pid, bundle, created, annotations).
runtime/capabilities.py  CAPS (name -> number), DEFAULT_CAPS (docker's 14), parse(names),
                         apply(process_caps) in the container's init (bounding, inheritable,
                         permitted, effective, ambient).
runtime/seccomp.py       libseccomp through ctypes: load(oci_seccomp: dict) installs a filter
                         from the OCI linux.seccomp section; default_profile(caps) builds one
                         with docker's default semantics. Syscall names libseccomp does not
                         know are skipped, as runc does (validate(strict=True) rejects them).
runtime/cgroups/         open_cgroup(path) -> Cgroup for the host's version (v1 or v2):
                         create(resources), add(pid), update(resources), freeze(), thaw(),
                         state(), stats(), pids(), oom_kills(), destroy().
runtime/rootfs.py        in the container's init, inside its new mount namespace:
                         setup_rootfs(spec, bundle) (mounts, /dev, devices) then
                         pivot_root (or the MS_MOVE + chroot fallback), then
                         finish_rootfs(spec) (read-only root, masked / read-only paths).
runtime/process.py       the container side of process setup: user, groups, rlimits,
                         umask, cwd, no_new_privileges, oom_score_adj, caps, seccomp, exec.
runtime/pid1.py          --init (annotation org.dockyard.init: "true"): PID 1 forks the
                         command and stays a reaper that forwards signals (a 228-byte native
                         reaper exec'd from a sealed memfd on x86_64; a Python loop elsewhere).
runtime/container.py     lifecycle: create / start / state / kill / delete / run / exec /
                         pause / resume / ps, with state checks before every operation.
runtime/cli.py           `dockyard-runtime`, runc's command-line interface.
"""
